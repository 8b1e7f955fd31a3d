"""Hydrogen combustion: NewtonNet from scratch vs FFPT-FT on the 19-channel benchmark.

Protocol (issue 5, experiment 3), data from ``../shared/data/h2combustion`` (Guan et al.,
Sci. Data 9, 215 (2022); wB97X-V/cc-pVTZ):

1. pretrain: rattled H, O, H2, O2, OH, H2O, HO2, H2O2 (sigma 0.2 A) labelled by the shipped
   Q-Force parameters, lr 1e-4; by default the shipped ``pretrained:h2combustion``
   (``benchmarks/pretrain_shipped.py h2combustion``).
2. data: IRC + AIMD + normal-mode files of the 19 channels (``12_*`` for channel 12 with the
   corrected ``12a_irc_{d,q}_corr`` IRCs; the uncorrected ``12_irc``, the duplicate
   ``12a_*_all``/``12b_*_all`` files and the extra ``20``/``21`` AIMD sets are not used).
   A seeded ``--train-fraction`` of every file (default 10 %, the paper's) is the
   training + validation set; a disjoint sample of every file (up to ``--test-per-file``
   frames) is the test set.
3. scratch (lr 1e-3) and finetune (from step 1, lr 1e-4) on the same frames, each trained
   out (``bench_common.TRAINED_OUT``: learning rate at 1 % of its start or a 100-epoch
   plateau of the validation force MAE, gradient norm clipped at 10); its model is the epoch
   of lowest validation force MAE (``bench.FINAL_MODEL``; the paper's lowest validation
   loss and the last epoch are scored too). A stage longer than
   a session continues from its run folder, committed in
   ``benchmarks/models/h2combustion/runs/``; a finished stage's model is
   ``benchmarks/models/h2combustion/{scratch,finetune}.pt``. ``--only scratch`` and
   ``--only finetune`` do one arm's work in its own process: its training and, once its
   stopping rule holds, its metadynamics walkers (step 6), so that an arm that finishes
   first uses its core while the other trains. The full run then finds them done.
4. energy/force errors per channel on the test set.
5. the energy along the O-H distance of channel 09 (HO2 -> H + O2) from 0.4 to 3 A
   (the paper's Figure 4a) for scratch, FFPT, FFPT-FT, the Q-Force teacher and PySCF
   single points at the data set's level (UKS wB97X-V/cc-pVTZ, 0.5-3 A), drawn by
   ``h2combustion_oh_scan.py`` (which also scans any other models).
6. well-tempered metadynamics (the shipped decks) of channels 09 and 01 with scratch and
   FFPT-FT, ``--walkers`` independent walkers each (default 8 x 50 ps, issue 13), on the
   ensemble engine: fraction of frames with unphysical species, FES and the convergence of
   F(product) - F(reactant).

Everything resumes: training from last.pt, each metad walker from its restart state.

    .venv/bin/python benchmarks/h2combustion.py --data ../shared/data/h2combustion

Writes ``benchmarks/results/h2combustion.{json,md}`` and PNGs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import bench_common as bench
import numpy as np
from h2combustion_oh_scan import scan_and_plot

from ffpt_ase.applications.h2combustion.metad import ChannelMetadConfig
from ffpt_ase.applications.h2combustion.dataset import data_files, train_test_sets
from ffpt_ase.analysis.error_comparison import difference_text
from ffpt_ase.applications.h2combustion.workflows import (compare_walker_sets,
                                                          per_channel_comparison,
                                                          per_channel_errors,
                                                          test_predictions)
from ffpt_ase.applications.systems import COMBUSTION_SPECIES
from ffpt_ase.data import Frames
from ffpt_ase.model.potential import load_checkpoint
from ffpt_ase.training.metrics import format_worst_frames

MODEL = bench.H2COMBUSTION_MODEL
PRETRAIN_MINUTES = bench.H2COMBUSTION_PRETRAIN_MINUTES
PRETRAIN_PER_SPECIES = bench.H2COMBUSTION_PRETRAIN_PER_SPECIES
METAD = ChannelMetadConfig(reaction="09")  # the walkers' settings: the driver's defaults


#: each arm's models scored besides its final one (bench.FINAL_MODEL): key -> (file, label)
OTHER_MODELS = {"best_val_loss_model": ("best.pt", "best validation loss"),
                "last_epoch_model": ("last.pt", "last epoch")}
#: the training arms (their run folders) and their names in the tables and metad folders
ARM_NAMES = {"scratch": "scratch", "finetune": "FFPT-FT"}
METAD_CHANNELS = ("09", "01")


def metadynamics(work: Path, models: dict, args) -> dict:
    """``args.walkers`` independent walkers x ``args.metad_steps`` steps of each channel in
    :data:`METAD_CHANNELS` with each model (name -> checkpoint), in
    ``work/metad_<channel>_<name>`` (resumable; a finished one is read back)."""
    out = {}
    for reaction in METAD_CHANNELS:
        for name, checkpoint in models.items():
            print(f"[metad] rxn {reaction}, {name}: {args.walkers} walkers x "
                  f"{args.metad_steps} steps", flush=True)
            m = bench.channel_walkers(reaction, checkpoint, args.walkers, args.metad_steps,
                                      work / f"metad_{reaction}_{name}",
                                      f"h2combustion_metad_{reaction}_{name}",
                                      compile=args.compile)
            failed, unphysical, delta_f = bench.walker_cells(m)
            print(f"[metad] rxn {reaction}, {name}: failed walkers {failed}; unphysical "
                  f"{unphysical}; Delta F {delta_f} kJ/mol", flush=True)
            out[f"{reaction}/{name}"] = m
    return out


def assemble(data: Path, fraction: float, n_test: int, work: Path, seed: int = 0):
    """Training and test sets, saved once in ``work``; returns their paths. They are built
    each time (a few seconds), and saved sets whose frames differ from them (made from other
    data, or with another fraction, number of test frames per file or seed) are refused."""
    files = work / "train.npz", work / "test.npz"
    for file, frames in zip(files, train_test_sets(data, fraction, n_test, seed,
                                                   verbose=True)):
        if not file.exists():
            frames.save(file)
            continue
        saved = Frames.load(file)
        if saved.fingerprint() != frames.fingerprint() or not np.array_equal(
                saved.extras.get("reaction"), frames.extras.get("reaction")):
            sys.exit(f"{file} holds other frames than --data {data} --train-fraction "
                     f"{fraction} --test-per-file {n_test} give; use those settings or "
                     f"another --work folder")
    return files


def test_table(errors: dict) -> list:
    """Markdown lines of the test errors of the arms (both of each trained arm's models) and
    of the pre-trained model, then each arm's worst test frames."""
    lines = ["| model | energy MAE (meV) | force MAE (meV/A) | force RMSE (meV/A) | share of the "
             "squared force error in the worst 1 % of frames | epochs |",
             "|---|---|---|---|---|---|"]
    for label, name, epochs in (("scratch", "scratch", errors["scratch"]["epochs"]),
                                ("FFPT-FT", "FFPT-FT", errors["FFPT-FT"]["epochs"]),
                                ("FFPT (pre-trained only)", "FFPT",
                                 errors["FFPT-FT"]["pretrain"]["epochs"])):
        rows = [(label, errors[name])]
        if name != "FFPT":
            er = errors[name]
            which = "lowest validation force MAE" if er["selected_file"] == bench.FINAL_MODEL \
                else f"best validation loss, standing in for {bench.FINAL_MODEL}"
            rows = [(f"{label}, {which} (epoch {er['selected_epoch']}; the final model)", er)]
            rows += [(f"{label}, {text} (epoch {er[key]['epoch']})", er[key])
                     for key, (_, text) in OTHER_MODELS.items() if key in er]
        for text, er in rows:
            lines.append(f"| {text} | {er['energy_mae_meV']:.1f} | "
                         f"{er['forces_mae_meV_per_A']:.1f} | {er['forces_rmse_meV_per_A']:.1f} | "
                         f"{100 * er['force_sse_share_of_worst_1pct']:.0f} % | {epochs} |")
    for name in ("scratch", "FFPT-FT"):
        lines += ["", f"The {name} arm's worst test frames (by force RMSE):", "", "```",
                  format_worst_frames(errors[name]["worst_frames"]), "```"]
    return lines


def main():
    ap = bench.parser(
        __doc__,
        "h2combustion",
        "h2combustion",
        **MODEL,
        minutes={"pretrain": PRETRAIN_MINUTES, "scratch": None, "finetune": None},
    )
    ap.add_argument("--train-fraction", type=float, default=0.10)
    ap.add_argument("--test-per-file", type=int, default=500)
    ap.add_argument(
        "--n-pretrain", type=int, default=PRETRAIN_PER_SPECIES, help="rattled frames per species"
    )
    bench.add_walker_options(ap, walkers=8)
    ap.add_argument("--metad-steps", type=int, default=250000,
                    help=f"{METAD.timestep_fs} fs steps per walker (default: 50 ps)")
    ap.add_argument("--no-dft-scan", action="store_true", help="skip the PySCF scan points")
    bench.add_arm_options(ap, "h2combustion")
    args = ap.parse_args()
    bench.check_arm_options(args)
    bench.check_walkers(args.walkers)
    command = bench.announce()
    data = Path(args.data)
    if not (data / "npz").is_dir():
        sys.exit(f"hydrogen-combustion data not found in {data} (need npz/); pass --data")
    files = data_files(data)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    train_file, test_file = assemble(data, args.train_fraction, args.test_per_file, work)
    pt_file = bench.h2combustion_pretrain_set(work, args.n_pretrain)
    bench.restore_runs(work, "h2combustion", ("scratch", "finetune"), only=args.only)
    runs = bench.three_stages(work, pt_file, train_file, args, batch_size=32,
                              pretrained=args.pretrained or None,
                              stop_rule=bench.TRAINED_OUT, only=args.only)
    status = bench.keep_runs(work, "h2combustion", ("scratch", "finetune"), only=args.only)
    print("[training]", status, flush=True)
    if args.only:   # this arm's metadynamics too, once its training is finished
        name = ARM_NAMES[args.only]
        if status.get(args.only, "in progress") != "in progress":
            metadynamics(work, {name: bench.final_model(work / args.only)}, args)
        return
    s_pt, s_sc, s_ft = runs["pretrain"], runs["scratch"], runs["finetune"]
    ckpt = {name: bench.stage_model(work, folder) for name, folder in
            (("scratch", "scratch"), ("FFPT", "pretrain"), ("FFPT-FT", "finetune"))}

    test = Frames.load(test_file)
    n_trainval = len(Frames.load(train_file))
    errors, channels, predictions = {}, {}, {}
    for name, summary in (("scratch", s_sc), ("FFPT-FT", s_ft)):
        folder = ckpt[name].parent.name
        predictions[name] = test_predictions(ckpt[name], test)
        errors[name] = {
            **bench.test_errors(ckpt[name], test, f"h2combustion test set, {name}",
                                f"h2combustion_{folder}", predictions=predictions[name]),
            **bench.training_record(summary),
            "selected_epoch": load_checkpoint(ckpt[name])["epoch"],
            "selected_file": ckpt[name].name,
        }
        # the arm's other models: the paper's choice (the lowest validation loss, energy
        # MSE + 20 x force MSE, which one outlier frame can hold back for many epochs,
        # RESULTS.md) and the last epoch's
        for key, (file, text) in OTHER_MODELS.items():
            other = ckpt[name].with_name(file)
            if other == ckpt[name]:   # best.pt stood in for best_forces.pt
                continue
            errors[name][key] = {
                **bench.test_errors(other, test, f"h2combustion test set, {name}, {text}",
                                    f"h2combustion_{folder}_{other.stem}", batch_size=256),
                "epoch": load_checkpoint(other)["epoch"]}
        channels[name] = per_channel_errors(test, predictions[name])
        bench.copy_learning_curve(work, folder, "h2combustion")
    errors["FFPT"] = bench.test_errors(
        ckpt["FFPT"],
        test,
        "h2combustion test set, FFPT only",
        "h2combustion_pretrain",
        batch_size=256,
    )
    errors["FFPT-FT"]["pretrain"] = bench.pretrain_record(
        s_pt, f"{args.n_pretrain} rattled Table 1 frames of each of "
              f"{', '.join(COMBUSTION_SPECIES)}")

    # FFPT-FT against scratch on the same test frames, overall and per channel
    comparison = per_channel_comparison(test, predictions["scratch"], predictions["FFPT-FT"])

    scan, scan_table = scan_and_plot(ckpt, "h2combustion_oh_scan",
                                      with_dft=not args.no_dft_scan)

    metad = metadynamics(work, {name: ckpt[name] for name in ARM_NAMES.values()}, args)
    for reaction in METAD_CHANNELS:
        bench.metad_figures({name: metad[f"{reaction}/{name}"] for name in ARM_NAMES.values()},
                            reaction, f"h2combustion_metad_{reaction}")

    metad_comparison = {r: compare_walker_sets(metad[f"{r}/scratch"], metad[f"{r}/FFPT-FT"])
                        for r in METAD_CHANNELS}

    result = {
        "command": command,
        "model": bench.model_record(args),
        "data": {
            "files": [f.name for f in files],
            "train_fraction": args.train_fraction,
            "n_train_val": n_trainval,
            "n_test": len(test),
        },
        "training_status": status,
        "errors": errors,
        "per_channel": channels,
        "ffpt_ft_minus_scratch": comparison,
        "oh_scan": scan,
        "metad": metad,
        "metad_ffpt_ft_minus_scratch": metad_comparison,
        "metad_settings": {
            # what the runs hold (a finished run is read back whatever --metad-steps says)
            "walkers": sorted({len(m["walkers"]) for m in metad.values() if m["walkers"]}),
            "steps": sorted({m["steps"] for m in metad.values() if "steps" in m}),
            **{k: getattr(METAD, k)
               for k in ("timestep_fs", "temperature_K", "friction_per_ps", "dtype")},
            "decks": "plumed_inputs/rxnNN.dat",
        },
    }
    lines = test_table(errors)
    lines += ["", scan_table]
    lines += [
        "",
        "Per channel (test frames; energy MAE meV / force MAE meV/A). FFPT-FT - scratch: "
        "the difference of the final models' MAEs with its 95 % bootstrap interval and a "
        f"sign-flip p-value, over blocks of {comparison['block']} consecutive test frames "
        "(`ffpt-ase compare`); negative: FFPT-FT more accurate:",
        "",
        "| channel | n | scratch | FFPT-FT | FFPT-FT - scratch, energy MAE (meV) | "
        "FFPT-FT - scratch, force MAE (meV/A) |",
        "|---|---|---|---|---|---|",
    ]
    for rxn in [*channels["scratch"], "all"]:
        c = comparison["all"] if rxn == "all" else comparison["groups"][rxn]
        (ea, fa), (eb, fb) = ((c[k]["energy_mae"], c[k]["forces_mae"]) for k in "ab")
        lines.append(
            f"| {rxn} | {c['n_frames']} | {1e3 * ea:.1f} / {1e3 * fa:.1f} | "
            f"{1e3 * eb:.1f} / {1e3 * fb:.1f} | "
            f"{difference_text(c.get('energy_mae_difference'))} | "
            f"{difference_text(c.get('forces_mae_difference'))} |"
        )
    lines += [
        "",
        f"Metadynamics ({METAD.timestep_fs:g} fs steps, {METAD.temperature_K:g} K, friction "
        f"{METAD.friction_per_ps:g}/ps):",
        "",
        (
            "| channel | model | walkers x length | failed walkers | unphysical frames (mean +- "
            "sem over walkers; pooled) | F(product) - F(reactant) kJ/mol (mean +- sem over "
            "the walkers with a Delta F (both basins visited, and in the second half of the run)) |"
        ),
        "|---|---|---|---|---|---|",
    ]
    for key, m in metad.items():
        reaction, name = key.split("/")
        lines.append(f"| {reaction} | {name} | {bench.walker_length(m, METAD.timestep_fs)} | "
                     + " | ".join(bench.walker_cells(m)) + " |")
    lines += ["", "FFPT-FT against scratch (B - A; 95 % bootstrap intervals, permutation "
              "p-values over walkers; Fisher's exact test on the failed walkers):", "",
              "| channel | failed walkers, FFPT-FT vs scratch | unphysical fraction, FFPT-FT - "
              "scratch | Delta F (kJ/mol), FFPT-FT - scratch |", "|---|---|---|---|"]
    for reaction in METAD_CHANNELS:
        c = metad_comparison[reaction]
        lines.append(f"| {reaction} | " + " | ".join(bench.walker_comparison_cells(c)) + " |")
    bench.write_results("h2combustion", result, "\n".join(lines), command)


if __name__ == "__main__":
    main()
