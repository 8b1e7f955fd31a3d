"""Why monomer pre-training does not transfer to liquid water, and what does (issue 13,
item 5): the candidate causes measured, not assumed, and two fixes tried at equal training.

Candidates, each with the measurement that tests it (``transfer_diagnostics`` in
``ffpt_ase/applications/water.py``):

a. radial filters never trained beyond intramolecular distances: the force change on a
   monomer when *one* other monomer is put at an O-O distance of 2.6-4.9 A (the monomer
   teacher says 0), and the first layer's filter magnitude at 2.5-5 A against 0.8-1.8 A;
b. the pre-training force scale kept at fine-tuning: fine-tuning with ``refit_scale``;
c. unnormalised sums over ~50 neighbours in the liquid against 2 in a monomer: the force on
   a molecule cut out of a liquid frame with its K nearest molecules, K = 0 ... 16;
and on the liquid frames themselves: the force RMS with all edges and with the edges within
molecules only.

Arms (same architecture, seed and liquid split; wall-time budgets per stage). Round 1, 8 min
of pre-training and 10 min per liquid stage: ``pt_monomer`` (rattled TIP3P monomers, the
paper's data), ``pt_gas`` (the same teacher's rattled monomers as a gas of 32
non-interacting copies in the liquid's cell, ``ffpt_ase.sampling.molecule_copies``),
``scratch``, ``ft_monomer``, ``ft_monomer_refit_scale``, ``ft_gas``. Round 2, 12 min of
pre-training and 15 min per liquid stage: ``pt_mix`` (the monomers and a denser gas of 40
copies, one teacher, one stage), ``scratch_15``, ``ft_mix`` (lr 1e-4, the paper's) and
``ft_mix_lr1e-3``. Test errors on the held-out folder data_3.

    .venv/bin/python benchmarks/water_transfer.py [--stages pt_monomer,scratch,...]

Stages resume and are skipped once done, so two processes can share the work with
``--stages``. Each finished stage's model and records (best.pt, summary.json, config.json,
log.csv) are kept in ``benchmarks/models/water_transfer/<stage>/`` (committed), and the report
is computed from there: ``--stages ""`` recomputes every table (and ``--md-models`` the MD)
from the committed models without retraining.
"""

import json
import shutil
import sys
from pathlib import Path

import bench_common as bench
import numpy as np

from ffpt_ase.applications.systems import sample_system
from ffpt_ase.applications.water import (TEST_FOLDER, TRAIN_FOLDERS, monomer_angle_scan,
                                         transfer_diagnostics)
from ffpt_ase.data import Frames, read_deepmd
from ffpt_ase.model.potential import Potential, load_potential
from ffpt_ase.sampling import molecule_copies
from ffpt_ase.training.metrics import predict

#: stage -> wall-time budget (minutes)
MODELS = Path(__file__).parent / "models" / "water_transfer"
KEPT = ("best.pt", "summary.json", "config.json", "log.csv")

#: stage -> wall-time budget (minutes)
STAGES = {"pt_monomer": 8, "pt_gas": 8, "scratch": 10, "ft_monomer": 10,
          "ft_monomer_refit_scale": 10, "ft_gas": 10,
          "pt_mix": 12, "scratch_15": 15, "ft_mix": 15, "ft_mix_lr1e-3": 15}


def main():
    ap = bench.parser(__doc__, "water_bulk", "water_transfer", features=32, interactions=2)
    ap.add_argument("--n-monomers", type=int, default=50000)
    ap.add_argument("--copies", type=int, default=32, help="molecules per gas frame")
    ap.add_argument("--dense-copies", type=int, default=40,
                    help="molecules per frame of round 2's denser gas")
    ap.add_argument("--dense-frames", type=int, default=2000)
    ap.add_argument("--min-distance", type=float, default=2.0,
                    help="closest intermolecular contact in the gas (A)")
    ap.add_argument("--md-models", default="",
                    help="comma-separated finished stages to run 300 K NVT MD with")
    ap.add_argument("--md-ps", type=float, default=2.0, help="ps per trajectory")
    ap.add_argument("--md-trajectories", type=int, default=4)
    ap.add_argument("--stages", default="all",
                    help="comma-separated stages to run (all: every one); the report covers "
                         "every finished stage")
    args = ap.parse_args()
    command = bench.announce()
    data = Path(args.data)
    if not all((data / f / "type.raw").exists() for f in TRAIN_FOLDERS + (TEST_FOLDER,)):
        sys.exit(f"bulk-water data not found in {data}; pass --data")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    test = read_deepmd(data / TEST_FOLDER)
    cell = test.cell[0]
    wanted = [s for s in args.stages.split(",") if s]
    if args.stages == "all":
        wanted = list(STAGES)
    md_models = [m for m in args.md_models.split(",") if m]
    unknown = sorted(set(wanted + md_models) - set(STAGES))
    if unknown:
        sys.exit(f"unknown stages {unknown}; choose from {', '.join(STAGES)}")
    liquid_file = work / "liquid_train.npz"
    mono_file, gas_file = work / "monomers.npz", work / "gas.npz"
    mix_file = work / "monomers_and_dense_gas.npz"
    n_val = None
    if wanted:   # the frames are made only for training (the report needs none)
        if not liquid_file.exists():
            ft = Frames.concatenate([read_deepmd(data / f) for f in TRAIN_FOLDERS])
            ft.metadata = {"source": [str(data / f) for f in TRAIN_FOLDERS],
                           "format": "deepmd-raw"}
            ft.save(liquid_file)
        n_val = max(1, len(Frames.load(liquid_file)) // 10)
        if not mono_file.exists():
            sample_system("water", args.n_monomers, seed=0, show_progress=False).save(mono_file)
        if not gas_file.exists():
            monomers = sample_system("water", args.n_monomers, seed=1, show_progress=False)
            molecule_copies(monomers, args.copies, cell, args.min_distance,
                            seed=0).save(gas_file)
        if not mix_file.exists():
            more = sample_system("water", args.dense_copies * args.dense_frames, seed=2,
                                 show_progress=False)
            dense = molecule_copies(more, args.dense_copies, cell, args.min_distance,
                                    seed=1)
            mono = Frames.load(mono_file)
            # one periodicity per set: each monomer alone in the liquid's cell (its images are
            # 12.4 A away, beyond the cutoff: still an isolated molecule)
            mono.cell[:] = cell
            mono.pbc = np.ones(3, bool)
            Frames.concatenate([mono, dense]).save(mix_file)

    arch = {"features": args.features, "interactions": args.interactions}
    common = {"threads": args.threads, "seed": 0}
    liquid = {"data": str(liquid_file), "n_val": n_val, "batch_size": 4, **common}
    plan = {
        "pt_monomer": dict(stage="pretrain", data=str(mono_file), batch_size=32, **arch,
                           **common),
        "pt_gas": dict(stage="pretrain", data=str(gas_file), batch_size=2, **arch, **common),
        "scratch": dict(stage="scratch", **arch, **liquid),
        "ft_monomer": dict(stage="finetune", init=str(work / "pt_monomer" / "best.pt"),
                           **liquid),
        "ft_monomer_refit_scale": dict(stage="finetune", refit_scale=True,
                                       init=str(work / "pt_monomer" / "best.pt"), **liquid),
        "ft_gas": dict(stage="finetune", init=str(work / "pt_gas" / "best.pt"), **liquid),
        "pt_mix": dict(stage="pretrain", data=str(mix_file), batch_size=16, **arch, **common),
        "scratch_15": dict(stage="scratch", **arch, **liquid),
        "ft_mix": dict(stage="finetune", init=str(work / "pt_mix" / "best.pt"), **liquid),
        "ft_mix_lr1e-3": dict(stage="finetune", init=str(work / "pt_mix" / "best.pt"),
                              lr=1e-3, **liquid),
    }
    summaries = {}
    for name in STAGES:
        if name not in wanted:
            continue
        if "init" in plan[name] and not Path(plan[name]["init"]).exists():
            sys.exit(f"{name} needs {plan[name]['init']}: run its pre-training stage first")
        summaries[name] = bench.stage(name, work, STAGES[name], **plan[name])
    for name in STAGES:   # keep what the report needs
        if (work / name / "summary.json").exists():
            (MODELS / name).mkdir(parents=True, exist_ok=True)
            for f in KEPT:
                shutil.copyfile(work / name / f, MODELS / name / f)
    done = [s for s in STAGES if (MODELS / s / "summary.json").exists()]
    if not done:
        print("no stage has finished yet: nothing to report")
        return

    import torch
    torch.manual_seed(0)
    untrained = Potential([1, 8], args.features, args.interactions)
    report = {"command": command, "model": bench.model_record(args),
              "budgets_minutes": {s: STAGES[s] for s in done},
              "gas": {"copies": args.copies, "min_distance_A": args.min_distance,
                      "cell_A": cell.tolist()},
              "diagnostics": {"untrained": transfer_diagnostics(untrained, test)},
              "models": {}}
    for name in done:
        summary = json.loads((MODELS / name / "summary.json").read_text())
        model = load_potential(MODELS / name / "best.pt")
        report["diagnostics"][name] = transfer_diagnostics(model, test)
        report["models"][name] = {
            **bench.training_record(summary),
            **bench.test_errors(MODELS / name / "best.pt", test, f"water data_3, {name}",
                                f"water_transfer_{name}", batch_size=8),
            "start_check": json.loads((MODELS / name / "config.json").read_text())
            ["normalization"].get("start_check"),
        }
    # what pre-training leaves behind (issue 13, item 7): the teacher's rattled monomers
    # (held out: another seed) and the bend to a linear molecule
    held_out = sample_system("water", 2000, seed=7, show_progress=False)
    theta0, curves = monomer_angle_scan(
        {name: MODELS / name / "best.pt" for name in done}, [104.52, 150.0, 180.0])
    report["teacher_left"] = {"tip3p_bend_180_eV": float(curves["flexible TIP3P"][-1])}
    for name in done:
        model = load_potential(MODELS / name / "best.pt", dtype=torch.float64)
        e, f = predict(model, held_out, batch_size=256, dtype=torch.float64)
        de = e - held_out.energy
        report["teacher_left"][name] = {
            "rattled_monomer_force_mae_eV_per_A": float(np.mean(np.abs(f - held_out.forces))),
            "rattled_monomer_energy_mae_eV_offset_removed": float(np.mean(np.abs(
                de - de.mean()))),
            "bend_150_eV": float(curves[name][1]), "bend_180_eV": float(curves[name][2])}
    if md_models:
        report["md"] = stability(work, test, md_models, args)
    out = bench.RESULTS / "water_transfer.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    (bench.RESULTS / "water_transfer.md").write_text(markdown(report))
    plot_filters(report, bench.RESULTS / "water_transfer_filters.png")
    print(markdown(report))
    print(f"wrote {out}")


def stability(work, test, names, args) -> dict:
    """300 K Langevin (0.5 fs, 2/ps) from the first held-out frame, the ensemble engine:
    survival, and the O-O g(r) and self-diffusion of the runs that last (first 0.5 ps left
    out), with standard errors over trajectories."""
    from ffpt_ase.analysis.plots import plot_survival
    from ffpt_ase.applications.water import liquid_properties
    from ffpt_ase.simulate.stability import StabilityConfig, run_stability, survival_curve
    start = work / "md_start.extxyz"
    test.to_atoms(0).write(start)
    out, curves = {}, {}
    for name in names:
        if not (MODELS / name / "best.pt").exists():
            sys.exit(f"--md-models: stage {name} has not finished")
        folder = work / f"md_{name}"
        s = run_stability(StabilityConfig(
            system=str(start), model=str(MODELS / name / "best.pt"),
            trajectories=args.md_trajectories, time_ps=args.md_ps, temperature_K=300.0,
            timestep_fs=0.5, friction_per_ps=2.0, seed=0, output=str(folder),
            save_interval=10, threads=args.threads))
        lq = liquid_properties(folder, s, 0.5, 5.0)
        out[name] = {**bench.stability_record(s), "liquid": None if lq is None else {
            k: lq[k] for k in ("n_trajectories", "first_peak_r_A", "first_peak_height",
                               "first_peak_height_sem", "D_A2_per_ps_mean",
                               "D_A2_per_ps_sem", "D_A2_per_ps_each")}}
        curves[name] = survival_curve(s["trajectories"], args.md_ps)
        print(f"MD {name}: {s['n_failed']}/{s['n_trajectories']} failed", flush=True)
    plot_survival(curves, bench.RESULTS / "water_transfer_survival.png",
                  title="bulk water, 300 K Langevin")
    return out


def markdown(report) -> str:
    d = report["diagnostics"]
    rows = ["| model | liquid force RMS, all edges (eV/A) | intramolecular edges only | "
            "reference | one neighbour at 3.0 A: max force change (eV/A) | at 4.5 A | "
            "central molecule, 1 / 17 molecules (eV/A) | filter 2.5-5 A / 0.8-1.8 A |",
            "|---|---|---|---|---|---|---|---|"]
    for name, x in d.items():
        one = {round(r["O_O_A"], 1): r["max_force_change"] for r in x["one_neighbour"]}
        cl = {r["molecules"]: r["force_rms_central"] for r in x["cluster"]}
        f = x["filters"]
        rows.append(f"| {name} | {x['liquid']['force_rms_all_edges']:.3g} | "
                    f"{x['liquid']['force_rms_intramolecular_edges']:.3g} | "
                    f"{x['liquid']['force_rms_reference']:.3g} | {one.get(3.0, float('nan')):.3g} | "
                    f"{one.get(4.5, float('nan')):.3g} | {cl.get(1, float('nan')):.3g} / "
                    f"{cl.get(17, float('nan')):.3g} | "
                    f"{f['intermolecular_2.5_5A'] / f['intramolecular_0.8_1.8A']:.3g} |")
    rows += ["", "| model | test force MAE (meV/A) | test energy MAE (meV/atom) | epochs | "
             "minutes | start: predicted / reference force RMS |", "|---|---|---|---|---|---|"]
    for name, m in report["models"].items():
        sc = m.get("start_check") or {}
        ratio = f"{sc['ratio']:.3g}" if sc else "-"
        rows.append(f"| {name} | {m['forces_mae_meV_per_A']:.1f} | "
                    f"{m['energy_per_atom_mae_meV']:.2f} | {m['epochs']} | "
                    f"{m['train_minutes']} | {ratio} |")
    left = report["teacher_left"]
    rows += ["", "What of the teacher is left: errors on 2,000 held-out rattled TIP3P monomers "
             "(the teacher's labels; energies with each model's mean offset removed) and the "
             f"bend of a monomer to 180 deg (TIP3P: {left['tip3p_bend_180_eV']:.2f} eV)", "",
             "| model | force MAE (eV/A) | energy MAE (eV) | E(150 deg) - E(104.5) (eV) | "
             "E(180 deg) - E(104.5) (eV) |", "|---|---|---|---|---|"]
    for name in report["models"]:
        x = left[name]
        rows.append(f"| {name} | {x['rattled_monomer_force_mae_eV_per_A']:.3g} | "
                    f"{x['rattled_monomer_energy_mae_eV_offset_removed']:.3g} | "
                    f"{x['bend_150_eV']:.3g} | {x['bend_180_eV']:.3g} |")
    if report.get("md"):
        rows += ["", "| model (300 K, 0.5 fs, 2/ps) | failed / runs | simulated ps (mean) | "
                 "g_OO first peak (height +- sem at r) | D (A^2/ps, mean +- sem) |",
                 "|---|---|---|---|---|"]
        for name, m in report["md"].items():
            lq = m["liquid"]
            g = "-" if not lq else (f"{lq['first_peak_height']:.2f} +- "
                                    f"{lq['first_peak_height_sem']:.2f} at "
                                    f"{lq['first_peak_r_A']:.2f} A")
            d = "-" if not lq else (f"{lq['D_A2_per_ps_mean']:.3f} +- "
                                    f"{lq['D_A2_per_ps_sem']:.3f}")
            rows.append(f"| {name} | {m['n_failed']} / {m['n_trajectories']} | "
                        f"{m['mean_simulated_ps']:.2f} | {g} | {d} |")
    return "\n".join(rows) + f"\n\nReproduce: `{report['command']}`\n"


def plot_filters(report, path):
    from ffpt_ase.analysis.plots import label_and_save, subplots
    fig, ax = subplots()
    for name in ("untrained", "pt_monomer", "pt_mix", "scratch_15", "ft_monomer", "ft_mix"):
        if name not in report["diagnostics"]:
            continue
        f = report["diagnostics"][name]["filters"]
        ax.semilogy(f["r_A"], f["mean_abs_first_layer"], label=name)
    ax.axvspan(0.8, 1.8, color="0.9", label="intramolecular distances")
    label_and_save(fig, ax, path, xlabel="r (A)",
                   ylabel="mean |W_e e(r) c(r)|, first layer (dimensionless)",
                   title="Edge filters along r", legend=True)
    return path


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
