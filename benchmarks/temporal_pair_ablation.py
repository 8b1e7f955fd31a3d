"""Temporal-pair (FRAMES) auxiliary loss: fine-tuning with and without it, equal budget.

Protocol (issue 5, experiment 4), on the time-ordered AIMD files of the hydrogen-combustion
data (``../shared/data/h2combustion``; the reader splits each file into its trajectories):

1. start: a shipped pre-trained model (``--pretrained``, default ``h2combustion-small``: the
   paper's Table 1 teacher on 100,000 rattled frames), or with ``--pretrained ''`` the
   pre-trained checkpoint of ``benchmarks/h2combustion.py`` (trained here if missing).
2. data: the first ``--window`` frames of every channel's AIMD file (contiguous, so that
   consecutive frames are pairs); seeded 10 % validation.
3. two fine-tuning runs from the same checkpoint with the same split, seed and wall-time
   budget: energy + force loss, and energy + force + temporal-pair loss (weight 1).
4. test: a later contiguous block of every AIMD file (frames ``--test-start`` onwards) for
   energy/force errors and the error of energy *differences* between consecutive frames;
   all IRC frames as an out-of-distribution check.
5. stability: well-tempered metadynamics of channel 09 (``--walkers`` seeds per model),
   fraction of frames with unphysical species.

    .venv/bin/python benchmarks/temporal_pair_ablation.py --data ../shared/data/h2combustion

Writes ``benchmarks/results/temporal_pair_ablation.{json,md}`` and PNGs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import bench_common as bench

from ffpt_ase.applications.h2combustion.dataset import time_windows
from ffpt_ase.applications.systems import COMBUSTION_SPECIES
from ffpt_ase.data import Frames
from ffpt_ase.model.potential import load_potential
from ffpt_ase.training.metrics import energy_change_errors, predict

MODEL, PRETRAIN_MINUTES = bench.H2COMBUSTION_MODEL, bench.H2COMBUSTION_PRETRAIN_MINUTES

ARMS = {"energy+forces": "ft_plain", "energy+forces+temporal pairs": "ft_pairs"}


def assemble(data: Path, window: int, test_start: int, test_len: int, work: Path):
    """Training windows (time kept), test blocks and IRC frames (saved once in ``work``)."""
    paths = {k: work / f"{k}.npz" for k in ("train", "test", "irc")}
    if all(p.exists() for p in paths.values()):
        return {k: Frames.load(p) for k, p in paths.items()}
    sets = time_windows(data, window, test_start, test_len)
    for k, frames in sets.items():
        frames.save(paths[k])
    return sets


def pair_errors(checkpoint: Path, frames: Frames) -> dict:
    """MAE of the energy change between consecutive frames (t, t+1) of the test blocks (meV)."""
    e, _ = predict(load_potential(checkpoint), frames, batch_size=256, forces=False)
    res = energy_change_errors(frames, e)
    return {"pairs": res["pairs"], "delta_e_mae_meV": 1e3 * res["energy_change_mae"]}


def main():
    ap = bench.parser(__doc__, "h2combustion", "temporal_pairs")
    ap.add_argument(
        "--pretrain-work",
        default=str(bench.WORK / "h2combustion"),
        help="where benchmarks/h2combustion.py keeps its pre-trained model",
    )
    ap.add_argument("--pretrained", default="h2combustion-small",
                    help="shipped pre-trained model to fine-tune from ('' to use or train the "
                         "pre-trained checkpoint of benchmarks/h2combustion.py)")
    ap.add_argument("--window", type=int, default=1000, help="AIMD frames per file for training")
    ap.add_argument("--test-start", type=int, default=6000)
    ap.add_argument("--test-len", type=int, default=200)
    ap.add_argument("--minutes", type=float, default=12, help="fine-tuning budget per arm")
    ap.add_argument("--walkers", type=int, default=4)
    ap.add_argument("--metad-steps", type=int, default=10000)
    args = ap.parse_args()
    bench.check_walkers(args.walkers)
    command = bench.announce()
    data = Path(args.data)
    if not (data / "npz").is_dir():
        sys.exit(f"hydrogen-combustion data not found in {data} (need npz/); pass --data")
    work, ptwork = Path(args.work), Path(args.pretrain_work)
    work.mkdir(parents=True, exist_ok=True)
    ptwork.mkdir(parents=True, exist_ok=True)
    init = ptwork / "pretrain" / "best.pt"
    if args.pretrained:
        bench.shipped_pretrain(work, args.pretrained)  # copies it to work/pretrain/best.pt
        init = work / "pretrain" / "best.pt"
    elif not (ptwork / "pretrain" / "summary.json").exists():
        bench.stage(
            "pretrain",
            ptwork,
            PRETRAIN_MINUTES,
            stage="pretrain",
            data=str(bench.h2combustion_pretrain_set(
                ptwork, bench.H2COMBUSTION_PRETRAIN_PER_SPECIES)),
            **MODEL,
            threads=args.threads,
            seed=0,
            batch_size=32,
        )
    sets = assemble(data, args.window, args.test_start, args.test_len, work)
    train_file = work / "train.npz"

    results = {}
    for arm, folder in ARMS.items():
        s = bench.stage(
            folder,
            work,
            args.minutes,
            stage="finetune",
            data=str(train_file),
            init=str(init),
            temporal_pairs=folder == "ft_pairs",
            val_fraction=0.1,
            threads=args.threads,
            seed=0,
            batch_size=32,
        )
        ckpt = work / folder / "best.pt"
        results[arm] = {
            "aimd_test": bench.test_errors(
                ckpt,
                sets["test"],
                f"AIMD test blocks, {arm}",
                f"temporal_pairs_{folder}",
                batch_size=256,
            ),
            "irc": bench.test_errors(
                ckpt,
                sets["irc"],
                f"IRC frames, {arm}",
                f"temporal_pairs_{folder}_irc",
                batch_size=256,
            ),
            "pairs": pair_errors(ckpt, sets["test"]),
            **bench.training_record(s),
        }
        bench.copy_learning_curve(work, folder, "temporal_pairs")
    metad = {}
    for arm, folder in ARMS.items():
        print(f"[metad] rxn 09, {arm}", flush=True)
        metad[arm] = bench.channel_walkers("09", work / folder / "best.pt", args.walkers,
                                           args.metad_steps, work / f"metad_09_{folder}",
                                           f"temporal_pairs_metad_09_{folder}")
    bench.metad_figures({folder: metad[arm] for arm, folder in ARMS.items()}, "09",
                        "temporal_pairs_metad_09")

    result = {
        "command": command,
        "init": f"pretrained:{args.pretrained}" if args.pretrained else str(init),
        "data": {
            "window_frames_per_file": args.window,
            "n_train_val": len(sets["train"]),
            "n_test": len(sets["test"]),
            "n_irc": len(sets["irc"]),
            "test_block": [args.test_start, args.test_start + args.test_len],
            "pretrain_species": list(COMBUSTION_SPECIES),
        },
        "budget_minutes_each": args.minutes,
        "results": results,
        "metad": metad,
    }
    lines = [
        (
            "| fine-tuning loss | epochs | AIMD test E MAE (meV) | F MAE (meV/A) | "
            "dE(t->t+1) MAE (meV) | IRC E MAE (meV) | IRC F MAE (meV/A) | "
            "rxn 09 metad: unphysical frames | failed walkers |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arm, r in results.items():
        m = metad[arm]
        failed, unph, _ = bench.walker_cells(m)
        lines.append(
            f"| {arm} | {r['epochs']} | {r['aimd_test']['energy_mae_meV']:.1f} | "
            f"{r['aimd_test']['forces_mae_meV_per_A']:.1f} | "
            f"{r['pairs']['delta_e_mae_meV']:.2f} | {r['irc']['energy_mae_meV']:.1f} | "
            f"{r['irc']['forces_mae_meV_per_A']:.1f} | {unph} | "
            f"{failed} |"
        )
    bench.write_results("temporal_pair_ablation", result, "\n".join(lines), command)


if __name__ == "__main__":
    main()
