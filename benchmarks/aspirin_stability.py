"""Aspirin: MD stability and PES cuts of the models trained by aspirin_accuracy.py.

1. Stability: 500 K Langevin (0.5 fs, friction 2/ps), K trajectories per model from the
   first frame of the training file, time to first failure by the harness's criteria
   (bond deviation > 0.5 A, new bond, non-finite); Kaplan-Meier survival curves of scratch
   vs FFPT-FT with 95 % bands, Fisher's exact test on the failure counts and the log-rank
   test on the times to failure (``ffpt_ase.analysis.survival``).
2. PES cuts (the paper's Figure 1c): energy along a stretched methyl C-H bond and a closing
   H-C-H angle, for scratch, FFPT (pre-trained only) and FFPT-FT, relative to each model's
   energy at the starting geometry.

    .venv/bin/python benchmarks/aspirin_stability.py --trajectories 32 --time-ps 50

The models are the committed ``benchmarks/models/aspirin/{scratch,finetune}.pt`` and the
shipped ``pretrained:aspirin`` (FFPT) where they exist, otherwise ``best.pt`` of
aspirin_accuracy.py's work folder.

Resumable: finished trajectories are kept in each model's stability folder. Writes
``benchmarks/results/aspirin_stability.{json,md}``, ``aspirin_survival.png`` and
``aspirin_pes_cuts.png``.
"""

import sys
from pathlib import Path

import bench_common as bench

from ffpt_ase.analysis.plots import plot_survival, save_figure, subplots
from ffpt_ase.analysis.survival import compare_ensembles, from_trajectories
from ffpt_ase.applications.aspirin import pes_cuts
from ffpt_ase.data import read_frames
from ffpt_ase.pretrained import available
from ffpt_ase.simulate.stability import StabilityConfig, run_stability

MODELS = {"scratch": "scratch", "FFPT": "pretrain", "FFPT-FT": "finetune"}


def main():
    ap = bench.parser(__doc__, "aspirin_ccsd", "aspirin")
    ap.add_argument("--trajectories", type=int, default=32)
    ap.add_argument("--time-ps", type=float, default=50.0)
    ap.add_argument("--temperature", type=float, default=500.0)
    ap.add_argument(
        "--only",
        choices=("scratch", "FFPT-FT"),
        help="run the trajectories of one model and stop (two processes can then share the "
        "work); a run without --only completes what is missing and writes the results",
    )
    args = ap.parse_args()
    command = bench.announce()
    work = Path(args.work)
    checkpoint = {}
    for name, folder in MODELS.items():
        kept = bench.MODELS / "aspirin" / f"{folder}.pt"
        if folder == "pretrain":   # FFPT is FFPT-FT's parent, whichever that was
            shipped = ["pretrained:aspirin"] if "aspirin" in available() else []
            kept = bench.finetuned_from("aspirin", work, [work / "pretrain" / "best.pt",
                                                           kept, *shipped])
        if not kept.exists():
            kept = bench.stage_model(work, folder)
        if not kept.exists():
            sys.exit(f"{bench.MODELS / 'aspirin' / (folder + '.pt')} and {kept} missing: "
                     "run benchmarks/aspirin_accuracy.py first")
        checkpoint[name] = kept
    start = read_frames(Path(args.data) / "aspirin_ccsd-train.xyz").to_atoms(0)
    start.calc = None
    start_file = work / "stability_start.xyz"
    start.write(start_file)

    summaries, ensembles = {}, {}
    for name in (args.only,) if args.only else ("scratch", "FFPT-FT"):
        folder = MODELS[name]
        cfg = StabilityConfig(
            system=str(start_file),
            model=str(checkpoint[name]),
            trajectories=args.trajectories,
            time_ps=args.time_ps,
            temperature_K=args.temperature,
            timestep_fs=0.5,
            friction_per_ps=2.0,
            seed=0,
            output=str(work / f"stability_{folder}_{args.time_ps:g}ps"),
        )
        s = run_stability(cfg)
        summaries[name] = bench.stability_record(s)
        ensembles[name] = from_trajectories(s["trajectories"])
        print(
            f"{name}: {s['n_failed']}/{s['n_trajectories']} failed, "
            f"Kaplan-Meier median survival {summaries[name]['median_survival_ps']} ps"
        )
    if args.only:
        return
    statistics = compare_ensembles(ensembles)
    plot_survival(
        statistics["curves"],
        bench.RESULTS / "aspirin_survival.png",
        title=f"aspirin, {args.temperature:g} K Langevin (95 % bands)",
        until_ps=args.time_ps,
    )

    cuts = pes_cuts(start, checkpoint)
    fig, axes = subplots(1, 2, figsize=(11, 4))
    for ax, key, xlabel in (
        (axes[0], "stretch", "methyl C-H distance [A]"),
        (axes[1], "angle", "methyl H-C-H angle [deg]"),
    ):
        for name in MODELS:
            ax.plot(cuts[key]["x"], cuts[key][name], label=name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("E - E(start) [eV]")
        ax.legend()
    save_figure(fig, bench.RESULTS / "aspirin_pes_cuts.png")
    result = {
        "command": command,
        "models": {name: str(path) for name, path in checkpoint.items()},
        "stability": summaries,
        "statistics": statistics,
        "pes_cuts": cuts,
        "settings": {
            "temperature_K": args.temperature,
            "timestep_fs": 0.5,
            "friction_per_ps": 2.0,
            "trajectories": args.trajectories,
            "time_ps": args.time_ps,
        },
    }
    lines = [
        "| model | failed / trajectories | median survival (ps, Kaplan-Meier) | "
        "median time to failure of the failed (ps) | mean simulated (ps) |",
        "|---|---|---|---|---|",
    ]
    for name, s in summaries.items():
        km, failed = s["median_survival_ps"], s["time_to_failure_of_failed_ps"]["median"]
        longest = f"> {s['longest_simulated_ps']:g}"
        lines.append(
            f"| {name} | {s['n_failed']} / {s['n_trajectories']} | "
            f"{longest if km is None else f'{km:.2f}'} | "
            f"{'-' if failed is None else f'{failed:.2f}'} | {s['mean_simulated_ps']:.2f} |"
        )
    test = statistics["tests"]["scratch vs FFPT-FT"]
    lines += ["", f"Fisher's exact test on the failure counts: p = {test['fisher_p']:.3g}; "
              f"log-rank test on the times: z = {test['logrank']['z']:.2f}, "
              f"p = {test['logrank']['p']:.3g} (two-sided)."]
    bench.write_results("aspirin_stability", result, "\n".join(lines), command)


if __name__ == "__main__":
    main()
