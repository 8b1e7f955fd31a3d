"""What pre-training leaves behind: how much of a teacher's repulsive walls a model keeps.

Two measures, for any models and any teacher:

* :func:`errors_against_teacher`: on held-out teacher-labelled frames (rattled molecules),
  each model's force error (eV/A) and relative-energy error (eV), in bins of the teacher's
  energy above the molecule's equilibrium (eV), and the fraction of that energy the model
  reproduces (``retained``: 1 the teacher's wall kept, 0 flat, < 0 a hole). Energies are
  compared relative to each one's own equilibrium energy of the same molecule, because a
  fine-tuned model's energy zero is the ab initio one, not the teacher's.
* :func:`contact_scans`: E(r) - E(r_start) of the teacher and each model as one atom pair
  is pushed together along its axis (everything else fixed), with the wall height at the
  shortest distance and its ratio to the teacher's.

:func:`wall_retention` applies both to a set of molecules and their teachers (the
applications choose the molecules, the held-out frames and the pairs).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from ..data import Frames
from ..training.metrics import predict
from .scans import bond_scan_geometries, energies_of

#: default bins of the teacher's energy above equilibrium (eV)
ENERGY_BINS_EV = (0.0, 1.0, 3.0, 10.0, np.inf)


def formula_of(numbers) -> str:
    """The chemical formula (ASE's) of one frame's atomic numbers (padding 0 ignored)."""
    numbers = np.asarray(numbers)
    return Atoms(numbers=numbers[numbers > 0]).get_chemical_formula()


def errors_against_teacher(models: dict, frames: Frames, equilibria: dict,
                           bins=ENERGY_BINS_EV, batch_size: int = 256) -> dict:
    """Errors of ``models`` ({name: Potential}) against the teacher's labels of ``frames``.

    ``equilibria`` maps a formula (``formula_of``) to ``(atoms, teacher_energy_eV)``: the
    molecule's equilibrium geometry in the frames' atom order and the teacher's energy
    there. Frames of a formula without an equilibrium, and single atoms, are left out.
    Returns ``{"bins_eV": [...], "frames": n, name: [row per bin]}``, a row holding ``n``,
    ``forces_mae`` (eV/A), ``energy_mae`` (eV, relative energies), ``energy_mean_error``
    (eV, model minus teacher: negative where the model is too low) and ``retained`` (the
    median over frames of the model's relative energy over the teacher's)."""
    formulas = np.array([formula_of(z) for z in frames.numbers_per_frame])
    real = frames.numbers_per_frame > 0
    keep = np.array([f in equilibria and r.sum() > 1 for f, r in zip(formulas, real)])
    if not keep.any():
        raise ValueError("no frame of a molecule with a given equilibrium: nothing to compare")
    frames, formulas, real = frames[np.where(keep)[0]], formulas[keep], real[keep]
    e_ref = np.array([equilibria[f][1] for f in formulas])
    rel_teacher = frames.energy - e_ref
    which = np.digitize(rel_teacher, bins[1:-1])   # bin index per frame
    names = sorted(equilibria)
    eq_frames = Frames.from_atoms_list([equilibria[f][0] for f in names])
    out = {"bins_eV": [float(b) for b in bins], "frames": int(len(frames))}
    for name, model in models.items():
        dtype = next(model.parameters()).dtype     # each model in its own precision
        e, f = predict(model, frames, batch_size=batch_size, dtype=dtype)
        e_eq, _ = predict(model, eq_frames, batch_size=batch_size, dtype=dtype, forces=False)
        e_eq = dict(zip(names, e_eq))
        rel_model = e - np.array([e_eq[x] for x in formulas])
        rows = []
        for k in range(len(bins) - 1):
            sel = which == k
            if not sel.any():
                rows.append({"n": 0})
                continue
            df = np.abs(f[sel] - frames.forces[sel])[real[sel]]
            de = rel_model[sel] - rel_teacher[sel]
            ratio = rel_model[sel] / np.where(np.abs(rel_teacher[sel]) > 1e-6,
                                              rel_teacher[sel], np.nan)
            rows.append({"n": int(sel.sum()), "forces_mae": float(df.mean()),
                         "energy_mae": float(np.abs(de).mean()),
                         "energy_mean_error": float(de.mean()),
                         "retained": float(np.nanmedian(ratio)) if np.isfinite(ratio).any()
                         else None})
        out[name] = rows
    return out


def contact_scans(calculators: dict, molecule: Atoms, pairs, distances,
                  reference: str) -> dict:
    """E(r) - E(r_start) (eV) of each calculator ({name: ASE calculator}) with atom ``j`` of
    each pair ``(i, j)`` of ``molecule`` moved along the i->j axis to each of ``distances``
    (A, the first the starting distance, usually the equilibrium, the last the closest).
    ``reference`` names the calculator (the teacher) whose wall the others are compared
    with. Returns ``{"distances_A": [...], "pairs": {"i-j": {name: {"energy_eV": [...],
    "wall_eV": E(r_last) - E(r_first), "wall_ratio": wall / reference wall}}}}``."""
    if reference not in calculators:
        raise ValueError(f"reference {reference!r} is not one of the calculators "
                         f"({', '.join(calculators)})")
    distances = np.asarray(distances, float)
    out = {"distances_A": distances.tolist(), "reference": reference, "pairs": {}}
    for i, j in pairs:
        geometries = bond_scan_geometries(molecule, i, j, distances)
        curves = {name: energies_of(calc, molecule, geometries)
                  for name, calc in calculators.items()}
        curves = {name: e - e[0] for name, e in curves.items()}
        ref_wall = curves[reference][-1]
        key = (f"{molecule[i].symbol}{i}-{molecule[j].symbol}{j}")
        out["pairs"][key] = {
            name: {"energy_eV": e.tolist(), "wall_eV": float(e[-1]),
                   "wall_ratio": float(e[-1] / ref_wall) if abs(ref_wall) > 1e-9 else None}
            for name, e in curves.items()}
    return out


def wall_retention(models: dict, molecules: dict, frames: Frames, pairs: dict | None = None,
                   closest_A: float = 0.5, points: int = 12) -> dict:
    """Both measures for a set of molecules.

    ``models``: ``{name: checkpoint}`` (read once each, evaluated in float64);
    ``molecules``: ``{label: (teacher calculator, equilibrium Atoms)}``; ``frames``:
    held-out teacher-labelled frames of those molecules (rattled, never trained on);
    ``pairs``: ``{label: [(i, j), ...]}``, the atom pairs of each molecule pushed from their
    equilibrium distance to ``closest_A`` in ``points`` steps (default: every pair; pairs
    already closer are skipped). Returns ``{"rattled": errors_against_teacher(...),
    "contact_scans": {"<label> <i-j>": {"distances_A": [...], "teacher": {...}, name:
    {...}}}}``; energies in eV, forces in eV/A, distances in A."""
    from ..calculators import FFPTCalculator
    calcs = {name: FFPTCalculator.from_checkpoints(ckpt, dtype="float64")
             for name, ckpt in models.items()}
    equilibria, scans = {}, {}
    for label, (teacher, ref) in molecules.items():
        atoms = ref.copy()
        atoms.calc = teacher
        equilibria[formula_of(ref.numbers)] = (ref.copy(), atoms.get_potential_energy())
        todo = (pairs or {}).get(label) or [(i, j) for i in range(len(ref))
                                            for j in range(i + 1, len(ref))]
        for i, j in todo:
            r0 = float(ref.get_distance(i, j))
            if r0 <= closest_A:
                continue
            scan = contact_scans({"teacher": teacher, **calcs}, ref, [(i, j)],
                                 np.linspace(r0, closest_A, points), reference="teacher")
            (key, curves), = scan["pairs"].items()
            scans[f"{label} {key}"] = {"distances_A": scan["distances_A"], **curves}
    # the calculators' own (float64) networks: each checkpoint is read once
    loaded = {name: calc.models[0] for name, calc in calcs.items()}
    return {"rattled": errors_against_teacher(loaded, frames, equilibria),
            "contact_scans": scans}
