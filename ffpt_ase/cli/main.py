"""``ffpt-ase`` command line: one sub-command per step of the FFPT pipeline.

::

    ffpt-ase sample --system HO2 --teacher qforce --n 100000 --sigma 0.2 --seed 0 -o pt.npz
    ffpt-ase parametrize gaff2 aspirin -o params/ [--name aspirin_gaff2 --charge 0]
    ffpt-ase parametrize qforce -o qforce.json [--xc b3lyp --basis 6-31g*]
    ffpt-ase data convert IN OUT
    ffpt-ase data info FILE
    ffpt-ase train --stage pretrain --data pt.npz -o runs/pt
    ffpt-ase evaluate runs/pt/best.pt test.xyz --json
    ffpt-ase export runs/ft/best.pt -o model.pt [--openmm start.xyz]
    ffpt-ase metad --reaction 09 --model runs/ft/best.pt --steps 50000 -o runs/rxn09
    ffpt-ase metad --deck my.dat --start my.xyz --model runs/ft/best.pt --steps 50000 -o runs/my
    ffpt-ase fes runs/rxn09 -o runs/rxn09/fes
    ffpt-ase stability --model runs/ft/best.pt --system HO2 --trajectories 8 --time-ps 10 -o out
    ffpt-ase demo [-o demo_output]

The options of ``train``, ``metad`` and ``stability`` are generated from the fields of
their configuration dataclasses (:mod:`ffpt_ase.settings`): name, default, unit and help
are written once, there.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _cmd_sample(args):
    from ..analysis.plots import plot_frame_statistics
    from ..applications.systems import get_system
    from ..sampling import RattleSampler

    from ..data import write_frames
    from ..files import make_folder
    from ..runfolder import file_lock, move_aside_file

    if args.n < 1 or args.batch_size < 1:
        raise ValueError(f"--n and --batch-size must be >= 1 (got {args.n}, {args.batch_size})")
    out = Path(args.output)
    if out.is_dir():
        raise ValueError(f"-o {out} is a folder; give a file name such as {out}/pt.npz")
    if out.suffix.lower() not in (".npz", ".xyz", ".extxyz", ".traj"):
        raise ValueError(f"-o {out}: use a .npz (native), .xyz/.extxyz or .traj file name")
    calc, ref, teacher = get_system(args.system, args.teacher, args.parameters)
    sampler = RattleSampler(calc, ref, sigma=args.sigma, seed=args.seed, teacher_name=teacher,
                            system_name=args.system)
    make_folder(out.parent)
    checkpoint = out.with_name(out.stem + ".partial.npz")
    lock = out.with_name(f".{out.name}.lock")
    with file_lock(lock, str(out)):
        if args.start_over:
            move_aside_file(checkpoint)
        frames = sampler.sample(args.n, batch_size=args.batch_size,
                                show_progress=not args.quiet, checkpoint=checkpoint)
        write_frames(frames, out)
        checkpoint.unlink(missing_ok=True)
    lock.unlink(missing_ok=True)
    print(f"wrote {len(frames)} frames of {args.system} ({teacher} labels, sigma "
          f"{args.sigma} A, seed {args.seed}) to {out} "
          f"[{frames.metadata['frames_per_second']:.0f} frames/s]")
    if frames.metadata["dropped_nonfinite"]:
        print(f"WARNING: {frames.metadata['dropped_nonfinite']} frames with non-finite labels "
              f"were dropped")
    if args.plot:
        png = plot_frame_statistics({args.system: frames}, out.with_suffix(".png"))
        print(f"wrote {png}")
    return 0


def _cmd_parametrize(args):
    if args.kind == "gaff2":
        from ..forcefields.gaff2 import parametrize_gaff2
        if not args.molecule:
            raise ValueError("parametrize gaff2 needs a molecule name or structure file")
        name = args.name or Path(args.molecule).stem + "_gaff2"
        paths = parametrize_gaff2(args.molecule, args.output, name=name, net_charge=args.charge)
        for kind, p in paths.items():
            print(f"{kind:7s} {p}")
        return 0
    from ..files import make_folder
    from ..forcefields.qforce_fit import write_parameters
    out = Path(args.output)
    if out.is_dir() or not out.suffix:
        out = out / "qforce_parameters.json"
    make_folder(out.parent)
    write_parameters(out, xc=args.xc, basis=args.basis)
    print(f"wrote {out}")
    return 0


def _cmd_data(args):
    from ..data import read_frames, write_frames

    from ..training.config import LABEL_KEY_FIELDS
    keys = {k: getattr(args, k, None) for k in LABEL_KEY_FIELDS}
    if args.action == "info":
        print(read_frames(args.input, **keys).summary())
        return 0
    if not args.output:
        raise ValueError("data convert needs IN and OUT")
    frames = read_frames(args.input, **keys)
    write_frames(frames, args.output)
    print(f"wrote {len(frames)} frames to {args.output}")
    return 0


def _cmd_train(args):
    import os

    from ..analysis.plots import plot_learning_curve
    from ..training.config import TrainConfig
    from ..training.trainer import train

    cfg = TrainConfig.from_sources(args.config, args=args)
    main_process = int(os.environ.get("RANK", "0")) == 0   # under torchrun: rank 0 reports
    if not main_process:
        logging.getLogger().setLevel(logging.WARNING)
    try:
        summary = train(cfg, start_over=args.start_over)
    finally:
        if main_process and (cfg.output_dir / "log.csv").exists():
            plot_learning_curve(cfg.output_dir / "log.csv", cfg.output_dir / "learning_curve.png")
    if not main_process:
        return 0
    final = summary["final"] or {}
    print(f"{cfg.stage}: {summary['epochs']} epochs ({summary['stop_reason']}); validation "
          f"energy MAE {final.get('val_energy_mae', float('nan')):.4f} eV, force MAE "
          f"{final.get('val_forces_mae', float('nan')):.4f} eV/A")
    written = [f for f in ("best.pt", "best_forces.pt", "last.pt", "log.csv",
                           "learning_curve.png") if (Path(cfg.output) / f).exists()]
    print(f"wrote {cfg.output}/" + ", ".join(written))
    return 0


def _cmd_evaluate(args):
    import json

    from ..analysis.plots import plot_parity
    from ..data import read_frames
    from ..model.potential import load_potential
    from ..runtime import set_threads, torch_dtype, usable_device
    from ..training.config import LABEL_KEY_FIELDS
    from ..training.metrics import (error_metrics, force_error_concentration,
                                    format_worst_frames, grouped_errors, predict,
                                    worst_frames)

    if args.worst < 0:
        raise ValueError(f"--worst must be >= 0 frames, got {args.worst}")
    set_threads(args.threads)
    dtype = torch_dtype(args.dtype)
    model = load_potential(args.model, dtype=dtype, device=usable_device(args.device))
    frames = read_frames(args.data, **{k: getattr(args, k, None) for k in LABEL_KEY_FIELDS})
    with_stress = frames.stress is not None and bool(frames.pbc.all())
    e, f, *s = predict(model, frames, batch_size=args.batch_size, dtype=dtype,
                       stress=with_stress)
    metrics = error_metrics(frames, e, f, s[0] if s else None)
    metrics.update(model=str(args.model), data=str(args.data))
    if args.plot:
        real = frames.numbers_per_frame > 0
        plot_parity(frames.energy, e, None if frames.forces is None else frames.forces[real],
                    f[real], args.plot, title=f"{Path(args.model).name} on {Path(args.data).name}")
        metrics["parity_plot"] = str(args.plot)
    if args.worst and frames.forces is None:
        raise ValueError(f"--worst ranks frames by force error, and {args.data} has no "
                         "reference forces")
    worst = worst_frames(frames, e, f, args.worst) if args.worst else []
    groups = grouped_errors(frames, e, f, args.group_by) if args.group_by else None
    if args.json:
        extra = {**({"worst_frames": worst, "force_sse_share_of_worst_1pct":
                     force_error_concentration(frames, f, 0.01)} if args.worst else {}),
                 **({"groups": groups} if groups is not None else {})}
        print(json.dumps({**metrics, **extra}))
    else:
        for k, v in metrics.items():
            print(f"{k:22s} {v}")
        if groups is not None:
            print(f"\nby {args.group_by} (energy MAE meV, force MAE and RMSE meV/A):")
            print(f"{args.group_by:>12s} {'frames':>7s} {'E MAE':>9s} {'F MAE':>9s} "
                  f"{'F RMSE':>9s}")
            for name, m in groups.items():
                cells = [1e3 * m.get(k, float("nan"))
                         for k in ("energy_mae", "forces_mae", "forces_rmse")]
                print(f"{name:>12s} {m['n_frames']:7d} " + " ".join(f"{c:9.1f}" for c in cells))
        if worst:
            share = force_error_concentration(frames, f, 0.01)
            print(f"\nthe {len(worst)} frames with the largest force RMSE (the worst 1 % of "
                  f"the frames carry {100 * share:.1f} % of the squared force error):")
            print(format_worst_frames(worst))
    return 0


def _cmd_compare(args):
    import json

    from ..analysis.error_comparison import compare_errors, difference_text
    from ..data import read_frames
    from ..model.potential import load_potential
    from ..runtime import set_threads, torch_dtype
    from ..training.config import LABEL_KEY_FIELDS
    from ..training.metrics import predict

    if args.block < 1:
        raise ValueError(f"--block must be >= 1 frame, got {args.block}")
    if not 0 < args.confidence < 1:
        raise ValueError(f"--confidence must be between 0 and 1, got {args.confidence}")
    if args.resamples < 100:
        raise ValueError(f"--resamples must be >= 100, got {args.resamples}")
    set_threads(args.threads)
    dtype = torch_dtype(args.dtype)
    models = [load_potential(m, dtype=dtype) for m in (args.model_a, args.model_b)]
    frames = read_frames(args.data, **{k: getattr(args, k, None) for k in LABEL_KEY_FIELDS})
    if frames.energy is None or frames.forces is None:
        raise ValueError(f"{args.data}: comparing models needs reference energies and forces")
    preds = [predict(m, frames, batch_size=args.batch_size, dtype=dtype) for m in models]
    res = compare_errors(frames, *preds, group_key=args.group_by, block=args.block,
                         confidence=args.confidence, n_resamples=args.resamples)
    res.update(model_a=str(args.model_a), model_b=str(args.model_b), data=str(args.data))
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"A = {args.model_a}\nB = {args.model_b}\non {args.data}: B - A in meV and meV/A "
          f"(negative: B more accurate), {100 * args.confidence:g} % bootstrap intervals and "
          f"sign-flip p-values over blocks of {args.block} consecutive frames")
    rows = [("all", res["all"])] + list(res.get("groups", {}).items())
    print(f"{'frames':>12s} {'n':>6s} {'E MAE A':>8s} {'E MAE B':>8s} {'B - A':>32s} "
          f"{'F MAE A':>8s} {'F MAE B':>8s} {'B - A':>32s}")
    for name, r in rows:
        cells = [f"{1e3 * r['a']['energy_mae']:8.1f}", f"{1e3 * r['b']['energy_mae']:8.1f}",
                 f"{difference_text(r.get('energy_mae_difference')):>32s}",
                 f"{1e3 * r['a']['forces_mae']:8.1f}", f"{1e3 * r['b']['forces_mae']:8.1f}",
                 f"{difference_text(r.get('forces_mae_difference')):>32s}"]
        print(f"{name:>12s} {r['n_frames']:6d} " + " ".join(cells)
              + (f"  ({r['note']})" if "note" in r else ""))
    return 0


def _cmd_export(args):
    from ..data.graphs import species_index
    from ..files import make_folder
    from ..model.export import export_potential
    from ..model.potential import load_potential
    from ..runtime import torch_dtype
    from ..simulate.md import read_structures

    out = Path(args.output)
    if out.is_dir() or out.suffix != ".pt":
        raise ValueError(f"-o {out}: give a file name ending in .pt")
    model = load_potential(args.model, dtype=torch_dtype(args.dtype))
    atoms = None
    if args.openmm:
        atoms = read_structures(args.openmm, 0, what="--openmm structure file")
        species_index(atoms.numbers, model.elements)   # unknown elements named now
    make_folder(out.parent)
    export_potential(model, out, dtype=args.dtype, openmm_atoms=atoms)
    kind = (f"OpenMM-Torch TorchForce for the {len(atoms)} atoms of {args.openmm} (nm, kJ/mol; "
            f"setOutputsForces(True))" if atoms is not None else
            "forward(numbers, positions [A], cell [A], pbc) -> energy [eV], forces [eV/A], "
            "stress [eV/A^3]")
    print(f"wrote {out}: TorchScript, {args.dtype}, elements {model.elements}, cutoff "
          f"{model.cutoff} A; {kind}; load it with torch.jit.load('{out}')")
    return 0


def _cmd_bench(args):
    import json

    from ..applications.speed import inference_speed, training_speed

    for name in ("features", "interactions", "calls", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got "
                             f"{getattr(args, name)}")
    kw = dict(system=args.system, features=args.features, interactions=args.interactions,
              dtype=args.dtype, threads=args.threads, device=args.device)
    if args.what == "speed":
        res = inference_speed(n_calls=args.calls, compile=args.compile, **kw)
    else:
        res = training_speed(batch_size=args.batch_size, **kw)
    print(json.dumps(res) if args.json else "\n".join(f"{k:20s} {v}" for k, v in res.items()))
    return 0


def _cmd_metad(args):
    from ..settings import from_sources

    if getattr(args, "reaction", None):
        from ..applications.h2combustion.metad import (ChannelMetadConfig,
                                                        run_channel_metadynamics)
        cfg = from_sources(ChannelMetadConfig, args=args)
        s = run_channel_metadynamics(cfg, show_progress=not args.quiet,
                                     start_over=args.start_over)
        what = f"rxn {s['reaction']} ({s['equation']})"
    else:
        from ..simulate.metad import MetadConfig, run_metadynamics
        if not getattr(args, "deck", None) or not getattr(args, "start", None):
            raise ValueError("give a combustion channel (--reaction NN) or your own system "
                             "(--deck FILE --start FILE)")
        cfg = from_sources(MetadConfig, args=args)
        s = run_metadynamics(cfg, show_progress=not args.quiet, start_over=args.start_over)
        what = f"{cfg.start} with {cfg.deck}"
    line = (f"{what}: {s['steps']} steps = {s['simulated_ps']:.3f} ps, "
            f"{s['ns_per_day']:.2f} ns/day; hottest 1-ps mean "
            f"{s['temperature_max_window_mean_K']} K")
    if "unphysical_fraction" in s:
        line += f"; unphysical frames {100 * s['unphysical_fraction']:.1f} %"
    if s.get("failed_at_step"):
        line += "; failed walkers (at step): " + ", ".join(
            f"{k} ({v})" for k, v in s["failed_at_step"].items())
    print(line)
    for k, v in s["files"].items():
        print(f"  {k:16s} {v}")
    return 0


def _cmd_fes(args):
    from ..analysis.metad_report import delta_f_line, fes_report, run_settings

    if args.bins < 2:
        raise ValueError(f"--bins must be >= 2, got {args.bins}")
    if args.temperature is not None and not args.temperature > 0:
        raise ValueError(f"--temperature must be > 0 K, got {args.temperature}")
    source = Path(args.source)
    reaction = args.reaction or run_settings(source).get("reaction")
    kw = dict(temperature=args.temperature, bins=args.bins, colvar=args.colvar,
              reweight_walls=args.reweight_walls)
    if reaction:
        from ..applications.h2combustion.report import channel_fes_report
        s = channel_fes_report(source, args.output, reaction=reaction, **kw)
    else:
        s = fes_report(source, args.output, **kw)
    print(delta_f_line(s))
    for note in s["notes"]:
        print(f"  note: {note}")
    for f in s["files"]:
        print(f"  {f}")
    return 0


def _cmd_stability(args):
    from ..analysis.plots import plot_survival
    from ..analysis.survival import from_trajectories, kaplan_meier, median_survival
    from ..applications.systems import start_structure
    from ..settings import from_sources
    from ..simulate.stability import StabilityConfig, run_stability

    cfg = from_sources(StabilityConfig, args=args)
    s = run_stability(cfg, start=start_structure(cfg.system), show_progress=not args.quiet,
                      start_over=args.start_over)
    curve = s["survival"]
    plot_survival({"model": (curve["time_ps"], curve["fraction_surviving"])},
                  Path(cfg.output) / "survival.png")
    median = median_survival(kaplan_meier(*from_trajectories(s["trajectories"])))
    print(f"{s['n_failed']} of {s['n_trajectories']} trajectories failed; median survival "
          + (f"{median:.3f} ps" if median is not None else
             f"> {max(r['simulated_ps'] for r in s['trajectories']):g} ps")
          + " (Kaplan-Meier)"
          + f"; wrote {cfg.output}/summary.json and survival.png")
    return 0


def _cmd_pretrained(args):
    from ..pretrained import available
    models = available()
    if not models:
        print("no pre-trained models are shipped with this installation")
    for name, info in models.items():
        print(f"pretrained:{name}\n  model    {info.get('model')}\n  teacher  {info.get('teacher')}"
              f"\n  frames   {info.get('frames')}\n  epochs   {info.get('epochs')} "
              f"({info.get('stop_reason')})\n  made by  {info.get('command')}")
    return 0


def _cmd_demo(args):
    from .demo import run_demo
    if args.n is not None and args.n < 1:
        raise ValueError(f"--n must be >= 1 rattled frames per species, got {args.n}")
    run_demo(args.output, n_per_species=args.n, seed=args.seed, data=args.data,
             quick=args.quick, pretrain_minutes=args.pretrain_minutes)
    return 0


def _version() -> str:
    from .. import __version__
    return __version__


START_OVER_HELP = ("move an earlier run in the output folder aside (to NAME.old-N) and start "
                   "again; without it the same command resumes, and changed settings are "
                   "refused")


class Parser(argparse.ArgumentParser):
    """Usage errors in one line (what is wrong, and where to read more), exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows the defaults of hand-written options (not None or False: nothing to show);
    generated options carry theirs in the help text already."""

    def _get_help_string(self, action):
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    import dataclasses

    from ..applications.h2combustion.metad import ChannelMetadConfig
    from ..settings import add_arguments
    from ..simulate.stability import StabilityConfig
    from ..training.config import LABEL_KEY_FIELDS, TrainConfig

    parser = Parser(
        prog="ffpt-ase", allow_abbrev=False, description="Force-field pre-training and fine-tuning of MLIPs "
        "(units: eV, Angstrom, fs)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add_command(name, **kw):
        # no abbreviations: --lr must never quietly mean --lr-factor
        return sub.add_parser(name, formatter_class=HelpFormatter, allow_abbrev=False, **kw)

    p = add_command("sample", help="rattle a molecule and label the frames with a teacher")
    p.add_argument("--system", required=True,
                   help="H, O, H2, O2, OH, H2O, HO2, H2O2, water, aspirin, or a structure file")
    p.add_argument("--teacher", choices=["qforce", "tip3p", "gaff2"], default=None,
                   help="classical teacher (default: the system's own)")
    p.add_argument("--n", type=int, default=100000, help="number of frames")
    p.add_argument("--sigma", type=float, default=0.2, help="rattle amplitude in A (not rescaled)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--parameters", default=None,
                   help="Q-Force parameters: a shipped set (table1, the default: the paper's "
                        "Table 1; selffit-b3lyp) or a JSON file")
    p.add_argument("--batch-size", type=int, default=10000, help="frames labelled per batch")
    p.add_argument("--plot", action="store_true", help="also write a PNG of the label statistics")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--start-over", action="store_true",
                   help="move an interrupted run's checkpoint (OUT.partial.npz) aside and "
                        "start again")
    p.add_argument("-o", "--output", required=True,
                   help="output file (.npz native; .xyz/.extxyz or .traj also work); an "
                        "interrupted run resumes from OUT.partial.npz")
    p.set_defaults(func=_cmd_sample)

    p = add_command("parametrize", help="make classical force-field parameters")
    p.add_argument("kind", choices=["gaff2", "qforce"])
    p.add_argument("molecule", nargs="?", help="gaff2: a known name (aspirin) or structure file")
    p.add_argument("-o", "--output", required=True, help="output folder (gaff2) or JSON (qforce)")
    p.add_argument("--name", default=None, help="gaff2: base name of the written files")
    p.add_argument("--charge", type=int, default=0, help="gaff2: net charge in e")
    p.add_argument("--xc", default="b3lyp", help="qforce: DFT functional (PySCF name)")
    p.add_argument("--basis", default="6-31g*", help="qforce: basis set")
    p.set_defaults(func=_cmd_parametrize)

    def add_label_keys(p):   # the same options as train's, with train's help
        add_arguments(p, TrainConfig, skip=[f.name for f in dataclasses.fields(TrainConfig)
                                            if f.name not in LABEL_KEY_FIELDS])

    p = add_command("data", help="inspect or convert frame files")
    p.add_argument("action", choices=["info", "convert"])
    p.add_argument("input", help="file or DeePMD folder (.npz, .xyz/.extxyz, .traj)")
    p.add_argument("output", nargs="?", help="convert: output file (.npz, .xyz, .traj)")
    add_label_keys(p)
    p.set_defaults(func=_cmd_data)

    p = add_command("train", help="train a NewtonNet potential (scratch, pretrain, finetune)")
    add_arguments(p, TrainConfig)
    p.add_argument("--config", default=None, help="TOML file with [train] keys (flags override)")
    p.add_argument("--start-over", action="store_true", help=START_OVER_HELP)
    p.set_defaults(func=_cmd_train)

    p = add_command("evaluate", help="energy/force errors of a model on a data set")
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", default=None, help="write a parity plot PNG here")
    p.add_argument("--worst", type=int, default=0, metavar="N",
                   help="also list the N frames with the largest force RMSE (index, "
                        "formula, closest contact, share of the squared force error)")
    p.add_argument("--group-by", default=None, metavar="KEY",
                   help="also the errors of each group of frames sharing a per-frame value "
                        "of KEY, an extra array of an .npz frame file (for example reaction, "
                        "the combustion data's channel); JSON in eV, eV/A, the table in meV")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    add_label_keys(p)
    p.set_defaults(func=_cmd_evaluate)

    p = add_command("compare", help="is model B more accurate than model A on a data set? "
                                    "MAE differences B - A (negative: B more accurate) with "
                                    "confidence intervals and p-values")
    p.add_argument("model_a", metavar="A")
    p.add_argument("model_b", metavar="B")
    p.add_argument("data")
    p.add_argument("--group-by", default=None, metavar="KEY",
                   help="also compare on each group of frames sharing a per-frame value of "
                        "KEY (for example reaction, the combustion data's channel)")
    p.add_argument("--block", type=int, default=20,
                   help="consecutive frames taken together (frames of one trajectory, in "
                        "its order, are correlated); 1 treats every frame as independent")
    p.add_argument("--confidence", type=float, default=0.95, help="of the intervals")
    p.add_argument("--resamples", type=int, default=9999,
                   help="bootstrap and permutation resamples")
    p.add_argument("--json", action="store_true", help="print one JSON object (eV, eV/A)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    add_label_keys(p)
    p.set_defaults(func=_cmd_compare)

    p = add_command("export", help="write a model as a TorchScript file that torch alone "
                                   "loads (for other MD engines)")
    p.add_argument("model", help="checkpoint (best.pt, pretrained:NAME)")
    p.add_argument("-o", "--output", required=True, help="TorchScript file (.pt)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                   help="precision of the network (energies are summed in float64 either way)")
    p.add_argument("--openmm", default=None, metavar="STRUCTURE",
                   help="write OpenMM-Torch's TorchForce convention instead, for the atoms of "
                        "this structure file (positions and box in nm, energy in kJ/mol)")
    p.set_defaults(func=_cmd_export)

    p = add_command("bench", help="speed of the model (random weights, no data needed)")
    p.add_argument("what", choices=["speed", "train"])
    p.add_argument("--system", default="aspirin")
    p.add_argument("--features", type=int, default=128)
    p.add_argument("--interactions", type=int, default=3)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--calls", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_bench)

    p = add_command("metad", help="well-tempered metadynamics (PLUMED): a combustion "
                                  "channel (--reaction NN) or any system (--deck FILE --start "
                                  "FILE)")
    add_arguments(p, ChannelMetadConfig, required=("model", "steps", "output"))
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--start-over", action="store_true", help=START_OVER_HELP)
    p.set_defaults(func=_cmd_metad)

    p = add_command("fes", help="free-energy surface, reweighting and convergence")
    p.add_argument("source", help="metadynamics run folder or HILLS file")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--temperature", type=float, default=None,
                   help="K (default: the run's, from its state.json)")
    p.add_argument("--bins", type=int, default=200)
    p.add_argument("--reweight-walls", action="store_true",
                   help="reweight the confining walls into the basin populations too")
    p.add_argument("--reaction", default=None, help="channel id (read from the run if absent)")
    p.add_argument("--colvar", default=None, help="COLVAR file (default: next to HILLS)")
    p.set_defaults(func=_cmd_fes)

    p = add_command("stability", help="time to failure of K Langevin trajectories")
    add_arguments(p, StabilityConfig, required=("model", "system", "output"))
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--start-over", action="store_true", help=START_OVER_HELP)
    p.set_defaults(func=_cmd_stability)

    p = add_command("pretrained", help="list the shipped pre-trained models "
                                       "(use them as --init pretrained:NAME)")
    p.set_defaults(func=_cmd_pretrained)

    p = add_command("demo", help="run the pipeline on the embedded default (no data needed)")
    p.add_argument("-o", "--output", default="demo_output")
    p.add_argument("--n", type=int, default=None, help="rattled frames per species")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None,
                   help="fine-tune on this combustion data folder instead of PySCF labels")
    p.add_argument("--pretrain-minutes", type=float, default=None,
                   help="pre-train here for this many minutes instead of starting from the "
                        "shipped pre-trained model")
    p.add_argument("--quick", action="store_true", help="seconds-long version (for tests)")
    p.set_defaults(func=_cmd_demo)
    return parser


#: commands whose output folder (or file) keeps a checkpoint to resume from
RESUMABLE = ("sample", "train", "metad", "stability", "demo")


def main(argv=None) -> int:
    """Run one command. Expected failures (bad input, missing or damaged files, permissions,
    a full disk, a run folder in use or changed, a diverging model, Ctrl-C) end with one line
    on stderr and a non-zero exit code; anything else also ends in one line, with the
    traceback under ``-v``."""
    import zipfile

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    where = getattr(args, "output", None) or "its output"
    try:
        return args.func(args)
    except KeyboardInterrupt:
        advice = (f"; run the same command again to continue from the last checkpoint in "
                  f"{where}" if args.command in RESUMABLE else "")
        print(f"ffpt-ase {args.command}: interrupted{advice}", file=sys.stderr)
        return 130
    except (ValueError, OSError, KeyError, RuntimeError, ImportError, ArithmeticError,
            EOFError, zipfile.BadZipFile) as err:
        # RuntimeError covers PlumedNotAvailable (missing kernel, with install advice);
        # ArithmeticError a diverging model (FloatingPointError); OSError permissions and
        # full disks
        if args.verbose:
            logging.exception("details")
        print(f"ffpt-ase {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # a defect: still one line, the traceback with -v
        if args.verbose:
            logging.exception("details")
        print(f"ffpt-ase {args.command}: internal error: {type(err).__name__}: "
              f"{_one_line(err)} (rerun with -v for the traceback, and please report it)",
              file=sys.stderr)
        return 1


def _one_line(err: BaseException) -> str:
    text = str(err) if not isinstance(err, KeyError) or not err.args else str(err.args[0])
    if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
        text = f"{text}: {err.filename}"
    return " ".join(text.split()) or type(err).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
