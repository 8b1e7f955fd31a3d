"""Workflows of the hydrogen-combustion application that the demo and the benchmark share:
teacher data of the eight species, the channel-09 fine-tuning geometries, reaction energies
side by side, per-channel errors, the channel-09 O-H scan, what is left of the teacher's walls
after fine-tuning, and metadynamics walkers.

Energies in eV unless a name says kJ/mol; distances in Angstrom.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...analysis.scans import bond_scan, bond_scan_geometries
from ...analysis.statistics import standard_error, two_sample_difference
from ...calculators import FFPTCalculator
from ...data import Frames
from ...files import atomic_path
from ...forcefields.qforce import QForceCalculator
from ...forcefields.qforce_fit import SPECIES
from ...sampling import RattleSampler, relax
from ..systems import COMBUSTION_SPECIES, get_system
from .channels import get_channel, reactant_complex, reaction_energy, species_geometry
from .dataset import DATA_LEVEL
from .metad import ChannelMetadConfig, run_channel_metadynamics, unphysical_species
from .report import channel_fes_report


def rattled_species_sets(n_per_species: int, seed: int = 0, sigma: float = 0.2) -> dict:
    """Rattled frames (x + sigma * N(0, 1), A) of H, O, H2, O2, OH, H2O, HO2, H2O2 labelled
    by the Q-Force teacher (the paper's Table 1), by species; species k is rattled with seed
    ``seed + k``, so no two species share their noise."""
    sets = {}
    for k, name in enumerate(COMBUSTION_SPECIES):
        calc, ref, teacher = get_system(name)
        sets[name] = RattleSampler(calc, ref, sigma=sigma, seed=seed + k, teacher_name=teacher,
                                   system_name=name).sample(n_per_species, show_progress=False)
    return sets


def rattled_species_frames(sets: dict) -> Frames:
    """The pre-training data: the species' frame sets of :func:`rattled_species_sets` in one
    frame set, with the provenance their own metadata record."""
    parts = [sets[name] for name in COMBUSTION_SPECIES]
    frames = Frames.concatenate(parts)
    frames.metadata = {"kind": "rattled", "teacher": "qforce", "parameters": "table1",
                       "sigma_angstrom": parts[0].metadata["sigma_angstrom"],
                       "species": list(COMBUSTION_SPECIES),
                       "seeds": [p.metadata["seed"] for p in parts],
                       "per_species": [len(p) for p in parts]}
    return frames


def ho2_oh_bond() -> tuple:
    """``(o, h)``: atom indices of the O-H bond of channel 09's reactant complex (HO2 in the
    channel's atom order), the bond that breaks."""
    (o, h), = get_channel("09").cv1
    return o, h


def teacher_oh_scan(distances) -> np.ndarray:
    """The Q-Force teacher's energy (eV, its zero: free atoms) of HO2 along the O-H distance
    (A), everything else frozen."""
    atoms = reactant_complex("09")
    o, h = ho2_oh_bond()
    calc, _, _ = get_system("HO2")
    return bond_scan(calc, atoms, o, h, distances)


def ab_initio_images(n: int, seed: int = 0):
    """Channel-09 geometries (atom order O, O, H) for the fine-tuning set, in fractions of n:

    * 2/10 HO2 rattled by 0.08 A, half of them the H-shifted isomer (H on the other O);
    * 2/10 HO2 rattled by 0.15 A (stretched and compressed bonds: the high-energy edge of
      the reactant well, which metadynamics reaches);
    * 2/10 along the O-H dissociation to H + O2, 0.8 .. 4.0 A (the decks' wall);
    * 1/10 H around O2 in random directions, 1.8 .. 4.0 A from its centre;
    * 1/10 along the H shift between the two O;
    * the rest along the O-O stretch of HO2 (1.5 .. 2.4 A), towards OH + O, which the
      metadynamics must learn to be high in energy, not a way out.
    """
    rng = np.random.default_rng(seed)
    ref = reactant_complex("09")
    o, h = ho2_oh_bond()                  # the O-H bond that breaks
    other = 1 - o
    shifted = ref.copy()                    # H mirrored onto the other O
    mid = 0.5 * (ref.positions[o] + ref.positions[other])
    axis = ref.positions[other] - ref.positions[o]
    axis /= np.linalg.norm(axis)
    v = ref.positions[h] - mid
    shifted.positions[h] = mid + v - 2 * np.dot(v, axis) * axis
    n_small = n_large = n_path = 2 * n // 10
    n_around = n_shift = n // 10
    n_oo = n - n_small - n_large - n_path - n_around - n_shift
    images = []
    for k in range(n_small):
        a = (ref if k % 2 == 0 else shifted).copy()
        a.positions += rng.normal(scale=0.08, size=a.positions.shape)
        images.append(a)
    for _ in range(n_large):
        a = ref.copy()
        a.positions += rng.normal(scale=0.15, size=a.positions.shape)
        images.append(a)
    u = ref.positions[h] - ref.positions[o]
    u /= np.linalg.norm(u)
    for r in np.linspace(0.8, 4.0, n_path):
        a = ref.copy()
        a.positions[h] = a.positions[o] + r * u
        a.positions += rng.normal(scale=0.03, size=a.positions.shape)
        images.append(a)
    o2 = species_geometry("O2").positions
    for r in rng.uniform(1.8, 4.0, n_around):
        a = ref.copy()
        a.positions[[o, other]] = o2 - o2.mean(0) + rng.normal(scale=0.03, size=(2, 3))
        d = rng.normal(size=3)
        a.positions[h] = r * d / np.linalg.norm(d)
        images.append(a)
    for t in np.linspace(0.0, 1.0, n_shift):
        a = ref.copy()
        a.positions[h] = (1 - t) * ref.positions[h] + t * shifted.positions[h]
        a.positions += rng.normal(scale=0.03, size=a.positions.shape)
        images.append(a)
    for r in np.linspace(1.5, 2.4, n_oo):
        a = ref.copy()
        a.positions[other] = a.positions[o] + r * axis
        a.positions += rng.normal(scale=0.03, size=a.positions.shape)
        images.append(a)
    return images


def reaction_energies_09(model_path, level_calc=None, level_name: str = "") -> dict:
    """HO2 -> H + O2 energy (kJ/mol, isolated species) for the teacher, the ab initio labels'
    level (single points at the Table 1 minima, when ``level_calc(species)`` is given), the
    fine-tuned model (each species relaxed with it) and the data set (wB97X-V/cc-pVTZ)."""
    def single_point(calc, atoms):
        atoms = atoms.copy()
        atoms.calc = calc
        return atoms.get_potential_energy()

    model = FFPTCalculator.from_checkpoints(model_path, dtype="float64")
    rows = {"Q-Force teacher (Table 1)": reaction_energy(
        "09", lambda s: single_point(QForceCalculator(), species_geometry(s)))}
    if level_calc is not None:
        rows[f"fine-tuning labels ({level_name})"] = reaction_energy(
            "09", lambda s: single_point(level_calc(SPECIES[s][0]), species_geometry(s)))
    rows["fine-tuned model"] = reaction_energy(
        "09", lambda s: single_point(model, relax(species_geometry(s), model, fmax=0.01,
                                                  steps=500)))
    rows["data set (wB97X-V/cc-pVTZ)"] = get_channel("09").reaction_energy_kJ_per_mol
    return rows


def test_predictions(checkpoint, test: Frames, batch_size: int = 256,
                     dtype: str = "float64") -> tuple:
    """A checkpoint's (energy (frames,), forces (frames, atoms, 3)) on the test frames, in eV
    and eV/A, evaluated in ``dtype``: what :func:`per_channel_errors` and
    :func:`per_channel_comparison` score."""
    from ...model.potential import load_potential
    from ...runtime import torch_dtype
    from ...training.metrics import predict
    model = load_potential(checkpoint, dtype=torch_dtype(dtype))
    return predict(model, test, batch_size=batch_size, dtype=torch_dtype(dtype))


def _require_channels(test: Frames) -> None:
    if "reaction" not in (test.extras or {}):
        raise ValueError("the test frames carry no 'reaction' labels (read them with "
                         "read_combustion_npz)")


def per_channel_errors(test: Frames, predictions: tuple) -> dict:
    """Energy MAE (meV), force MAE and RMSE (meV/A) of each channel's test frames
    (``test.extras['reaction']`` names the channel of every frame) for a model's
    :func:`test_predictions`."""
    from ...training.metrics import grouped_errors
    _require_channels(test)
    return {r: {"n": m["n_frames"], "energy_mae_meV": 1e3 * m["energy_mae"],
                "forces_mae_meV_per_A": 1e3 * m["forces_mae"],
                "forces_rmse_meV_per_A": 1e3 * m["forces_rmse"]}
            for r, m in grouped_errors(test, *predictions, "reaction").items()}


def per_channel_comparison(test: Frames, predictions_a: tuple, predictions_b: tuple,
                           block: int = 20) -> dict:
    """Is model B more accurate than model A on the test set and on each channel's test
    frames (each model's :func:`test_predictions`)?
    :func:`~ffpt_ase.analysis.error_comparison.compare_errors` (B - A in eV and eV/A,
    bootstrap intervals and sign-flip p-values over blocks of ``block`` consecutive test
    frames, which come from one file each and in its order)."""
    from ...analysis.error_comparison import compare_errors
    _require_channels(test)
    return compare_errors(test, predictions_a, predictions_b, group_key="reaction",
                          block=block)


def oh_scan(models: dict, dft_cache: Path | None = None, with_dft: bool = True,
            level: dict = DATA_LEVEL, show_progress: bool = True) -> dict:
    """Channel 09 (HO2 -> H + O2): energy along the O-H distance (0.4 .. 3 A, O-O fixed) of
    each model (name -> checkpoint), the Q-Force teacher and, with ``with_dft``, PySCF UKS
    single points at ``level`` (``xc``, ``basis``; default the data set's, wB97X-V/cc-pVTZ,
    tens of seconds per point here) from 0.5 to 3 A, each curve relative to its value at the
    reactant's O-H distance r_eq. The single points are kept in ``dft_cache`` (JSON) point by
    point, so an interrupted scan continues; a cache of another level or grid is not used.
    Points whose SCF does not converge are left out. Returns ``{"r": ..., "r_eq": ...,
    "curves": {name: E}, "dft": (r, E) or None, "dft_level": level}`` (A, eV)."""
    atoms = reactant_complex("09")
    o, h = ho2_oh_bond()
    r0 = float(atoms.get_distance(o, h))
    r = np.unique(np.concatenate([np.linspace(0.4, 3.0, 53), [r0]]))
    i0 = int(np.argmin(np.abs(r - r0)))
    curves = {name: bond_scan(FFPTCalculator.from_checkpoints(ckpt, dtype="float64"), atoms,
                              o, h, r) for name, ckpt in models.items()}
    curves["Q-Force teacher"] = teacher_oh_scan(r)
    dft = None
    if with_dft:
        dft = _dft_oh_scan(atoms, o, h, r0, level, dft_cache, show_progress)
    return {"r": r, "r_eq": r0, "curves": {k: v - v[i0] for k, v in curves.items()},
            "dft": dft, "dft_level": dict(level)}


def _dft_oh_scan(atoms, o: int, h: int, r0: float, level: dict, cache, show_progress):
    """``(r, E - E(r_eq))`` of PySCF UKS single points along HO2's O-H bond (see
    :func:`oh_scan`), checkpointed in ``cache``."""
    from ...abinitio import PySCFCalculator
    from ...progress import progress
    rd = np.unique(np.concatenate([np.linspace(0.5, 3.0, 26), [r0]]))
    key = {"level": dict(level), "r_A": rd.round(10).tolist()}
    done = {}
    if cache is not None and Path(cache).exists():
        old = json.loads(Path(cache).read_text())
        if {k: old.get(k) for k in key} == key:
            done = {int(k): v for k, v in old["energy_eV"].items()}
    calc = PySCFCalculator(xc=level["xc"], basis=level["basis"], multiplicity=2)
    todo = [k for k in range(len(rd)) if k not in done]
    bar = progress(total=len(todo), unit="point", disable=not show_progress or not todo,
                   desc=f"O-H scan, UKS {level['xc']}/{level['basis']}")
    for k, p in zip(todo, bond_scan_geometries(atoms, o, h, rd[todo])):
        a = atoms.copy()
        a.positions = p
        a.calc = calc
        try:
            done[k] = float(a.get_potential_energy())
        except RuntimeError:       # SCF not converged: the point is left out
            done[k] = None
        if cache is not None:
            with atomic_path(Path(cache)) as tmp:
                tmp.write_text(json.dumps({**key, "energy_eV": done}))
        bar.update(1)
    bar.close()
    ok = [k for k in range(len(rd)) if done.get(k) is not None]
    i0 = int(np.argmin(np.abs(rd - r0)))
    if i0 not in ok:
        raise RuntimeError(f"the SCF at the reactant's O-H distance ({r0:.3f} A) did not "
                           f"converge: no zero for the scan")
    e = np.array([done[k] for k in ok])
    return rd[ok], e - done[i0]


#: the molecules whose walls are measured, and the atom pairs pushed together in each
#: (indices in the species' reference geometry; bonded and non-bonded contacts)
WALL_SPECIES = ("H2", "O2", "OH", "H2O", "HO2", "H2O2")


def wall_retention(models: dict, n_per_species: int = 500, seed: int = 1000,
                   closest_A: float = 0.5) -> dict:
    """How much of the Q-Force teacher's walls each model keeps (issue 13, item 7):
    :func:`~ffpt_ase.analysis.walls.wall_retention` on held-out rattled frames of the eight
    species, free atoms included (``n_per_species`` each, seeds ``seed..seed+7``, disjoint
    from the pre-training seeds 0..7), and close-contact scans of every atom pair of each
    molecule of :data:`WALL_SPECIES` from its reference distance to ``closest_A``.
    ``models`` maps a name to a checkpoint. Energies in eV, forces in eV/A."""
    from ...analysis.walls import wall_retention as retention
    sets = rattled_species_sets(n_per_species, seed=seed)
    molecules = {name: get_system(name)[:2] for name in WALL_SPECIES}
    out = retention(models, molecules, rattled_species_frames(sets), closest_A=closest_A)
    return {**out, "rattled_seeds": [seed + k for k in range(len(sets))]}


def run_walkers(reaction: str, checkpoint, walkers: int, steps: int, folder: Path,
                seed: int = 0, show_progress: bool = True, **settings) -> dict:
    """``walkers`` independent well-tempered metadynamics walkers of one channel with one
    model, advanced together on the ensemble engine (one batched model call per step; walker
    k's random streams are seeded from ``[seed, k]``), resumable; then each walker's FES
    report and the statistics over walkers.

    A walker whose dynamics turn non-finite leaves the run (its ``failed_at_step``) and is
    counted in ``n_failed``; it contributes its frames up to then. The unphysical fraction is
    given as mean +- standard error over walkers and pooled over all checked frames (a
    walker that failed early has few frames: the pooled fraction weights it by them).
    F(product) - F(reactant) is averaged over the walkers with an estimate (``n_delta_f``
    of them: both basins visited, and in the second half of the run,
    :func:`~ffpt_ase.analysis.fes.basin_delta_f`); those that never reached the product
    give a lower bound each. A model whose start is
    refused (a non-finite energy: :class:`~ffpt_ase.simulate.md.StartRefused`) gives
    ``error`` and no statistics; every other error (a run folder holding other settings, a
    missing PLUMED kernel, a failure during the run) is raised. ``settings``: further
    :class:`ChannelMetadConfig` fields.

    Files: ``folder/walker_KK/`` (COLVAR, HILLS, trajectory, ``fes/``; one walker: in
    ``folder`` itself), ``folder/walkers.json``.
    """
    from ...simulate.md import StartRefused
    folder = Path(folder)
    cfg = ChannelMetadConfig(reaction=reaction, model=str(checkpoint), steps=steps, seed=seed,
                             output=str(folder), walkers=walkers, share_bias=False,
                             **settings)
    try:
        s = run_channel_metadynamics(cfg, show_progress=show_progress)
    except StartRefused as err:   # a result about the model; any other error is raised
        return {"walkers": [], "error": str(err)[:300], "n_failed": None,
                "unphysical_fraction_mean": None, "unphysical_fraction_sem": None,
                "unphysical_fraction_pooled": None, "n_delta_f": 0,
                "delta_f_mean_kJ_per_mol": None, "delta_f_sem_kJ_per_mol": None,
                "delta_f_lower_bounds_kJ_per_mol": []}
    records = []
    events_file = folder / "events.jsonl"
    events = [json.loads(line) for line in events_file.read_text().splitlines()
              if line.strip()] if events_file.exists() else []
    species = unphysical_species(events, walkers)
    for k, (w, out) in enumerate(zip(s["per_walker"], map(Path, s["walker_folders"]))):
        failed = w["failed_at_step"]
        rec = {"walker": k, "seed": [seed, k], "failed_at_step": failed,
               "simulated_ps": (failed if failed is not None else s["steps"])
               * cfg.timestep_fs * 1e-3, **w["unphysical"],
               "unphysical_species": species[k]}
        try:
            rep = channel_fes_report(out, out / "fes", reaction=reaction,
                                     temperature=cfg.temperature_K)
            rec["delta_f_kJ_per_mol"] = rep.get("delta_f_product_minus_reactant_kJ_per_mol")
            rec["delta_f_error_kJ_per_mol"] = rep.get("delta_f_error_kJ_per_mol")
            rec["delta_f_lower_bound_kJ_per_mol"] = rep.get("delta_f_lower_bound_kJ_per_mol")
            rec["colvar_frames"] = rep.get("frames")
            rec["colvar_unphysical_fraction"] = rep.get("unphysical_fraction")
            rec["fes_notes"] = rep.get("notes")
        except (ValueError, IndexError, KeyError, FileNotFoundError) as err:  # too few hills
            rec["fes_error"] = str(err)[:300]
        records.append(rec)
    fr = np.array([r["unphysical_fraction"] for r in records], float)
    df = np.array([r["delta_f_kJ_per_mol"] for r in records
                   if r.get("delta_f_kJ_per_mol") is not None], float)
    bounds = [r["delta_f_lower_bound_kJ_per_mol"] for r in records
              if r.get("delta_f_kJ_per_mol") is None
              and r.get("delta_f_lower_bound_kJ_per_mol") is not None]
    result = {"walkers": records, "steps": s["steps"], "ns_per_day": s["ns_per_day"],
              "n_failed": sum(1 for r in records if r["failed_at_step"] is not None),
              "unphysical_fraction_mean": float(fr.mean()) if len(fr) else None,
              "unphysical_fraction_sem": standard_error(fr),
              # (the drivers pool the walkers' counts: UnphysicalMonitor.merge)
              "unphysical_fraction_pooled": s["unphysical_fraction"],
              "checked_frames": s["checked_frames"],
              "unphysical_species_pooled": _pooled_counts(r["unphysical_species"]
                                                          for r in records),
              "n_delta_f": len(df),
              "delta_f_mean_kJ_per_mol": float(df.mean()) if len(df) else None,
              "delta_f_sem_kJ_per_mol": standard_error(df),
              "delta_f_lower_bounds_kJ_per_mol": bounds}
    with atomic_path(folder / "walkers.json") as tmp:
        tmp.write_text(json.dumps(result, indent=1))
    return result


def _pooled_counts(per_walker) -> dict:
    """Counts summed over walkers, most frequent first."""
    total = {}
    for counts in per_walker:
        for name, n in counts.items():
            total[name] = total.get(name, 0) + n
    return dict(sorted(total.items(), key=lambda kv: (-kv[1], kv[0])))


def compare_walker_sets(a: dict, b: dict, confidence: float = 0.95, n_resamples: int = 9999,
                        seed: int = 0) -> dict:
    """Model B's walkers against model A's on one channel (two :func:`run_walkers`
    results). ``failed``: the failed walkers of each and the two-sided p-value of Fisher's
    exact test that both fail equally often; ``unphysical_fraction``: B - A of the mean
    per-walker unphysical fraction (of the walkers with checked frames), with a bootstrap
    interval and a permutation p-value
    (:func:`~ffpt_ase.analysis.statistics.two_sample_difference`; walkers are independent
    runs); ``delta_f_kJ_per_mol``: the same for F(product) - F(reactant) over the walkers
    with an estimate (a selection: its ``n_a`` and ``n_b`` say how many). An entry
    is None where either model lacks the values (a refused start; fewer than two walkers
    with a Delta F)."""
    from ...analysis.survival import fisher_failures
    stats = {"confidence": confidence, "n_resamples": n_resamples, "seed": seed}
    out = {"failed": None, "unphysical_fraction": None, "delta_f_kJ_per_mol": None}
    if not (a.get("walkers") and b.get("walkers")):
        return out
    na, nb = len(a["walkers"]), len(b["walkers"])
    out["failed"] = {"a": [a["n_failed"], na], "b": [b["n_failed"], nb],
                     "fisher_p": fisher_failures(a["n_failed"], na, b["n_failed"], nb)}

    def values(m, key):   # (a walker that failed before its first check has no fraction)
        return [w[key] for w in m["walkers"] if w.get(key) is not None
                and (key != "unphysical_fraction" or w.get("checked_frames", 1) > 0)]

    for key in ("unphysical_fraction", "delta_f_kJ_per_mol"):
        va, vb = values(a, key), values(b, key)
        if len(va) >= 2 and len(vb) >= 2:
            out[key] = two_sample_difference(va, vb, **stats)
    return out
