"""Pre-train the shipped hydrogen-combustion FFPT model on rattled Table 1 Q-Force frames.

Samples ``--per-species`` rattled frames (sigma 0.2 A, not rescaled) of each of H, O, H2, O2,
OH, H2O, HO2 and H2O2 with the paper's Table 1 teacher and pre-trains a NewtonNet (lr 1e-4,
energy weight 1, force weight 20, ReduceLROnPlateau 0.7 / 50, gradient norm clipped at 10)
until its stopping rule holds: the learning rate at 1 % of its start or a plateau of the
validation force MAE (less than 1 % better over ``--plateau-epochs`` epochs). ``--init``
continues from a shipped model (a fresh optimizer; its provenance is kept). The run is
resumable: its run folder is kept in ``benchmarks/models/pretrain_h2combustion/runs/`` (to
be committed), so a run longer than a session continues in the next one. When the rule
holds, the best checkpoint is installed with its provenance as a shipped model
(``ffpt_ase/models/NAME.pt``), so that ``--init pretrained:NAME`` fine-tunes from it.

    .venv/bin/python benchmarks/pretrain_h2combustion.py --name h2combustion \\
        --init pretrained:h2combustion-small
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import bench_common as bench

from ffpt_ase.analysis.plots import plot_learning_curve
from ffpt_ase.applications.h2combustion.workflows import (rattled_species_frames,
                                                          rattled_species_sets)
from ffpt_ase.applications.systems import COMBUSTION_SPECIES
from ffpt_ase.pretrained import available, install_pretrained
from ffpt_ase.training.config import TrainConfig
from ffpt_ase.training.trainer import train

HERE = Path(__file__).parent
EXPERIMENT = "pretrain_h2combustion"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", default="h2combustion")
    ap.add_argument("--init", default=None,
                    help="continue from this checkpoint (e.g. pretrained:h2combustion-small); "
                         "the architecture is then the checkpoint's")
    ap.add_argument("--per-species", type=int, default=12500, help="rattled frames per species")
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--interactions", type=int, default=3)
    ap.add_argument("--minutes", type=float, default=None,
                    help="total wall-time budget (default: none, trained out)")
    ap.add_argument("--plateau-epochs", type=int, default=bench.PRETRAIN_PLATEAU_EPOCHS)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=str(HERE / "work" / EXPERIMENT))
    args = ap.parse_args()
    if args.init and args.init.startswith("pretrained:") and \
            args.init.split(":", 1)[1] not in available():
        sys.exit(f"no shipped pre-trained model {args.init!r}; available: "
                 f"{', '.join(available()) or 'none'}")
    work = Path(args.work)
    folder = f"{args.name}/run"
    (work / args.name).mkdir(parents=True, exist_ok=True)
    data = work / args.name / "rattled_table1.npz"
    if not data.exists():
        rattled_species_frames(rattled_species_sets(args.per_species, seed=args.seed)).save(data)
    bench.restore_runs(work, EXPERIMENT, [folder])
    arch = {} if args.init else {"features": args.features, "interactions": args.interactions}
    cfg = TrainConfig(stage="pretrain", data=str(data), output=str(work / folder),
                      init=args.init, epochs=100000,
                      max_time_s=None if args.minutes is None else 60 * args.minutes,
                      threads=args.threads, seed=args.seed, batch_size=32,
                      grad_clip=bench.TRAINED_OUT["grad_clip"],
                      plateau_epochs=args.plateau_epochs, **arch)
    summary = train(cfg)
    plot_learning_curve(work / folder / "log.csv", work / folder / "learning_curve.png")
    status = bench.keep_runs(work, EXPERIMENT, [folder], final_models=False)[folder]
    print(f"[pretrain] {status}", flush=True)
    if status == "in progress" and args.minutes is not None:
        print("[pretrain] budget spent before the stopping rule held: not installed")
        return
    init_info = None
    if args.init and args.init.startswith("pretrained:"):
        init_info = available()[args.init.split(":", 1)[1]]
    command = (f".venv/bin/python benchmarks/pretrain_h2combustion.py --name {args.name} "
               f"--per-species {args.per_species} --plateau-epochs {args.plateau_epochs} "
               f"--threads {args.threads} --seed {args.seed}"
               + (f" --init {args.init}" if args.init else
                  f" --features {args.features} --interactions {args.interactions}")
               + (f" --minutes {args.minutes}" if args.minutes is not None else ""))
    from ffpt_ase.model.potential import load_checkpoint
    size = load_checkpoint(work / folder / "best.pt")["config"]
    path = install_pretrained(args.name, work / folder / "best.pt", {
        "teacher": "Q-Force, the paper's Table 1 (ffpt_ase/forcefields/params/qforce_table1.json)",
        "frames": f"{args.per_species} rattled frames (sigma 0.2 A) of each of "
                  f"{', '.join(COMBUSTION_SPECIES)}, seeds {args.seed}..{args.seed + 7}",
        "model": f"NewtonNet, {size['n_features']} features, {size['n_interactions']} "
                 f"interactions, {size['n_basis']} radial functions, {size['cutoff']:g} A "
                 "cutoff",
        "continued_from": None if not args.init else {"checkpoint": args.init,
                                                      "provenance": init_info},
        "training": summary.get("final"), "epochs": summary.get("epochs"),
        "best_epoch": load_checkpoint(work / folder / "best.pt").get("epoch"),
        "training_units": "validation errors in eV (energy), eV/A (forces); time in s",
        "stop_reason": summary.get("stop_reason"),
        "stopping_rule": f"learning rate at 1 % of its start, or a {args.plateau_epochs}-epoch "
                         "plateau of the validation force MAE (< 1 % better); gradient norm "
                         f"clipped at {bench.TRAINED_OUT['grad_clip']:g}",
        "command": command,
        "hardware": "2-core CPU (the project's development machine), no GPU, 1 torch thread",
    })
    print(json.dumps({"installed": str(path), "final": summary.get("final")}, indent=1,
                     default=str))


if __name__ == "__main__":
    main()
