"""Helpers shared by the benchmark scripts: resumable training stages, test-set errors,
result files. Benchmarks run as scripts (``python benchmarks/NAME.py``), so this module is
imported from the script's own folder."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from ffpt_ase.analysis.plots import plot_learning_curve, plot_parity
from ffpt_ase.model.potential import load_potential
from ffpt_ase.training.config import TrainConfig
from ffpt_ase.training.metrics import error_metrics, predict
from ffpt_ase.training.trainer import train

HERE = Path(__file__).parent
RESULTS = HERE / "results"
WORK = HERE / "work"


def parser(
    doc: str,
    data: str,
    work: str,
    threads: int = 1,
    features: int | None = None,
    interactions: int | None = None,
    minutes: dict | None = None,
):
    """Argument parser with the options the benchmarks share: ``--data`` (a folder below
    ``../shared/data``), ``--work``, ``--threads`` and, where given, the model size and a
    wall-time budget in minutes per training stage (``--minutes-<stage>``)."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--data", default=f"../shared/data/{data}")
    ap.add_argument("--work", default=str(WORK / work), help="checkpoints and runs")
    ap.add_argument("--threads", type=int, default=threads, help="torch threads")
    if features:
        ap.add_argument("--features", type=int, default=features)
        ap.add_argument("--interactions", type=int, default=interactions)
    for name, budget in (minutes or {}).items():
        ap.add_argument(
            f"--minutes-{name}",
            type=float,
            default=budget,
            help=f"wall-time budget of the {name} stage",
        )
    return ap


def announce() -> str:
    """The command line that reproduces this run; printed and returned for the JSON."""
    command = " ".join(
        [Path(sys.executable).name if "venv" not in sys.executable else ".venv/bin/python"]
        + sys.argv
    )
    print("reproduce with:", command, flush=True)
    RESULTS.mkdir(exist_ok=True)
    return command


def stage(name: str, work: Path, minutes: float, **config) -> dict:
    """Train one stage into ``work/name`` within a wall-time budget (minutes). The stage's
    run folder does the bookkeeping: an interrupted stage resumes from last.pt, a finished
    one returns its summary at once, changed settings are refused."""
    out = work / name
    cfg = TrainConfig(output=str(out), max_time_s=60.0 * minutes, epochs=100000, **config)
    print(f"[{name}] training (budget {minutes:g} min) -> {out}", flush=True)
    summary = train(cfg)
    plot_learning_curve(out / "log.csv", out / "learning_curve.png")
    return summary


def shipped_pretrain(work: Path, name: str) -> dict:
    """Use a shipped pre-trained model (``pretrained:NAME``) as the ``pretrain`` stage: it is
    copied to ``work/pretrain/best.pt`` and its provenance stands in for the summary."""
    from ffpt_ase.pretrained import available, resolve_checkpoint

    info = available()[name]
    out = work / "pretrain"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(resolve_checkpoint(f"pretrained:{name}"), out / "best.pt")
    print(f"[pretrain] shipped pretrained:{name} ({info['model']})", flush=True)
    return {"stage": "pretrain", "shipped": f"pretrained:{name}", "epochs": info["epochs"],
            "stop_reason": info["stop_reason"], "final": info["training"],
            "provenance": info}


def three_stages(
    work: Path,
    teacher_data: Path,
    abinitio_data: Path,
    args,
    batch_size: int,
    pretrain_batch_size: int | None = None,
    split: dict | None = None,
    pretrained: str | None = None,
) -> dict:
    """The protocol every experiment compares: ``pretrain`` on teacher-labelled frames (or
    a shipped pre-trained model, ``pretrained=NAME``), ``scratch`` and ``finetune`` (from
    the pre-trained checkpoint) on the same ab initio frames and split. ``args`` brings the
    model size, threads and ``minutes_<stage>`` budgets of :func:`parser`. Returns the three
    training summaries."""
    arch = {"features": args.features, "interactions": args.interactions}
    common = {"threads": args.threads, "seed": 0}
    run = {**common, **(split or {})}
    return {
        "pretrain": shipped_pretrain(work, pretrained) if pretrained else stage(
            "pretrain",
            work,
            args.minutes_pretrain,
            stage="pretrain",
            data=str(teacher_data),
            batch_size=pretrain_batch_size or batch_size,
            **arch,
            **common,
        ),
        "scratch": stage(
            "scratch",
            work,
            args.minutes_scratch,
            stage="scratch",
            data=str(abinitio_data),
            batch_size=batch_size,
            **arch,
            **run,
        ),
        "finetune": stage(
            "finetune",
            work,
            args.minutes_finetune,
            stage="finetune",
            data=str(abinitio_data),
            init=str(work / "pretrain" / "best.pt"),
            batch_size=batch_size,
            **run,
        ),
    }


def test_errors(checkpoint: Path, frames, label: str, stem: str, batch_size: int = 64) -> dict:
    """Energy/force errors of a checkpoint on held-out frames (meV, meV/A; energy per atom
    too) and a parity plot ``results/<stem>_parity.png``."""
    model = load_potential(checkpoint, dtype=torch.float32)
    e, f = predict(model, frames, batch_size=batch_size)
    m = error_metrics(frames, e, f)
    real = frames.numbers_per_frame > 0
    plot_parity(
        frames.energy, e, frames.forces[real], f[real], RESULTS / f"{stem}_parity.png", title=label
    )
    return {
        "energy_mae_meV": 1e3 * m["energy_mae"],
        "energy_rmse_meV": 1e3 * m["energy_rmse"],
        "energy_per_atom_mae_meV": 1e3 * m["energy_per_atom_mae"],
        "forces_mae_meV_per_A": 1e3 * m["forces_mae"],
        "forces_rmse_meV_per_A": 1e3 * m["forces_rmse"],
        "n_frames": len(frames),
    }


def model_record(args) -> dict:
    """The architecture of the benchmark's models (the paper's basis and cutoff)."""
    return {
        "features": args.features,
        "interactions": args.interactions,
        "basis": 20,
        "cutoff": 5.0,
    }


def mean_sem(mean, sem, digits: int = 3) -> str:
    """``mean +- sem`` for a table cell; ``-`` when there is no value."""
    if mean is None:
        return "-"
    return f"{mean:.{digits}g}" + ("" if sem is None else f" +- {sem:.2g}")


def training_record(summary: dict) -> dict:
    return {
        "epochs": summary["epochs"],
        "stop_reason": summary["stop_reason"],
        "train_minutes": round(summary["final"]["time_s"] / 60.0, 1),
    }


def stability_record(summary: dict) -> dict:
    """The numbers of a :func:`run_stability` summary that go into a results file."""
    keep = (
        "n_trajectories",
        "n_failed",
        "fraction_stable",
        "time_to_failure_ps",
        "mean_simulated_ps",
        "reasons",
    )
    return {
        **{k: summary[k] for k in keep},
        "failures": [
            {k: t[k] for k in ("trajectory", "reason", "details", "time_to_failure_ps")}
            for t in summary["trajectories"]
            if t["failed"]
        ],
    }


def copy_learning_curve(work: Path, folder: str, stem: str) -> None:
    shutil.copy(
        work / folder / "learning_curve.png", RESULTS / f"{stem}_learning_curve_{folder}.png"
    )


def write_results(stem: str, result: dict, markdown: str, command: str) -> None:
    """``results/<stem>.json`` and ``results/<stem>.md`` (the table, then the command)."""
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown + f"\n\nReproduce: `{command}`\n")
    print(markdown, flush=True)


# ------------------------------------------------------------------ hydrogen combustion
# defaults shared by h2combustion.py and temporal_pair_ablation.py
H2COMBUSTION_MODEL = {"features": 64, "interactions": 3}
H2COMBUSTION_PRETRAIN_MINUTES = 15
H2COMBUSTION_PRETRAIN_PER_SPECIES = 12500


def h2combustion_pretrain_set(work: Path, n_per_species: int) -> Path:
    """Rattled Q-Force frames of the 8 species (made once, saved in ``work``)."""
    from ffpt_ase.applications.h2combustion.workflows import (rattled_species_frames,
                                                              rattled_species_sets)
    path = work / "pretrain_qforce.npz"
    if path.exists():
        return path
    return rattled_species_frames(rattled_species_sets(n_per_species)).save(path)


def metad_figures(work: Path, reaction: str, names, stem: str) -> None:
    """Side by side: the F(product) - F(reactant) convergence of every walker of each model
    (``work/metad_<reaction>_<name>/seed*``), and each model's seed-0 FES."""
    from ffpt_ase.analysis.plots import plot_convergence_runs
    runs = {name: {f.parts[-3]: json.loads(f.read_text()) for f in sorted(
        (work / f"metad_{reaction}_{name}").glob("seed*/fes/convergence.json"))}
        for name in names}
    plot_convergence_runs(runs, RESULTS / f"{stem}_convergence.png", title=f"rxn {reaction}")
    for name in names:
        src = work / f"metad_{reaction}_{name}" / "seed0" / "fes" / "fes.png"
        if src.exists():
            shutil.copy(src, RESULTS / f"{stem}_fes_{name}.png")
