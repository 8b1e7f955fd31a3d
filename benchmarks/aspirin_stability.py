"""Aspirin: MD stability and PES cuts of the models trained by aspirin_accuracy.py.

1. Stability: 500 K Langevin (0.5 fs, friction 2/ps), K trajectories per model from the
   first frame of the training file, time to first failure by the harness's criteria
   (bond deviation > 0.5 A, new bond, non-finite), survival curves of scratch vs FFPT-FT.
2. PES cuts (the paper's Figure 1c): energy along a stretched methyl C-H bond and a closing
   H-C-H angle, for scratch, FFPT (pre-trained only) and FFPT-FT, relative to each model's
   energy at the starting geometry.

    .venv/bin/python benchmarks/aspirin_stability.py --trajectories 8 --time-ps 50

Resumable: finished trajectories are kept in each model's stability folder. Writes
``benchmarks/results/aspirin_stability.{json,md}``, ``aspirin_survival.png`` and
``aspirin_pes_cuts.png``.
"""

import sys
from pathlib import Path

import bench_common as bench

from ffpt_ase.analysis.plots import plot_survival, save_figure, subplots
from ffpt_ase.applications.aspirin import pes_cuts
from ffpt_ase.data import read_frames
from ffpt_ase.simulate.stability import StabilityConfig, run_stability, survival_curve

MODELS = {"scratch": "scratch", "FFPT": "pretrain", "FFPT-FT": "finetune"}


def main():
    ap = bench.parser(__doc__, "aspirin_ccsd", "aspirin")
    ap.add_argument("--trajectories", type=int, default=8)
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
    for folder in MODELS.values():
        if not (work / folder / "best.pt").exists():
            sys.exit(
                f"{work / folder / 'best.pt'} missing: run benchmarks/aspirin_accuracy.py first"
            )
    start = read_frames(Path(args.data) / "aspirin_ccsd-train.xyz").to_atoms(0)
    start.calc = None
    start_file = work / "stability_start.xyz"
    start.write(start_file)

    summaries, curves = {}, {}
    for name in (args.only,) if args.only else ("scratch", "FFPT-FT"):
        folder = MODELS[name]
        cfg = StabilityConfig(
            system=str(start_file),
            model=str(work / folder / "best.pt"),
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
        curves[name] = survival_curve(s["trajectories"], args.time_ps)
        print(
            f"{name}: {s['n_failed']}/{s['n_trajectories']} failed, "
            f"time to failure {s['time_to_failure_ps']}"
        )
    if args.only:
        return
    plot_survival(
        curves,
        bench.RESULTS / "aspirin_survival.png",
        title=f"aspirin, {args.temperature:g} K Langevin",
    )

    cuts = pes_cuts(start, {name: work / folder / "best.pt" for name, folder in MODELS.items()})
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
        "stability": summaries,
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
        "| model | failed / trajectories | median time to failure (ps) | mean simulated (ps) |",
        "|---|---|---|---|",
    ]
    for name, s in summaries.items():
        med = s["time_to_failure_ps"]["median"]
        lines.append(
            f"| {name} | {s['n_failed']} / {s['n_trajectories']} | "
            f"{'-' if med is None else f'{med:.2f}'} | {s['mean_simulated_ps']:.2f} |"
        )
    bench.write_results("aspirin_stability", result, "\n".join(lines), command)


if __name__ == "__main__":
    main()
