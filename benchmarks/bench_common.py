"""Helpers shared by the benchmark scripts: resumable training stages, test-set errors,
result files. Benchmarks run as scripts (``python benchmarks/NAME.py``), so this module is
imported from the script's own folder."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

import torch

from ffpt_ase.analysis.plots import plot_learning_curve, plot_parity
from ffpt_ase.analysis.survival import from_trajectories, kaplan_meier, median_survival
from ffpt_ase.files import atomic_path
from ffpt_ase.model.potential import load_potential
from ffpt_ase.training.config import TrainConfig
from ffpt_ase.training.metrics import (error_metrics, force_error_concentration, predict,
                                      worst_frames)
from ffpt_ase.training.trainer import train

HERE = Path(__file__).parent
RESULTS = HERE / "results"
WORK = HERE / "work"
MODELS = HERE / "models"   # committed: final models and the run folders that resume them

#: the stopping rule of a trained-out stage (issue 13): the paper's rule (learning rate at
#: 1 % of its start) or a plateau, whichever comes first, with the gradient norm clipped at
#: 10 (MACE's default) and float64 weights: scratch training at lr 1e-3 on the combustion
#: data diverged in float32, in epoch 55 unclipped and in epoch 19 clipped, both times by
#: an overflow on close-contact frames (RESULTS.md). The plateau window is 100 epochs of an
#: ab initio set; a pre-training set with ~4x the frames per epoch gets 25 (the same
#: optimizer steps).
TRAINED_OUT = {"plateau_epochs": 100, "grad_clip": 10.0, "dtype": "float64",
               "divergence_retries": 10}
PRETRAIN_PLATEAU_EPOCHS = 25
#: the files of a run folder that resume it (best.pt, best_forces.pt and the plot are
#: rebuilt from these)
RUN_STATE = ("run.json", "config.json", "split.npz", "data_sketch.npz", "log.csv", "last.pt",
             "summary.json")
#: a trained-out stage's model: its epoch of lowest validation force MAE, what the plateau
#: rule judges. (best.pt, the lowest validation loss, is the paper's choice; in both
#: combustion arms one validation frame's squared force error held it at an early epoch for
#: hundreds of epochs, RESULTS.md. The tables score it too.)
FINAL_MODEL = "best_forces.pt"


def final_model(folder: Path) -> Path:
    """The :data:`FINAL_MODEL` of a run folder; ``best.pt`` for a run started before the
    trainer kept ``best_forces.pt`` that has not beaten its earlier best force MAE since
    (said on a line)."""
    path = Path(folder) / FINAL_MODEL
    if path.exists():
        return path
    print(f"[{Path(folder).name}] no {FINAL_MODEL} (a run from before it was kept): "
          f"best.pt stands in", flush=True)
    return Path(folder) / "best.pt"


def stage_model(work: Path, stage: str) -> Path:
    """The model a stage of ``work`` hands on: ``pretrain``'s ``best.pt`` (what fine-tuning
    starts from, or a shipped model's copy, :func:`shipped_pretrain`), a trained arm's
    :func:`final_model`."""
    return work / stage / "best.pt" if stage == "pretrain" else final_model(work / stage)


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
            help=f"wall-time budget of the {name} stage"
                 + (" (default: none, trained out)" if budget is None else ""),
        )
    return ap


def add_arm_options(ap, shipped: str) -> None:
    """``--pretrained`` (default: the shipped ``pretrained:<shipped>``; '' pre-trains in
    the experiment) and ``--only scratch|finetune`` (one arm per process), the options of
    the experiments that compare the two arms; check them with :func:`check_arm_options`."""
    ap.add_argument("--pretrained", default=shipped,
                    help="start fine-tuning from this shipped pre-trained model ('' to "
                         "pre-train here within --minutes-pretrain)")
    ap.add_argument("--only", choices=("scratch", "finetune"), default=None,
                    help="train this stage only and stop (run the other in a second "
                         "process); the run folders are kept in benchmarks/models/")


def add_walker_options(ap, walkers: int) -> None:
    """``--walkers`` (independent metadynamics walkers per model and channel) and
    ``--no-compile``: the walkers' network is ``torch.compile``'d by default (about a minute
    once per process; then about 1.4x the eager rate for 8 three-atom walkers of the
    64-feature combustion model on this 2-core machine, 1.6x for the paper-size model in
    RESULTS.md's ensemble section). Check them with :func:`check_walkers`."""
    ap.add_argument("--walkers", type=int, default=walkers,
                    help="independent metadynamics walkers per model and channel")
    ap.add_argument("--no-compile", dest="compile", action="store_false",
                    help="run the walkers' network eagerly instead of torch.compile'd")


def check_arm_options(args) -> None:
    """Exit with one line when fine-tuning needs a shipped model that is missing or has
    another size than the scratch arm (:func:`check_shipped`)."""
    if args.pretrained and args.only != "scratch":
        check_shipped(args.pretrained, args)


def announce() -> str:
    """The command line that reproduces this run; printed and returned for the JSON."""
    python = Path(sys.executable).name if "venv" not in sys.executable else ".venv/bin/python"
    command = python + " " + shlex.join(sys.argv)   # quoted: it pastes into a shell as is
    print("reproduce with:", command, flush=True)
    RESULTS.mkdir(exist_ok=True)
    return command


def stage(name: str, work: Path, minutes: float | None, **config) -> dict:
    """Train one stage into ``work/name`` within a wall-time budget (minutes; None: until
    its stopping rule holds). The stage's run folder does the bookkeeping: an interrupted
    stage resumes from last.pt, a finished one returns its summary at once, changed
    settings are refused."""
    out = work / name
    cfg = TrainConfig(output=str(out), max_time_s=None if minutes is None else 60.0 * minutes,
                      epochs=100000, **config)
    budget = "until it stops" if minutes is None else f"budget {minutes:g} min"
    print(f"[{name}] training ({budget}) -> {out}", flush=True)
    summary = train(cfg)
    plot_learning_curve(out / "log.csv", out / "learning_curve.png")
    return summary


def _copy_file(src: Path, dst: Path) -> None:
    """Copy by a rename from a temporary file of this process, so that a reader, or another
    process copying the same file, never sees a partial one."""
    with atomic_path(dst, f".{os.getpid()}.tmp") as tmp:
        shutil.copyfile(src, tmp)


def _epochs_logged(folder: Path) -> int:
    """Epochs in a run folder's ``log.csv`` (0 without one)."""
    log = folder / "log.csv"
    return max(len(log.read_text().splitlines()) - 1, 0) if log.exists() else 0


def _run_identity(folder: Path) -> dict:
    """What makes a run folder's run the same run: ``run.json``'s kind, settings and inputs
    (not what a resume adds, such as the digests of data rebuilt equal up to rounding)."""
    record = json.loads((folder / "run.json").read_text())
    return {k: record.get(k) for k in ("kind", "settings", "inputs")}


def own_stages(names, only: str | None) -> list:
    """The stages of ``names`` an ``--only ONLY`` process trains, and so restores and keeps:
    ``only`` itself, and for ``finetune`` the ``pretrain`` stage it starts from (all of
    them without ``only``)."""
    if not only:
        return list(names)
    mine = {only, "pretrain"} if only == "finetune" else {only}
    return [n for n in names if n in mine]


def restore_runs(work: Path, experiment: str, names, only: str | None = None) -> None:
    """Put the committed run folders ``models/<experiment>/runs/<name>`` back into
    ``work/<name>`` where the work folder has none, or holds fewer epochs of the same run
    (the committed one came from a later session elsewhere), so that training continues
    where the furthest session stopped (a fresh clone has no ``work/``). ``only``: the
    stages of that ``--only`` process (:func:`own_stages`)."""
    for name in own_stages(names, only):
        src, dst = MODELS / experiment / "runs" / name, work / name
        if not (src / "run.json").exists():
            continue
        here = (dst / "run.json").exists()
        if here and _run_identity(src) != _run_identity(dst):
            print(f"[{name}] {dst} holds another run than {src}: kept as it is", flush=True)
            continue
        ahead = here and _epochs_logged(src) > _epochs_logged(dst)
        if ahead or not here:
            dst.mkdir(parents=True, exist_ok=True)
            for f in RUN_STATE:
                if (src / f).exists():
                    _copy_file(src / f, dst / f)
            print(f"[{name}] restored from {src}" + (
                f" ({_epochs_logged(src)} epochs, ahead of the work folder's)" if ahead
                else ""), flush=True)


def keep_runs(work: Path, experiment: str, names, final_models: bool = True,
              only: str | None = None) -> dict:
    """Copy each stage's resumable state to ``models/<experiment>/runs/<name>`` (to be
    committed) and, for a stage whose stopping rule holds, its final model to
    ``models/<experiment>/<name>.pt`` (unless ``final_models`` is False). ``only``: keep
    that stage alone, with the ``pretrain`` stage for ``finetune`` (what an ``--only``
    process trained: another process is still writing the other arm). Returns
    ``{name: status}``, status being the stop reason or ``"in progress"``."""
    status = {}
    for name in own_stages(names, only):
        src, dst = work / name, MODELS / experiment / "runs" / name
        if not (src / "run.json").exists():
            continue
        dst.mkdir(parents=True, exist_ok=True)
        for f in RUN_STATE:
            if (src / f).exists():
                _copy_file(src / f, dst / f)
        summary = json.loads((src / "summary.json").read_text()) \
            if (src / "summary.json").exists() else {}
        reason = summary.get("stop_reason", "")
        finished = reason.startswith(("learning rate", "plateau"))
        if finished and final_models and not _same_checkpoint(
                final_model(src), MODELS / experiment / f"{name}.pt"):
            _copy_file(final_model(src), MODELS / experiment / f"{name}.pt")
        status[name] = reason if finished else "in progress"
    return status


def _same_checkpoint(a: Path, b: Path) -> bool:
    """Whether ``b`` exists and holds ``a``'s checkpoint: the same contents, though saved
    again (a run folder rebuilds ``best_forces.pt`` from ``last.pt`` on resume, byte for
    byte different), so that a committed final model is not rewritten unchanged."""
    from ffpt_ase.model.potential import CheckpointError, load_checkpoint
    if not b.exists():
        return False
    if a.read_bytes() == b.read_bytes():
        return True
    try:
        ca, cb = load_checkpoint(a), load_checkpoint(b)
    except (CheckpointError, OSError, RuntimeError, ValueError):
        return False
    if set(ca) != set(cb) or set(ca["model_state"]) != set(cb["model_state"]):
        return False
    return all(torch.equal(ca["model_state"][k], cb["model_state"][k])
               for k in ca["model_state"]) and all(
        str(ca[k]) == str(cb[k]) for k in ca if k != "model_state")


def check_shipped(name: str, args) -> None:
    """Exit with one line unless the shipped ``pretrained:NAME`` exists and has the
    benchmark's model size (``args.features``, ``args.interactions``): scratch and
    fine-tuning are compared at one architecture."""
    from ffpt_ase.model.potential import load_checkpoint
    from ffpt_ase.pretrained import resolve_checkpoint
    try:
        config = load_checkpoint(resolve_checkpoint(f"pretrained:{name}"))["config"]
    except FileNotFoundError as err:
        sys.exit(str(err))
    shipped = (config["n_features"], config["n_interactions"])
    if shipped != (args.features, args.interactions):
        sys.exit(f"pretrained:{name} has {shipped[0]} features and {shipped[1]} interactions, "
                 f"the scratch arm would have {args.features} and {args.interactions}: give "
                 f"--features {shipped[0]} --interactions {shipped[1]}")


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


def finetuned_from(experiment: str, work: Path, candidates) -> Path:
    """Which of ``candidates`` (checkpoint paths or ``pretrained:NAME``) the experiment's
    fine-tuning arm started from: the one whose digest is the ``init`` its run folder
    recorded (``work/finetune/run.json``, else the committed one). Exits with one line when
    none is, so that a pre-trained model is never paired with a fine-tuning it is not the
    parent of."""
    from ffpt_ase.pretrained import resolve_checkpoint
    from ffpt_ase.runfolder import file_digest

    for folder in (work / "finetune", MODELS / experiment / "runs" / "finetune"):
        if (folder / "run.json").exists():
            record = json.loads((folder / "run.json").read_text())
            break
    else:
        sys.exit(f"no finetune run.json in {work} or {MODELS / experiment / 'runs'}: train "
                 f"the experiment's fine-tuning arm first")
    wanted = record["inputs"]["init"]
    for c in candidates:
        try:
            path = resolve_checkpoint(c)
        except FileNotFoundError:   # a shipped model not made yet
            continue
        if path.exists() and file_digest(path) == wanted:
            return path
    sys.exit(f"the fine-tuning arm's starting model ({record['free_settings_at_start']['init']}, "
             f"{wanted[:19]}...) is none of {', '.join(map(str, candidates))}")


def three_stages(
    work: Path,
    teacher_data: Path,
    abinitio_data: Path,
    args,
    batch_size: int,
    pretrain_batch_size: int | None = None,
    split: dict | None = None,
    pretrained: str | None = None,
    stop_rule: dict | None = None,
    only: str | None = None,
) -> dict:
    """The protocol every experiment compares: ``pretrain`` on teacher-labelled frames (or
    a shipped pre-trained model, ``pretrained=NAME``), ``scratch`` and ``finetune`` (from
    the pre-trained checkpoint) on the same ab initio frames and split. ``args`` brings the
    model size, threads and ``minutes_<stage>`` budgets of :func:`parser`; ``stop_rule``
    (e.g. :data:`TRAINED_OUT`) goes into every stage's settings, with the pre-training
    plateau window of :data:`PRETRAIN_PLATEAU_EPOCHS`. ``only`` trains that one stage
    (and, for ``finetune``, the pre-training it starts from), so that another process can
    train the other. Returns the training summaries."""
    arch = {"features": args.features, "interactions": args.interactions}
    common = {"threads": args.threads, "seed": 0}
    run = {**common, **(split or {}), **(stop_rule or {})}
    pt_rule = {**stop_rule, "plateau_epochs": PRETRAIN_PLATEAU_EPOCHS} if stop_rule else {}
    stages = {
        "pretrain": lambda: shipped_pretrain(work, pretrained) if pretrained else stage(
            "pretrain", work, args.minutes_pretrain, stage="pretrain", data=str(teacher_data),
            batch_size=pretrain_batch_size or batch_size, **arch, **common, **pt_rule),
        "scratch": lambda: stage(
            "scratch", work, args.minutes_scratch, stage="scratch", data=str(abinitio_data),
            batch_size=batch_size, **arch, **run),
        "finetune": lambda: stage(
            "finetune", work, args.minutes_finetune, stage="finetune",
            data=str(abinitio_data), init=str(work / "pretrain" / "best.pt"),
            batch_size=batch_size, **run),
    }
    # fine-tuning needs the pre-trained model (at once when shipped or already trained)
    names = {None: list(stages), "finetune": ["pretrain", "finetune"]}.get(only, [only])
    return {name: stages[name]() for name in names}


def test_errors(checkpoint: Path, frames, label: str, stem: str, batch_size: int = 64,
                worst: int = 5, predictions: tuple | None = None) -> dict:
    """Energy/force errors of a checkpoint on held-out frames (meV, meV/A; energy per atom
    too), the share of the squared force error the worst 1 % of frames carry, the
    ``worst`` frames themselves (``metrics.worst_frames``) and a parity plot
    ``results/<stem>_parity.png``. Evaluated in float64, the precision the ab initio
    stages train and validate in (:data:`TRAINED_OUT`): a close contact may overflow
    float32 where float64 gives the model's finite answer. ``predictions``: the checkpoint's
    float64 (energies, forces) on ``frames`` where the caller already has them (eV, eV/A)."""
    if predictions is None:
        model = load_potential(checkpoint, dtype=torch.float64)
        predictions = predict(model, frames, batch_size=batch_size, dtype=torch.float64)
    e, f = predictions
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
        "force_sse_share_of_worst_1pct": force_error_concentration(frames, f, 0.01),
        "worst_frames": worst_frames(frames, e, f, worst),
        "n_frames": len(frames),
        "dtype": "float64",
    }


def named_models(items, default: dict | None = None) -> dict:
    """``{NAME: PATH}`` from ``--model NAME=PATH`` arguments (``default`` when none are
    given; PATH may be ``pretrained:NAME``); exits with one line for a malformed item or a
    missing checkpoint."""
    models = {}
    for item in items:
        if "=" not in item:
            sys.exit(f"--model {item!r}: expected NAME=PATH")
        name, path = item.split("=", 1)
        models[name] = path
    models = models or dict(default or {})
    from ffpt_ase.pretrained import resolve_checkpoint
    for name, path in models.items():
        try:
            found = resolve_checkpoint(path).is_file()
        except FileNotFoundError as err:   # an unknown pretrained:NAME
            sys.exit(f"--model {name}: {err}")
        if not found:
            sys.exit(f"--model {name}: no checkpoint at {path}")
    return models


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


def walker_cells(m: dict) -> tuple[str, str, str]:
    """A :func:`~ffpt_ase.applications.h2combustion.workflows.run_walkers` result as three
    table cells: failed walkers; the unphysical fraction of checked frames (mean +- sem over
    walkers, and pooled over all their frames); F(product) - F(reactant) in kJ/mol (mean +-
    sem over the walkers with an estimate, their count, and the lowest lower bound of
    those that never reached the product)."""
    if m.get("error"):
        return f"not run: {m['error'][:80]}", "-", "-"
    n = len(m["walkers"])
    pooled = m["unphysical_fraction_pooled"]
    unphysical = mean_sem(m["unphysical_fraction_mean"], m["unphysical_fraction_sem"]) + (
        "" if pooled is None else f" (pooled {pooled:.3g})")
    delta_f = f"{mean_sem(m['delta_f_mean_kJ_per_mol'], m['delta_f_sem_kJ_per_mol'])} " \
        f"({m['n_delta_f']} of {n} with an estimate)"
    bounds = m["delta_f_lower_bounds_kJ_per_mol"]
    if bounds:
        delta_f += f"; {len(bounds)} never reached the product: > {min(bounds):.0f}"
    return f"{m['n_failed']} / {n}", unphysical, delta_f


def unphysical_species_cell(m: dict, top: int = 3) -> str:
    """What a walker set's flagged frames held, as a table cell: the ``top`` most frequent
    (``unphysical_species_pooled``) with their share of the flagged frames, e.g.
    ``H + HO2 91 %, H + HO + O 9 %``; ``none`` without flagged frames (also for a set kept
    before the species were counted, if it flagged none); else ``not recorded`` there."""
    counts = m.get("unphysical_species_pooled")
    if counts is None:
        if m.get("error"):
            return "-"
        return "none" if m.get("unphysical_fraction_pooled") == 0 else "not recorded"
    total = sum(counts.values())
    if not total:
        return "none"
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    cell = ", ".join(f"{name} {100 * n / total:.2g} %" for name, n in items[:top])
    return cell + (f", {len(items) - top} more" if len(items) > top else "")


def walker_comparison_cells(c: dict) -> tuple[str, str, str]:
    """A :func:`~ffpt_ase.applications.h2combustion.workflows.compare_walker_sets` result
    (model B against model A) as three table cells: failed walkers of each with Fisher's
    p; B - A of the unphysical fraction and of Delta F (kJ/mol; over the walkers that
    have an estimate, B's count first), each with its 95 % bootstrap interval (from 5
    walkers per model) and permutation p-value."""
    from ffpt_ase.analysis.error_comparison import difference_text
    failed = "-" if c["failed"] is None else (
        f"{c['failed']['b'][0]} / {c['failed']['b'][1]} vs {c['failed']['a'][0]} / "
        f"{c['failed']['a'][1]}, Fisher p = {c['failed']['fisher_p']:.2g}")
    delta_f = c["delta_f_kJ_per_mol"]
    reached = "" if delta_f is None else \
        f" ({delta_f['n_b']} and {delta_f['n_a']} walkers with an estimate)"
    return (failed, difference_text(c["unphysical_fraction"], scale=1.0, digits=3),
            difference_text(delta_f, scale=1.0, digits=0) + reached)


def walker_length(m: dict, timestep_fs: float) -> str:
    """A :func:`~ffpt_ase.applications.h2combustion.workflows.run_walkers` result's length as
    the run holds it (a finished run is read back whatever the command line asks):
    ``"8 x 50 ps"``, or ``"-"`` for a run that did not start."""
    if "steps" not in m:
        return "-"
    return f"{len(m['walkers'])} x {m['steps'] * timestep_fs * 1e-3:g} ps"


def check_walkers(walkers: int) -> None:
    """Statistics over walkers need two of them at least: one line and exit 1 otherwise."""
    if walkers < 2:
        sys.exit(f"need --walkers >= 2 (statistics over walkers), got {walkers}")


def training_record(summary: dict) -> dict:
    """Epochs, stop reason and training minutes of a stage's summary."""
    return {
        "epochs": summary["epochs"],
        "stop_reason": summary["stop_reason"],
        "train_minutes": round(summary["final"]["time_s"] / 60.0, 1),
    }


def pretrain_record(summary: dict, frames: str) -> dict:
    """The pre-training a fine-tuned arm started from: :func:`training_record` of the
    ``pretrain`` stage and its ``frames`` (in words) or, for a shipped model
    (:func:`shipped_pretrain`), its provenance: its frames, and its epochs and minutes summed
    over every stage it was continued from (``stages``, first to last)."""
    info = summary.get("provenance")
    if info is None:
        return {**training_record(summary), "frames": frames}
    chain = [info]
    # (a model trained from scratch has continued_from None; one continued from a plain
    # checkpoint file has no provenance for it)
    while (chain[0].get("continued_from") or {}).get("provenance"):
        chain.insert(0, chain[0]["continued_from"]["provenance"])
    stages = [{"epochs": p["epochs"], "stop_reason": p["stop_reason"],
               "train_minutes": round(p["training"]["time_s"] / 60.0, 1),
               "command": p.get("command")} for p in chain]
    return {"shipped": summary["shipped"], "frames": info["frames"],
            "epochs": sum(p["epochs"] for p in stages),
            "train_minutes": round(sum(p["train_minutes"] for p in stages), 1),
            "stop_reason": info["stop_reason"], "stages": stages}


def stability_record(summary: dict) -> dict:
    """The numbers of a :func:`run_stability` summary that go into a results file, with the
    Kaplan-Meier median survival time over all trajectories (``median_survival_ps``, None
    when more than half survived)."""
    keep = (
        "n_trajectories",
        "n_failed",
        "fraction_stable",
        "time_to_failure_of_failed_ps",
        "mean_simulated_ps",
        "reasons",
    )
    return {
        **{k: summary[k] for k in keep},
        "median_survival_ps": median_survival(
            kaplan_meier(*from_trajectories(summary["trajectories"]))),
        # (a median of None is only known to exceed this)
        "longest_simulated_ps": max(t["simulated_ps"] for t in summary["trajectories"]),
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


def walker_run_identity(reaction: str, checkpoint, walkers: int, steps: int,
                        seed: int = 0) -> dict:
    """What makes two multi-walker runs of a channel the same run: the deck's content, the
    model's weights (``FFPTCalculator.fingerprint``, whatever the file), the walkers, their
    steps and seed, and the rule that classifies its frames (``CLASSIFICATION_RULE``: a
    run kept under another rule is recomputed, not read back); the driver's other settings
    are its defaults (``ChannelMetadConfig``)."""
    from ffpt_ase.applications.h2combustion.channels import CLASSIFICATION_RULE
    from ffpt_ase.applications.h2combustion.decks import shipped_deck
    from ffpt_ase.calculators import FFPTCalculator
    from ffpt_ase.runfolder import file_digest
    return {"reaction": reaction, "deck": file_digest(shipped_deck(reaction)),
            "model": FFPTCalculator.from_checkpoints(checkpoint, dtype="float64").fingerprint(),
            "walkers": walkers, "steps": steps, "seed": seed,
            "classification": CLASSIFICATION_RULE}


def channel_walkers(reaction: str, checkpoint, walkers: int, steps: int, folder: Path,
                    stem: str, seed: int = 0, **settings) -> dict:
    """:func:`~ffpt_ase.applications.h2combustion.workflows.run_walkers`, kept beside the
    results (to be committed): its summary with each walker's Delta F convergence goes to
    ``results/<stem>_walkers.json`` and walker 0's FES figure to ``results/<stem>_fes.png``.
    Where ``folder`` holds no finished run (a fresh clone: run folders, with their
    trajectories, are hundreds of MB and not committed) and the kept file holds the same run
    (:func:`walker_run_identity`), the kept summary is returned instead of rerunning, so that
    the tables and figures are remade from it; any other run is simulated (or resumed, or
    read back from ``folder``) and kept."""
    from ffpt_ase.applications.h2combustion.workflows import run_walkers
    kept_file = RESULTS / f"{stem}_walkers.json"
    identity = walker_run_identity(reaction, checkpoint, walkers, steps, seed)
    if kept_file.exists() and not (Path(folder) / "walkers.json").exists():
        kept = json.loads(kept_file.read_text())
        if kept.get("run") == identity:
            print(f"[metad] rxn {reaction}: read back from {kept_file} (the same run; its "
                  f"folder {folder} is not here)", flush=True)
            return kept
    result = run_walkers(reaction, checkpoint, walkers, steps, folder, seed=seed, **settings)
    convergence = {f.parts[-3]: json.loads(f.read_text()) for f in
                   sorted(Path(folder).glob("walker_*/fes/convergence.json"))}
    RESULTS.mkdir(exist_ok=True)
    with atomic_path(kept_file) as tmp:
        tmp.write_text(json.dumps({**result, "run": identity, "convergence": convergence},
                                  indent=1) + "\n")
    fes, dst = Path(folder) / "walker_00" / "fes" / "fes.png", RESULTS / f"{stem}_fes.png"
    dst.unlink(missing_ok=True)   # not an earlier run's figure beside this run's numbers
    if fes.exists():
        shutil.copy(fes, dst)
    return {**result, "run": identity, "convergence": convergence}


def metad_figures(runs: dict, reaction: str, stem: str) -> None:
    """Side by side, ``results/<stem>_convergence.png``: the F(product) - F(reactant)
    convergence of every walker of each model (``runs``: model name -> its
    :func:`channel_walkers` result; a run kept before the convergence was kept draws an
    empty panel)."""
    from ffpt_ase.analysis.plots import plot_convergence_runs
    plot_convergence_runs({name: m.get("convergence", {}) for name, m in runs.items()},
                          RESULTS / f"{stem}_convergence.png", title=f"rxn {reaction}")
