"""Bulk water (64 molecules, periodic): NewtonNet from scratch vs FFPT-FT.

Protocol (issue 5, experiment 2), data from ``../shared/data/water_bulk`` (DeePMD layout):

1. pretrain: by default the shipped ``pretrained:water``
   (``benchmarks/pretrain_shipped.py water``): rattled water *monomers* (sigma 0.2 A)
   labelled by flexible TIP3P and, since issue 13 (monomers alone do not transfer,
   RESULTS.md 2b), frames of 64 rattled monomers placed at random in the liquid's cell
   labelled by the full flexible TIP3P (``ffpt_ase.applications.water.pretraining_frames``).
   ``--pretrained ''`` pre-trains here on ``--n-pretrain`` monomers and ``--copies-frames``
   liquid frames, lr 1e-4.
2. scratch:  the same architecture on the periodic frames of data_0..data_2, lr 1e-3.
3. finetune: from the pre-trained checkpoint on the same periodic frames, lr 1e-4; and a
   second fine-tuning run at lr 1e-3 (``--extra-finetune-lr``, same stopping rule): a model
   pre-trained on monomers only starts far off on the liquid (see RESULTS.md).
4. test errors on the held-out folder data_3 (never used for training or choices).
5. the monomer energy along the H-O-H angle up to 180 deg (rigid scan from the TIP3P
   minimum) for TIP3P, scratch, FFPT (pre-trained only) and FFPT-FT.
6. NVT stability at 300 K (Langevin 0.5 fs, friction 2/ps) from the first held-out frame,
   K trajectories per model; O-O radial distribution function and the O self-diffusion
   coefficient (mean +- standard error over the stable trajectories, after discarding an
   equilibration time).

Every stage resumes (training from last.pt, MD per finished trajectory) and is trained out
(``bench_common.TRAINED_OUT``); the run folders are kept in ``benchmarks/models/water/runs/``
and the finished models at ``benchmarks/models/water/{scratch,finetune}.pt``.
``--only scratch`` / ``--only finetune`` train one arm per process. Scaled for a 2-core CPU:
a small model (``--features``/``--interactions``); the JSON records what each stage got.

    .venv/bin/python benchmarks/water_bulk.py --data ../shared/data/water_bulk

Writes ``benchmarks/results/water_bulk.{json,md}`` and PNGs (parity, learning curves,
angle scan, survival, O-O RDF with the ab initio frames as reference, MSD when a run is stable).
"""

import sys
from pathlib import Path

import bench_common as bench
import numpy as np

from ffpt_ase.analysis.liquid import rdf
from ffpt_ase.analysis.plots import label_and_save, plot_energy_scan, plot_survival, subplots
from ffpt_ase.applications.water import (TEST_FOLDER, TRAIN_FOLDERS, liquid_properties,
                                         monomer_angle_scan, pretraining_frames)
from ffpt_ase.data import Frames, read_deepmd
from ffpt_ase.analysis.survival import compare_ensembles, from_trajectories
from ffpt_ase.simulate.stability import StabilityConfig, run_stability

EXTRA_FT = "finetune_lr{lr:g}"


def main():
    ap = bench.parser(
        __doc__,
        "water_bulk",
        "water",
        features=32,
        interactions=2,
        minutes={"pretrain": None, "scratch": None, "finetune": None},
    )
    bench.add_arm_options(ap, "water")
    ap.add_argument("--n-pretrain", type=int, default=50000,
                    help="rattled TIP3P monomers (with --pretrained '')")
    ap.add_argument("--copies-frames", type=int, default=2000,
                    help="pre-training frames of 64 interacting TIP3P copies (with "
                         "--pretrained ''; 0: monomers only)")
    ap.add_argument("--trajectories", type=int, default=4)
    ap.add_argument("--time-ps", type=float, default=100.0)
    ap.add_argument("--skip-ps", type=float, default=0.5, help="equilibration not analysed")
    ap.add_argument("--save-interval", type=int, default=10, help="MD steps between frames")
    ap.add_argument(
        "--extra-finetune-lr",
        type=float,
        default=0.0,
        help="a second fine-tuning run at this learning rate (0: none)",
    )
    args = ap.parse_args()
    bench.check_arm_options(args)
    command = bench.announce()

    data = Path(args.data)
    if not all((data / f / "type.raw").exists() for f in TRAIN_FOLDERS + (TEST_FOLDER,)):
        sys.exit(
            f"bulk-water data not found in {data} (need DeePMD folders "
            f"{', '.join(TRAIN_FOLDERS + (TEST_FOLDER,))}); pass --data"
        )
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    train_file = work / "train_bulk.npz"
    if not train_file.exists():
        ft = Frames.concatenate([read_deepmd(data / f) for f in TRAIN_FOLDERS])
        ft.metadata = {
            "source": [str(data / f) for f in TRAIN_FOLDERS],
            "format": "deepmd-raw",
            "teacher": "ab initio (DeePMD-kit example water data)",
        }
        ft.save(train_file)
    test = read_deepmd(data / TEST_FOLDER)
    n_frames = len(Frames.load(train_file))
    n_val = max(1, n_frames // 10)
    # (named after the package's pretraining_frames, which replaced an earlier set of the
    # same sizes with other seeds: a cache of that one is not reused)
    pt_file = work / (f"water_pretraining_frames_{args.n_pretrain}_monomers_"
                      f"{args.copies_frames}_liquid_seed0.npz")
    if not args.pretrained and not pt_file.exists():
        frames, _ = pretraining_frames(args.n_pretrain, args.copies_frames, seed=0,
                                       cell=Frames.load(train_file).cell[0])
        frames.save(pt_file)
    bench.restore_runs(work, "water", ("pretrain", "scratch", "finetune"), only=args.only)
    runs = bench.three_stages(
        work,
        pt_file,
        train_file,
        args,
        batch_size=4,
        pretrain_batch_size=32,
        split={"n_val": n_val},
        pretrained=args.pretrained or None,
        stop_rule=bench.TRAINED_OUT,
        only=args.only,
    )
    status = bench.keep_runs(work, "water", ("pretrain", "scratch", "finetune"), only=args.only)
    print("[training]", status, flush=True)
    if args.only:
        return
    s_pt = runs["pretrain"]
    trained = {"scratch": ("scratch", runs["scratch"]), "FFPT-FT": ("finetune", runs["finetune"])}
    if args.extra_finetune_lr:
        folder = EXTRA_FT.format(lr=args.extra_finetune_lr)
        trained[f"FFPT-FT, lr {args.extra_finetune_lr:g}"] = (
            folder,
            bench.stage(
                folder,
                work,
                args.minutes_finetune,
                stage="finetune",
                data=str(train_file),
                init=str(work / "pretrain" / "best.pt"),
                lr=args.extra_finetune_lr,
                batch_size=4,
                n_val=n_val,
                threads=args.threads,
                seed=0,
                **bench.TRAINED_OUT,   # the same stopping rule as the other arms
            ),
        )

    errors = {}
    for name, (folder, summary) in trained.items():
        errors[name] = {
            **bench.test_errors(
                bench.final_model(work / folder),
                test,
                f"water, held-out {TEST_FOLDER}, {name}",
                f"water_{folder}",
                batch_size=8,
            ),
            **bench.training_record(summary),
        }
        bench.copy_learning_curve(work, folder, "water")
    errors["FFPT-FT"]["pretrain"] = bench.pretrain_record(
        s_pt, f"{args.n_pretrain} monomers, {args.copies_frames} liquid frames")
    # the pre-trained model alone on the liquid: how far fine-tuning has to go
    errors["FFPT"] = bench.test_errors(
        work / "pretrain" / "best.pt", test, "water, FFPT only", "water_pretrain", batch_size=8
    )

    angles = np.linspace(60.0, 180.0, 121)
    models = {"FFPT": "pretrain", **{name: folder for name, (folder, _) in trained.items()}}
    theta0, scan = monomer_angle_scan(
        {name: bench.stage_model(work, folder) for name, folder in models.items()}, angles)
    plot_energy_scan(
        {k: (angles, v) for k, v in scan.items()},
        bench.RESULTS / "water_angle_scan.png",
        "H-O-H angle [deg]",
        "water monomer, O-H at the TIP3P minimum",
    )

    start_file = work / "stability_start.extxyz"
    test.to_atoms(0).write(start_file)
    save_fs = args.save_interval * 0.5
    stability, liquid, curves = {}, {}, {}
    for name, (folder, _) in trained.items():
        out = work / f"stability_{folder}"
        s = run_stability(
            StabilityConfig(
                system=str(start_file),
                model=str(bench.final_model(work / folder)),
                trajectories=args.trajectories,
                time_ps=args.time_ps,
                temperature_K=300.0,
                timestep_fs=0.5,
                friction_per_ps=2.0,
                seed=0,
                output=str(out),
                save_interval=args.save_interval,
                threads=args.threads,
            )
        )
        stability[name] = bench.stability_record(s)
        curves[name] = from_trajectories(s["trajectories"])
        liquid[name] = liquid_properties(out, s, args.skip_ps, save_fs)
        print(f"{name}: {s['n_failed']}/{s['n_trajectories']} failed", flush=True)
    survival = compare_ensembles(curves)
    plot_survival(survival["curves"], bench.RESULTS / "water_survival.png",
                  title="bulk water, 300 K Langevin (95 % bands)", until_ps=args.time_ps)

    # a rerun with no stable trajectory leaves no stale MSD plot
    (bench.RESULTS / "water_msd.png").unlink(missing_ok=True)
    # the ab initio frames' own g_OO (training and test folders) as the reference curve
    reference_images = Frames.load(train_file).to_atoms_list() + test.to_atoms_list()
    r_ref, g_ref = rdf(reference_images, 8, 8, r_max=6.0, n_bins=120)
    fig, ax = subplots(figsize=(6, 4))
    ax.plot(r_ref, g_ref, "k--", label=f"ab initio frames ({len(reference_images)})")
    for name, lq in liquid.items():
        if lq:
            r, g = np.array(lq["r_A"]), np.array(lq["g_OO_mean"])
            ax.plot(r, g, label=f"{name} ({lq['n_trajectories']} runs)")
            if lq["g_OO_sem"] is not None:   # (one run: no band)
                e = np.array(lq["g_OO_sem"])
                ax.fill_between(r, g - e, g + e, alpha=0.3)
    label_and_save(
        fig,
        ax,
        bench.RESULTS / "water_rdf_oo.png",
        "r(O-O) [A]",
        "g_OO(r)",
        "bulk water, 300 K (models: stable runs only)",
        legend=True,
    )
    if any(liquid.values()):
        fig, ax = subplots(figsize=(6, 4))
        for i, (name, lq) in enumerate(liquid.items()):
            for k, (t, m) in enumerate(lq["msd"] if lq else []):
                ax.plot(
                    t,
                    m,
                    color=f"C{i}",
                    alpha=0.6,
                    label=name if k == 0 else None,
                )
        label_and_save(
            fig,
            ax,
            bench.RESULTS / "water_msd.png",
            "lag [ps]",
            "O mean squared displacement [A^2]",
            "bulk water, 300 K",
            legend=True,
        )

    result = {
        "command": command,
        "model": bench.model_record(args),
        "data": {
            "train_val": list(TRAIN_FOLDERS),
            "n_train": n_frames - n_val,
            "n_val": n_val,
            "test": TEST_FOLDER,
            "n_test": len(test),
        },
        "training_status": status,
        "errors": errors,
        "angle_scan": {
            "theta_min_deg": theta0,
            "angles_deg": angles.tolist(),
            **{k: v.tolist() for k, v in scan.items()},
        },
        "stability": stability,
        "survival_statistics": survival,
        "liquid": {
            k: ({kk: vv for kk, vv in v.items() if kk != "msd"} if v else None)
            for k, v in liquid.items()
        },
        "settings": {
            "temperature_K": 300.0,
            "timestep_fs": 0.5,
            "friction_per_ps": 2.0,
            "trajectories": args.trajectories,
            "time_ps": args.time_ps,
            "skip_ps": args.skip_ps,
            "reference_g_OO": {"r_A": r_ref.tolist(), "g": g_ref.tolist()},
            "saved_every_fs": save_fs,
        },
    }
    i180 = -1
    lines = [
        (
            "| model | force MAE (meV/A) | energy MAE (meV/atom) | epochs | "
            "monomer E(180 deg) - E(104.5 deg) (eV) | failed / runs | g_OO peak (stable runs) "
            "| D (A^2/ps, stable runs) |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in trained:
        er, st, lq = errors[name], stability[name], liquid[name]
        peak = (
            f"{bench.mean_sem(lq['first_peak_height'], lq['first_peak_height_sem'])} at "
            f"{lq['first_peak_r_A']:.2f} A"
            if lq
            else "-"
        )
        dd = bench.mean_sem(lq["D_A2_per_ps_mean"], lq["D_A2_per_ps_sem"]) if lq else "-"
        lines.append(
            f"| {name} | {er['forces_mae_meV_per_A']:.1f} | "
            f"{er['energy_per_atom_mae_meV']:.2f} | {er['epochs']} | "
            f"{scan[name][i180]:.2f} | {st['n_failed']} / {st['n_trajectories']} | "
            f"{peak} | {dd} |"
        )
    lines.append(
        f"| FFPT (pre-trained only) | {errors['FFPT']['forces_mae_meV_per_A']:.1f} | "
        f"{errors['FFPT']['energy_per_atom_mae_meV']:.2f} | "
        f"{errors['FFPT-FT']['pretrain']['epochs']} | "
        f"{scan['FFPT'][i180]:.2f} | | | |"
    )
    lines.append(f"| flexible TIP3P (teacher) | | | | {scan['flexible TIP3P'][i180]:.2f} | | | |")
    bench.write_results("water_bulk", result, "\n".join(lines), command)


if __name__ == "__main__":
    main()
