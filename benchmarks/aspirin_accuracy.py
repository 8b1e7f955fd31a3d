"""Aspirin in vacuum: NewtonNet from scratch vs FFPT-FT (GAFF2 pre-training + fine-tuning).

Protocol (issue: MLIP accuracy): 950 training + 50 validation frames drawn (seeded) from
``aspirin_ccsd-train.xyz``; errors on the held-out ``aspirin_ccsd-test.xyz`` (500 frames),
which is never used for training, validation or any choice made here.

1. scratch:  NewtonNet (paper size) trained on the 950 frames, lr 1e-3.
2. pretrain: the same architecture on rattled GAFF2 aspirin frames (sigma 0.2 A), lr 1e-4.
3. finetune: from the pre-trained checkpoint on the same 950 frames, lr 1e-4.

Each stage stops at the paper's criteria (lr at 1 % of its start) or at a wall-time budget,
whichever comes first: on a 2-core CPU the budget is what ends the runs, and the script
prints and records exactly how many epochs each stage got. Every stage resumes from its
``last.pt`` when the script is run again; finished stages are skipped.

    .venv/bin/python benchmarks/aspirin_accuracy.py --data ../shared/data/aspirin_ccsd

Writes ``benchmarks/results/aspirin_accuracy.{json,md}`` and parity/learning-curve PNGs.
"""

import sys
from pathlib import Path

import bench_common as bench

from ffpt_ase.data import read_frames
from ffpt_ase.applications.systems import sample_system


def main():
    ap = bench.parser(
        __doc__,
        "aspirin_ccsd",
        "aspirin",
        threads=2,
        features=128,
        interactions=3,
        minutes={"scratch": 25, "pretrain": 15, "finetune": 25},
    )
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--n-pretrain", type=int, default=20000, help="rattled GAFF2 frames")
    args = ap.parse_args()
    command = bench.announce()

    data = Path(args.data)
    train_file, test_file = data / "aspirin_ccsd-train.xyz", data / "aspirin_ccsd-test.xyz"
    if not train_file.exists() or not test_file.exists():
        sys.exit(
            f"aspirin CCSD data not found in {data} (need aspirin_ccsd-train.xyz and "
            f"aspirin_ccsd-test.xyz); pass --data"
        )
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    pt_data = work / "pretrain_gaff2_aspirin.npz"
    if not pt_data.exists():
        sample_system("aspirin", args.n_pretrain, sigma=0.2, seed=0).save(pt_data)
    runs = bench.three_stages(
        work, pt_data, train_file, args, args.batch_size, split={"n_train": 950, "n_val": 50}
    )
    s_scratch, s_pt, s_ft = runs["scratch"], runs["pretrain"], runs["finetune"]

    test = read_frames(test_file)
    rows = {}
    for name, summary in (("scratch", s_scratch), ("FFPT-FT", s_ft)):
        folder = "scratch" if name == "scratch" else "finetune"
        rows[name] = {
            **bench.test_errors(
                work / folder / "best.pt", test, f"aspirin test set, {name}", f"aspirin_{folder}"
            ),
            **bench.training_record(summary),
        }
        bench.copy_learning_curve(work, folder, "aspirin")
    rows["FFPT-FT"]["pretrain_epochs"] = s_pt["epochs"]
    rows["FFPT-FT"]["pretrain_frames"] = args.n_pretrain
    result = {
        "command": command,
        "model": bench.model_record(args),
        "test_frames": len(test),
        "results": rows,
        "reference_public_newtonnet_scratch": {"energy_mae_meV": 6.4, "forces_mae_meV_per_A": 22.4},
    }
    lines = [
        "| model | energy MAE (meV) | force MAE (meV/A) | epochs | training time |",
        "|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['energy_mae_meV']:.1f} | {r['forces_mae_meV_per_A']:.1f} | "
            f"{r['epochs']} ({r['stop_reason']}) | {r['train_minutes']} min |"
        )
    lines.append("| public NewtonNet, scratch (reference) | 6.4 | 22.4 | converged | |")
    bench.write_results("aspirin_accuracy", result, "\n".join(lines), command)


if __name__ == "__main__":
    main()
