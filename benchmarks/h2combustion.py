"""Hydrogen combustion: NewtonNet from scratch vs FFPT-FT on the 19-channel benchmark.

Protocol (issue 5, experiment 3), data from ``../shared/data/h2combustion`` (Guan et al.,
Sci. Data 9, 215 (2022); wB97X-V/cc-pVTZ):

1. pretrain: rattled H, O, H2, O2, OH, H2O, HO2, H2O2 (sigma 0.2 A) labelled by the shipped
   Q-Force parameters, lr 1e-4.
2. data: IRC + AIMD + normal-mode files of the 19 channels (``12_*`` for channel 12 with the
   corrected ``12a_irc_{d,q}_corr`` IRCs; the uncorrected ``12_irc``, the duplicate
   ``12a_*_all``/``12b_*_all`` files and the extra ``20``/``21`` AIMD sets are not used).
   A seeded ``--train-fraction`` of every file (default 10 %, the paper's) is the
   training + validation set; a disjoint sample of every file (up to ``--test-per-file``
   frames) is the test set.
3. scratch (lr 1e-3) and finetune (from step 1, lr 1e-4) on the same frames.
4. energy/force errors per channel on the test set.
5. the energy along the O-H distance of channel 09 (HO2 -> H + O2) from 0.4 to 3 A
   (the paper's Figure 4a) for scratch, FFPT, FFPT-FT, the Q-Force teacher and PySCF
   single points (UKS B3LYP/6-31G*, the package's cheap ab initio level).
6. well-tempered metadynamics (the shipped decks) of channels 09 and 01 with scratch and
   FFPT-FT, ``--walkers`` independent seeds each: fraction of frames with unphysical
   species, FES and the convergence of F(product) - F(reactant).

Everything resumes: training from last.pt, each metad walker from its restart state.

    .venv/bin/python benchmarks/h2combustion.py --data ../shared/data/h2combustion

Writes ``benchmarks/results/h2combustion.{json,md}`` and PNGs.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import bench_common as bench
import numpy as np

from ffpt_ase.data import Frames, read_combustion_npz
from ffpt_ase.applications.systems import COMBUSTION_SPECIES, get_system

# defaults of this experiment, shared with temporal_pair_ablation.py (which starts from the
# same pre-trained model and trains it with these settings if it is missing)
MODEL = {"features": 64, "interactions": 3}
PRETRAIN_MINUTES = 15
PRETRAIN_PER_SPECIES = 12500

EXCLUDED = (
    "12_irc",
    "12a_aimd_all",
    "12a_irc_all",
    "12a_nm_all",
    "12b_aimd_all",
    "12b_irc_all",
    "12b_nm_all",
    "20_aimd",
    "21_aimd",
)


def data_files(data: Path, kinds=("irc", "aimd", "nm")) -> list:
    """The npz files of the 19 channels used here (see the module docstring)."""
    files = sorted(
        f
        for f in (data / "npz").glob("*.npz")
        if f.stem not in EXCLUDED and any(f"_{k}" in f.stem for k in kinds)
    )
    if not files:
        sys.exit(f"no hydrogen-combustion npz files in {data / 'npz'}; pass --data")
    return files


def split_file(frames: Frames, fraction: float, n_test: int, seed: int):
    """Seeded disjoint (train+val, test) index sets of one file: ``fraction`` of the frames
    (at least 5) and up to ``n_test`` of the rest."""
    n = len(frames)
    perm = np.random.default_rng(seed).permutation(n)
    k = min(n, max(5, round(fraction * n)))
    return np.sort(perm[:k]), np.sort(perm[k : k + n_test])


def assemble(data: Path, fraction: float, n_test: int, work: Path, seed: int = 0):
    """Training and test sets (saved once in ``work``); returns their paths."""
    train_file, test_file = work / "train.npz", work / "test.npz"
    if train_file.exists() and test_file.exists():
        return train_file, test_file
    tr, te = [], []
    for k, f in enumerate(data_files(data)):
        frames = read_combustion_npz(f)
        frames.time = None  # subsets are not time ordered
        a, b = split_file(frames, fraction, n_test, seed + k)
        tr.append(frames[a])
        te.append(frames[b])
        print(f"  {f.name}: {len(a)} train+val, {len(b)} test of {len(frames)}", flush=True)
    meta = {
        "teacher": "ab initio",
        "method": "wB97X-V/cc-pVTZ (h2combustion data set)",
        "source": str(data),
        "train_fraction": fraction,
    }
    for parts, path in ((tr, train_file), (te, test_file)):
        frames = Frames.concatenate(parts)
        frames.metadata = dict(meta)
        frames.save(path)
    return train_file, test_file


def pretrain_set(work: Path, n_per_species: int) -> Path:
    """Rattled Q-Force frames of the 8 species (saved once)."""
    from ffpt_ase.sampling import RattleSampler

    path = work / "pretrain_qforce.npz"
    if path.exists():
        return path
    sets = []
    for name in COMBUSTION_SPECIES:
        calc, ref, teacher = get_system(name)
        sets.append(
            RattleSampler(
                calc, ref, sigma=0.2, seed=0, teacher_name=teacher, system_name=name
            ).sample(n_per_species, show_progress=False)
        )
    frames = Frames.concatenate(sets)
    frames.metadata = {
        "kind": "rattled",
        "teacher": "qforce",
        "sigma_angstrom": 0.2,
        "species": list(COMBUSTION_SPECIES),
        "seed": 0,
    }
    return frames.save(path)


def per_channel_errors(checkpoint: Path, test: Frames) -> dict:
    """Energy (meV) and force (meV/A) MAE of each channel's test frames."""
    import torch

    from ffpt_ase.model.potential import load_potential
    from ffpt_ase.training.metrics import error_metrics, predict

    model = load_potential(checkpoint, dtype=torch.float32)
    e, f = predict(model, test, batch_size=256)
    rxn = np.asarray(test.extras["reaction"])
    out = {}
    for r in sorted(set(rxn)):
        sel = np.nonzero(rxn == r)[0]
        m = error_metrics(test[sel], e[sel], f[sel])
        out[r] = {
            "n": len(sel),
            "energy_mae_meV": 1e3 * m["energy_mae"],
            "forces_mae_meV_per_A": 1e3 * m["forces_mae"],
        }
    return out


def oh_scan(work: Path, models: dict, with_dft: bool = True):
    """Channel 09 (HO2 -> H + O2): energy along the O1-H1 distance, O-O fixed, relative
    to each curve's value at the reactant's O-H distance (eV)."""
    from ffpt_ase.analysis.scans import bond_scan, bond_scan_geometries
    from ffpt_ase.calculators import FFPTCalculator
    from ffpt_ase.applications.h2combustion.channels import get_channel, reactant_complex

    ch = get_channel("09")
    atoms = reactant_complex("09")
    o, h = ch.cv1[0]
    r0 = float(atoms.get_distance(o, h))
    r = np.unique(np.concatenate([np.linspace(0.4, 3.0, 53), [r0]]))
    i0 = int(np.argmin(np.abs(r - r0)))
    qforce, _, _ = get_system("HO2")
    curves = {}
    for name, ckpt in models.items():
        curves[name] = bond_scan(FFPTCalculator(ckpt, dtype="float64"), atoms, o, h, r)
    # the Q-Force teacher needs its own atom order (HO2 is bound as given)
    curves["Q-Force teacher"] = bond_scan(qforce, atoms, o, h, r)
    if with_dft:
        cache = work / "oh_scan_b3lyp.json"
        rd = np.unique(np.concatenate([np.linspace(0.5, 3.0, 26), [r0]]))
        if cache.exists():
            e = np.array(json.loads(cache.read_text())["energy_eV"])
        else:
            from ffpt_ase.abinitio import PySCFCalculator

            calc = PySCFCalculator(xc="b3lyp", basis="6-31g*", multiplicity=2)
            pos = bond_scan_geometries(atoms, o, h, rd)
            e = []
            for p in pos:
                a = atoms.copy()
                a.positions = p
                a.calc = calc
                e.append(a.get_potential_energy())
            e = np.array(e)
            cache.write_text(json.dumps({"r_A": rd.tolist(), "energy_eV": e.tolist()}))
        j0 = int(np.argmin(np.abs(rd - r0)))
        dft = (rd, e - e[j0])
    else:
        dft = None
    rel = {k: v - v[i0] for k, v in curves.items()}
    return r, rel, dft, r0


def run_walkers(reaction: str, checkpoint: Path, seeds, steps: int, folder: Path) -> dict:
    """Independent well-tempered metad walkers of one channel with one model; each walker's
    FES report; the spread of F(product) - F(reactant) over walkers."""
    from ffpt_ase.analysis.metad_report import fes_report
    from ffpt_ase.simulate.metad import MetadConfig, run_metadynamics

    walkers = []
    for seed in seeds:
        out = folder / f"seed{seed}"
        done_file = out / "walker.json"
        if done_file.exists():
            walkers.append(json.loads(done_file.read_text()))
            continue
        try:
            s = run_metadynamics(
                MetadConfig(
                    reaction=reaction,
                    model=str(checkpoint),
                    steps=steps,
                    seed=seed,
                    output=str(out),
                    threads=1,
                ),
                show_progress=False,
            )
            rec = {
                "seed": seed,
                "steps": s["steps"],
                "simulated_ps": s["simulated_ps"],
                "unphysical_fraction": s["unphysical_fraction"],
                "checked_frames": s["checked_frames"],
                "ns_per_day": s["ns_per_day"],
                "crashed": None,
            }
        except (ValueError, FloatingPointError, RuntimeError) as err:  # MD blew up
            rec = {"seed": seed, "crashed": str(err)[:300]}
        if (out / "HILLS").exists():
            try:
                rep = fes_report(out, out / "fes")
                rec["delta_f_kJ_per_mol"] = rep.get("delta_f_product_minus_reactant_kJ_per_mol")
                rec["delta_f_error_kJ_per_mol"] = rep.get("delta_f_error_kJ_per_mol")
                rec["colvar_frames"] = rep.get("frames")
                rec["colvar_unphysical_fraction"] = rep.get("unphysical_fraction")
                rec["fes_notes"] = rep.get("notes")
            except (ValueError, IndexError, KeyError) as err:  # too few hills or frames
                rec["fes_error"] = str(err)[:300]
        done_file.write_text(json.dumps(rec, indent=1))
        walkers.append(rec)
        print(f"  rxn {reaction} seed {seed}: {rec}", flush=True)
    fr = np.array([w.get("unphysical_fraction", np.nan) for w in walkers], float)
    df = np.array(
        [w.get("delta_f_kJ_per_mol") for w in walkers if w.get("delta_f_kJ_per_mol") is not None],
        float,
    )
    sem = lambda x: float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else None
    return {
        "walkers": walkers,
        "n_crashed": sum(1 for w in walkers if w.get("crashed")),
        "unphysical_fraction_mean": float(np.nanmean(fr)) if np.isfinite(fr).any() else None,
        "unphysical_fraction_sem": sem(fr[np.isfinite(fr)]),
        "delta_f_mean_kJ_per_mol": float(df.mean()) if len(df) else None,
        "delta_f_sem_kJ_per_mol": sem(df),
    }


def metad_figures(work: Path, reaction: str, names, stem: str) -> None:
    """Side-by-side: each model's seed-0 FES and the F(product) - F(reactant) convergence of
    all its walkers."""
    from ffpt_ase.analysis.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        for k, conv_file in enumerate(
            sorted((work / f"metad_{reaction}_{name}").glob("seed*/fes/convergence.json"))
        ):
            conv = json.loads(conv_file.read_text())
            ax.plot(conv["time"], conv["delta_f"], label=conv_file.parts[-3])
        ax.set_xlabel("time [ps]")
        ax.set_ylabel("F(product) - F(reactant) [kJ/mol]")
        ax.set_title(f"rxn {reaction}, {name}")
        ax.legend(fontsize=7)
    save_figure(fig, bench.RESULTS / f"{stem}_convergence.png")
    for name in names:
        src = work / f"metad_{reaction}_{name}" / "seed0" / "fes" / "fes.png"
        if src.exists():
            shutil.copy(src, bench.RESULTS / f"{stem}_fes_{name}.png")


def main():
    ap = bench.parser(
        __doc__,
        "h2combustion",
        "h2combustion",
        **MODEL,
        minutes={"pretrain": PRETRAIN_MINUTES, "scratch": 20, "finetune": 20},
    )
    ap.add_argument("--train-fraction", type=float, default=0.10)
    ap.add_argument("--test-per-file", type=int, default=500)
    ap.add_argument(
        "--n-pretrain", type=int, default=PRETRAIN_PER_SPECIES, help="rattled frames per species"
    )
    ap.add_argument("--walkers", type=int, default=4)
    ap.add_argument("--metad-steps", type=int, default=10000, help="0.2 fs steps per walker")
    ap.add_argument("--no-dft-scan", action="store_true", help="skip the PySCF scan points")
    ap.add_argument("--pretrained", default=None,
                    help="start fine-tuning from this shipped pre-trained model (e.g. "
                         "h2combustion-small) instead of pre-training here")
    args = ap.parse_args()
    command = bench.announce()
    data = Path(args.data)
    if not (data / "npz").is_dir():
        sys.exit(f"hydrogen-combustion data not found in {data} (need npz/); pass --data")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    train_file, test_file = assemble(data, args.train_fraction, args.test_per_file, work)
    pt_file = pretrain_set(work, args.n_pretrain)
    runs = bench.three_stages(work, pt_file, train_file, args, batch_size=32,
                              pretrained=args.pretrained)
    s_pt, s_sc, s_ft = runs["pretrain"], runs["scratch"], runs["finetune"]
    ckpt = {
        "scratch": work / "scratch" / "best.pt",
        "FFPT": work / "pretrain" / "best.pt",
        "FFPT-FT": work / "finetune" / "best.pt",
    }

    test = Frames.load(test_file)
    n_trainval = len(Frames.load(train_file))
    errors, channels = {}, {}
    for name, summary in (("scratch", s_sc), ("FFPT-FT", s_ft)):
        folder = ckpt[name].parent.name
        errors[name] = {
            **bench.test_errors(
                ckpt[name],
                test,
                f"h2combustion test set, {name}",
                f"h2combustion_{folder}",
                batch_size=256,
            ),
            **bench.training_record(summary),
        }
        channels[name] = per_channel_errors(ckpt[name], test)
        bench.copy_learning_curve(work, folder, "h2combustion")
    errors["FFPT"] = bench.test_errors(
        ckpt["FFPT"],
        test,
        "h2combustion test set, FFPT only",
        "h2combustion_pretrain",
        batch_size=256,
    )
    errors["FFPT-FT"]["pretrain"] = {
        **bench.training_record(s_pt),
        "frames": args.n_pretrain * len(COMBUSTION_SPECIES),
    }

    r, scan, dft, r0 = oh_scan(work, ckpt, with_dft=not args.no_dft_scan)
    from ffpt_ase.analysis.plots import label_and_save, pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for name, e in scan.items():
        ax.plot(r, e, label=name)
    if dft is not None:
        ax.plot(*dft, "ko", ms=3, label="UKS B3LYP/6-31G* (PySCF)")
    ax.set_ylim(-6, 12)
    ax.axhline(0.0, color="grey", lw=0.5)
    label_and_save(
        fig,
        ax,
        bench.RESULTS / "h2combustion_oh_scan.png",
        "O-H distance [A]",
        "E - E(r_eq) [eV]",
        "rxn 09, HO2 -> H + O2 (O-O fixed)",
        legend=True,
    )

    metad = {}
    for reaction in ("09", "01"):
        for name in ("scratch", "FFPT-FT"):
            print(
                f"[metad] rxn {reaction}, {name}: {args.walkers} walkers x "
                f"{args.metad_steps} steps",
                flush=True,
            )
            metad[f"{reaction}/{name}"] = run_walkers(
                reaction,
                ckpt[name],
                range(args.walkers),
                args.metad_steps,
                work / f"metad_{reaction}_{name}",
            )
        metad_figures(work, reaction, ("scratch", "FFPT-FT"), f"h2combustion_metad_{reaction}")

    result = {
        "command": command,
        "model": bench.model_record(args),
        "data": {
            "files": [f.name for f in data_files(data)],
            "train_fraction": args.train_fraction,
            "n_train_val": n_trainval,
            "n_test": len(test),
        },
        "errors": errors,
        "per_channel": channels,
        "oh_scan": {
            "r_A": r.tolist(),
            "r_eq_A": r0,
            **{k: v.tolist() for k, v in scan.items()},
            "b3lyp": None if dft is None else [dft[0].tolist(), dft[1].tolist()],
        },
        "metad": metad,
        "metad_settings": {
            "walkers": args.walkers,
            "steps": args.metad_steps,
            "timestep_fs": 0.2,
            "temperature_K": 300.0,
            "friction_per_ps": 20.0,
            "decks": "plumed_inputs/rxnNN.dat",
        },
    }
    lines = [
        (
            "| model | energy MAE (meV) | force MAE (meV/A) | epochs | E(0.5 A) - E(r_eq) rxn 09 "
            "(eV) |"
        ),
        "|---|---|---|---|---|",
    ]
    i05 = int(np.argmin(np.abs(r - 0.5)))
    for name in ("scratch", "FFPT-FT"):
        er = errors[name]
        lines.append(
            f"| {name} | {er['energy_mae_meV']:.1f} | {er['forces_mae_meV_per_A']:.1f} "
            f"| {er['epochs']} | {scan[name][i05]:.2f} |"
        )
    lines.append(
        f"| FFPT (pre-trained only) | {errors['FFPT']['energy_mae_meV']:.1f} | "
        f"{errors['FFPT']['forces_mae_meV_per_A']:.1f} | {s_pt['epochs']} | "
        f"{scan['FFPT'][i05]:.2f} |"
    )
    lines += [
        "",
        "Per channel (test frames; energy MAE meV / force MAE meV/A):",
        "",
        "| channel | n | scratch | FFPT-FT |",
        "|---|---|---|---|",
    ]
    for rxn in channels["scratch"]:
        a, b = channels["scratch"][rxn], channels["FFPT-FT"][rxn]
        lines.append(
            f"| {rxn} | {a['n']} | {a['energy_mae_meV']:.1f} / "
            f"{a['forces_mae_meV_per_A']:.1f} | {b['energy_mae_meV']:.1f} / "
            f"{b['forces_mae_meV_per_A']:.1f} |"
        )
    lines += [
        "",
        (
            f"Metadynamics ({args.walkers} walkers x {args.metad_steps * 0.2e-3:.1f} ps "
            f"per model and channel):"
        ),
        "",
        (
            "| channel | model | crashed | unphysical frames (mean +- sem) | "
            "F(product) - F(reactant) kJ/mol (mean +- sem over walkers) |"
        ),
        "|---|---|---|---|---|",
    ]
    for key, m in metad.items():
        reaction, name = key.split("/")
        lines.append(
            f"| {reaction} | {name} | {m['n_crashed']} / {len(m['walkers'])} | "
            f"{bench.mean_sem(m['unphysical_fraction_mean'], m['unphysical_fraction_sem'])} | "
            f"{bench.mean_sem(m['delta_f_mean_kJ_per_mol'], m['delta_f_sem_kJ_per_mol'])} |"
        )
    bench.write_results("h2combustion", result, "\n".join(lines), command)


if __name__ == "__main__":
    main()
