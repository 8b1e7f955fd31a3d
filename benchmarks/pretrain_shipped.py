"""Pre-train the shipped FFPT models (issue 13, item 1) on rattled teacher frames.

One model per system, each trained until its stopping rule holds (the learning rate at 1 %
of its start, or a ``--plateau-epochs`` plateau of the validation force MAE, gradient norm
clipped at 10: ``bench_common.TRAINED_OUT``), lr 1e-4, energy weight 1, force weight 20,
ReduceLROnPlateau 0.7 / 50:

* ``h2combustion``: 12,500 rattled frames (sigma 0.2 A, not rescaled) of each of H, O, H2,
  O2, OH, H2O, HO2 and H2O2 labelled by the paper's Table 1 Q-Force teacher (100,000).
* ``water``: 50,000 rattled flexible-TIP3P monomers, each alone in the bulk-water cell, and
  2,000 frames of 64 rattled monomers at random in that cell labelled by the full flexible
  TIP3P (Coulomb and Lennard-Jones between molecules; RESULTS.md 2b: monomers alone do not
  transfer to the liquid).
* ``aspirin``: 100,000 rattled aspirin frames labelled by GAFF2 (OpenMM).

``--init`` continues from a shipped model (a fresh optimizer; its provenance is kept). The
run is resumable and its run folder is kept in ``benchmarks/models/pretrain/runs/NAME/``
(to be committed), so a run longer than a session continues in the next one; where a GPU
is lent, ``--device cuda``. When the rule holds, the best checkpoint is installed with its
provenance as a shipped model (``ffpt_ase/models/NAME.pt``): ``--init pretrained:NAME``.

    .venv/bin/python benchmarks/pretrain_shipped.py h2combustion \\
        --init pretrained:h2combustion-small
    .venv/bin/python benchmarks/pretrain_shipped.py water
    .venv/bin/python benchmarks/pretrain_shipped.py aspirin
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import bench_common as bench

from ffpt_ase.analysis.plots import plot_learning_curve
from ffpt_ase.pretrained import available, install_pretrained, resolve_checkpoint
from ffpt_ase.training.config import TrainConfig
from ffpt_ase.training.trainer import train

HERE = Path(__file__).parent
EXPERIMENT = "pretrain"


def h2combustion_frames(seed: int):
    from ffpt_ase.applications.h2combustion.workflows import (rattled_species_frames,
                                                              rattled_species_sets)
    from ffpt_ase.applications.systems import COMBUSTION_SPECIES
    frames = rattled_species_frames(rattled_species_sets(12500, seed=seed))
    return frames, (f"12500 rattled frames (sigma 0.2 A) of each of "
                    f"{', '.join(COMBUSTION_SPECIES)}, seeds {seed}..{seed + 7}")


def water_frames(seed: int):
    from ffpt_ase.applications.water import pretraining_frames
    return pretraining_frames(50000, 2000, seed=seed)


def aspirin_frames(seed: int):
    from ffpt_ase.applications.systems import sample_system
    frames = sample_system("aspirin", 100000, sigma=0.2, seed=seed, show_progress=False)
    return frames, f"100000 rattled aspirin frames (sigma 0.2 A) labelled by GAFF2, seed {seed}"


#: name -> (frames builder, teacher, default size, batch size)
SYSTEMS = {
    "h2combustion": (h2combustion_frames, "Q-Force, the paper's Table 1 "
                     "(ffpt_ase/forcefields/params/qforce_table1.json)", (64, 3), 32),
    "water": (water_frames, "flexible TIP3P (CHARMM parameters; intermolecular Coulomb and "
              "Lennard-Jones for the liquid frames)", (32, 2), 16),
    "aspirin": (aspirin_frames, "GAFF2 (ffpt_ase/forcefields/params/aspirin_gaff2.prmtop, "
                "OpenMM)", (64, 3), 32),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("system", choices=sorted(SYSTEMS))
    ap.add_argument("--name", default=None, help="shipped name (default: the system's)")
    ap.add_argument("--init", default=None,
                    help="continue from this checkpoint (e.g. pretrained:h2combustion-small); "
                         "the architecture is then the checkpoint's")
    ap.add_argument("--features", type=int, default=None)
    ap.add_argument("--interactions", type=int, default=None)
    ap.add_argument("--minutes", type=float, default=None,
                    help="total wall-time budget (default: none, trained out)")
    ap.add_argument("--plateau-epochs", type=int, default=bench.PRETRAIN_PLATEAU_EPOCHS)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"),
                    help="training precision (the ab initio stages train in float64, see "
                         "bench_common.TRAINED_OUT)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=str(HERE / "work" / EXPERIMENT))
    args = ap.parse_args()
    build, teacher, (features, interactions), batch_size = SYSTEMS[args.system]
    name = args.name or args.system
    if args.init:
        try:
            resolve_checkpoint(args.init)
        except FileNotFoundError as err:
            sys.exit(str(err))
    work = Path(args.work)
    folder = f"{name}/run"
    (work / name).mkdir(parents=True, exist_ok=True)
    data = work / name / "rattled.npz"
    frames_text_file = work / name / "frames.txt"
    if not data.exists():
        frames, text = build(args.seed)
        frames.save(data)
        frames_text_file.write_text(text)
    bench.restore_runs(work, EXPERIMENT, [folder])
    arch = {} if args.init else {"features": args.features or features,
                                 "interactions": args.interactions or interactions}
    cfg = TrainConfig(stage="pretrain", data=str(data), output=str(work / folder),
                      init=args.init, epochs=100000,
                      max_time_s=None if args.minutes is None else 60 * args.minutes,
                      threads=args.threads, device=args.device, seed=args.seed,
                      dtype=args.dtype,
                      batch_size=batch_size, grad_clip=bench.TRAINED_OUT["grad_clip"],
                      divergence_retries=bench.TRAINED_OUT["divergence_retries"],
                      plateau_epochs=args.plateau_epochs, **arch)
    summary = train(cfg)
    plot_learning_curve(work / folder / "log.csv", work / folder / "learning_curve.png")
    status = bench.keep_runs(work, EXPERIMENT, [folder], final_models=False)[folder]
    print(f"[pretrain {name}] {status}", flush=True)
    if status == "in progress":
        print(f"[pretrain {name}] stopped before its rule held: not installed")
        return
    from ffpt_ase.model.potential import load_checkpoint
    shipped = bench.final_model(work / folder)
    best = load_checkpoint(shipped)
    size = best["config"]
    command = (f".venv/bin/python benchmarks/pretrain_shipped.py {args.system} --name {name} "
               f"--plateau-epochs {args.plateau_epochs} --threads {args.threads} "
               f"--seed {args.seed} --dtype {args.dtype}"
               + (f" --init {args.init}" if args.init else
                  f" --features {arch['features']} --interactions {arch['interactions']}")
               + (f" --minutes {args.minutes}" if args.minutes is not None else ""))
    init_info = available()[args.init.split(":", 1)[1]] \
        if args.init and args.init.startswith("pretrained:") else None
    path = install_pretrained(name, shipped, {
        "teacher": teacher,
        "frames": frames_text_file.read_text().strip(),
        "model": f"NewtonNet, {size['n_features']} features, {size['n_interactions']} "
                 f"interactions, {size['n_basis']} radial functions, {size['cutoff']:g} A "
                 "cutoff",
        "continued_from": None if not args.init else {"checkpoint": args.init,
                                                      "provenance": init_info},
        "training": summary.get("final"), "epochs": summary.get("epochs"),
        "best_epoch": best.get("epoch"),
        "best_validation": next((row for row in best.get("history", [])
                                 if row["epoch"] == best.get("epoch")), None),
        "training_note": "'training' is the last epoch's row; the shipped weights are the "
                         "best epoch's, whose validation errors are 'best_validation'",
        "training_units": "validation errors in eV (energy), eV/A (forces); time in s",
        "stop_reason": summary.get("stop_reason"),
        "stopping_rule": f"learning rate at 1 % of its start, or a {args.plateau_epochs}-epoch "
                         "plateau of the validation force MAE (< 1 % better); gradient norm "
                         f"clipped at {bench.TRAINED_OUT['grad_clip']:g}, {args.dtype}",
        "divergences": summary.get("divergences", []),
        "command": command,
        "hardware": f"2-core CPU (the project's development machine), {args.device}, "
                    f"{args.threads} torch thread(s)",
    })
    print(json.dumps({"installed": str(path), "final": summary.get("final")}, indent=1,
                     default=str))


if __name__ == "__main__":
    main()
