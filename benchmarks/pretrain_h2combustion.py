"""Pre-train the shipped hydrogen-combustion FFPT model on rattled Table 1 Q-Force frames.

Samples ``--per-species`` rattled frames (sigma 0.2 A, not rescaled) of each of H, O, H2, O2,
OH, H2O, HO2 and H2O2 with the paper's Table 1 teacher, pre-trains a NewtonNet (lr 1e-4,
energy weight 1, force weight 20, ReduceLROnPlateau 0.7 / 50) for ``--minutes`` of wall
time, resumable (run it again to continue), and installs the best checkpoint with its
provenance as a shipped model (``ffpt_ase/models/``), so that ``--init pretrained:NAME``
fine-tunes from it.

    .venv/bin/python benchmarks/pretrain_h2combustion.py --name h2combustion-small \
        --features 64 --minutes 45
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ffpt_ase.analysis.plots import plot_learning_curve
from ffpt_ase.applications.h2combustion.workflows import (rattled_species_frames,
                                                          rattled_species_sets)
from ffpt_ase.applications.systems import COMBUSTION_SPECIES
from ffpt_ase.pretrained import install_pretrained
from ffpt_ase.training.config import TrainConfig
from ffpt_ase.training.trainer import train

HERE = Path(__file__).parent


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", default="h2combustion-small")
    ap.add_argument("--per-species", type=int, default=12500, help="rattled frames per species")
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--interactions", type=int, default=3)
    ap.add_argument("--minutes", type=float, default=45.0, help="wall-time budget (this run)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=str(HERE / "work" / "pretrain_h2combustion"))
    args = ap.parse_args()
    work = Path(args.work) / args.name
    work.mkdir(parents=True, exist_ok=True)
    data = work / "rattled_table1.npz"
    if not data.exists():
        rattled_species_frames(rattled_species_sets(args.per_species, seed=args.seed)).save(data)
    cfg = TrainConfig(stage="pretrain", data=str(data), output=str(work / "run"),
                      features=args.features, interactions=args.interactions,
                      epochs=100000, max_time_s=60 * args.minutes, threads=args.threads,
                      seed=args.seed, batch_size=32)
    summary = train(cfg)
    plot_learning_curve(work / "run" / "log.csv", work / "run" / "learning_curve.png")
    path = install_pretrained(args.name, work / "run" / "best.pt", {
        "teacher": "Q-Force, the paper's Table 1 (ffpt_ase/forcefields/params/qforce_table1.json)",
        "frames": f"{args.per_species} rattled frames (sigma 0.2 A) of each of "
                  f"{', '.join(COMBUSTION_SPECIES)}, seeds {args.seed}..{args.seed + 7}",
        "model": f"NewtonNet, {args.features} features, {args.interactions} interactions, "
                 "20 radial functions, 5 A cutoff",
        "training": summary.get("final"), "epochs": summary.get("epochs"),
        "training_units": "validation errors in eV (energy), eV/A (forces); time in s",
        "stop_reason": summary.get("stop_reason"),
        "command": f".venv/bin/python benchmarks/pretrain_h2combustion.py --name {args.name} "
                   f"--per-species {args.per_species} --features {args.features} "
                   f"--interactions {args.interactions} --minutes {args.minutes} "
                   f"--threads {args.threads} --seed {args.seed}",
        "hardware": "2-core CPU (the project's development machine), no GPU",
    })
    print(json.dumps({"installed": str(path), "final": summary.get("final")}, indent=1,
                     default=str))


if __name__ == "__main__":
    main()
