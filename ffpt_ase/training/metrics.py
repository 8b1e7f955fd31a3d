"""Error metrics of a potential on a frame set (energies in eV, forces in eV/A)."""

from __future__ import annotations

import numpy as np
import torch

from ..data.graphs import batch_from_frames


def predict(model, frames, batch_size: int = 64, dtype=torch.float32, forces: bool = True,
            stress: bool = False):
    """Predicted energies (frames,) and forces (frames, atoms, 3) (padding rows zero), as
    NumPy arrays; with ``stress`` also stresses (frames, 3, 3) in eV/A^3 as a third array.
    The graphs are built and evaluated on the model's device."""
    if int(batch_size) < 1:
        raise ValueError(f"batch size must be >= 1 frame, got {batch_size}")
    device = next(model.parameters()).device
    model.eval()
    n = len(frames)
    energy = np.empty(n)
    out_f = np.zeros(frames.positions.shape) if forces else None
    out_s = np.zeros((n, 3, 3)) if stress else None
    real = frames.numbers_per_frame > 0
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        batch = batch_from_frames(frames, idx, model.elements, model.cutoff, device=device
                                  ).to(dtype=dtype)
        with torch.set_grad_enabled(forces or stress):
            pred = model(batch, forces=forces, stress=stress)
        energy[idx] = pred["energy"].detach().double().cpu().numpy()
        if forces:
            f = pred["forces"].detach().double().cpu().numpy()
            block = np.zeros((len(idx),) + frames.positions.shape[1:])
            block[real[idx]] = f
            out_f[idx] = block
        if stress:
            out_s[idx] = pred["stress"].detach().double().cpu().numpy()
    return (energy, out_f, out_s) if stress else (energy, out_f)


def error_metrics(frames, energy_pred, forces_pred, stress_pred=None) -> dict:
    """MAE/RMSE of total energy, energy per atom, force components and (with
    ``stress_pred`` and reference stresses) stress components in eV/A^3. Frames without
    reference labels, or predictions that are not finite, are an error (never a silent
    number)."""
    if frames.energy is None and frames.forces is None:
        raise ValueError("the frames have no reference energies or forces to compare with")
    if not np.all(np.isfinite(energy_pred)) or any(
            p is not None and not np.all(np.isfinite(p)) for p in (forces_pred, stress_pred)):
        raise FloatingPointError("the model predicts non-finite energies or forces for "
                                 f"{int((~np.isfinite(energy_pred)).sum())} of {len(frames)} "
                                 "frames")
    out = {"n_frames": int(len(frames))}
    n_atoms = frames.n_atoms
    if frames.energy is not None:
        de = energy_pred - frames.energy
        out.update(energy_mae=float(np.mean(np.abs(de))), energy_rmse=float(np.sqrt(np.mean(de**2))),
                   energy_per_atom_mae=float(np.mean(np.abs(de / n_atoms))),
                   energy_per_atom_rmse=float(np.sqrt(np.mean((de / n_atoms) ** 2))))
    if frames.forces is not None and forces_pred is not None:
        real = frames.numbers_per_frame > 0
        df = (forces_pred - frames.forces)[real]
        out.update(forces_mae=float(np.mean(np.abs(df))), forces_rmse=float(np.sqrt(np.mean(df**2))))
    if frames.stress is not None and stress_pred is not None:
        ds = np.asarray(stress_pred) - frames.stress
        out.update(stress_mae=float(np.mean(np.abs(ds))),
                   stress_rmse=float(np.sqrt(np.mean(ds**2))))
    return out


def _label_text(value) -> str:
    """A per-frame label as text (bytes decoded, NumPy scalars unwrapped)."""
    if isinstance(value, bytes):
        return value.decode()
    return str(value.item() if hasattr(value, "item") else value)


def group_labels(frames, key: str) -> np.ndarray:
    """The per-frame extra ``key`` (for example the combustion data's ``reaction``) as text,
    one label per frame; an error when the frames lack it, or it is not one finite value per
    frame."""
    if key not in (frames.extras or {}):
        have = ", ".join(sorted(frames.extras)) or "none"
        raise ValueError(f"the frames carry no per-frame {key!r} to group by (they have: "
                         f"{have})")
    labels = np.asarray(frames.extras[key])
    if labels.shape != (len(frames),):
        raise ValueError(f"{key!r} is not one value per frame (shape {labels.shape})")
    if labels.dtype.kind == "f" and not np.all(np.isfinite(labels)):
        raise ValueError(f"{key!r} has non-finite values: every frame needs a group")
    return np.array([_label_text(v) for v in labels])


def group_indices(frames, key: str) -> dict:
    """``{label: frame indices}`` of each group of frames sharing a value of the per-frame
    extra ``key`` (:func:`group_labels`), in sorted label order, each group's indices in
    the set's order."""
    text = group_labels(frames, key)
    return {value: np.flatnonzero(text == value) for value in sorted(set(text.tolist()))}


def grouped_errors(frames, energy_pred, forces_pred, key: str) -> dict:
    """:func:`error_metrics` of each group of frames sharing a value of the per-frame
    extra ``key`` (:func:`group_indices`), keyed by that value as text, in sorted order;
    ``n_frames`` counts each group's frames."""
    out = {}
    for value, sel in group_indices(frames, key).items():
        out[value] = error_metrics(frames[sel], energy_pred[sel],
                                   None if forces_pred is None else forces_pred[sel])
    return out


def energy_change_errors(frames, energy_pred) -> dict:
    """Error of the energy change between consecutive frames (t, t + 1)
    (:meth:`Frames.consecutive_pairs`): ``pairs`` and ``energy_change_mae`` (eV). The
    quantity the temporal-pair loss targets; insensitive to a constant energy offset."""
    if frames.energy is None:
        raise ValueError("energy changes need frames with energies")
    ok = frames.consecutive_pairs()
    if not ok.any():
        raise ValueError("no consecutive frames (t, t + 1) in the set")
    de_pred, de_ref = np.diff(energy_pred)[ok], np.diff(frames.energy)[ok]
    return {"pairs": int(ok.sum()), "energy_change_mae": float(np.mean(np.abs(de_pred - de_ref)))}


def _frame_force_sums(frames, forces_pred, power: int) -> tuple:
    """Per-frame sum of ``|F_pred - F_ref| ** power`` over the real atoms' force components
    and the number of those components, as two (frames,) arrays."""
    if frames.forces is None:
        raise ValueError("per-frame force errors need frames with reference forces")
    real = frames.numbers_per_frame > 0
    err = np.abs(np.asarray(forces_pred) - frames.forces) ** power
    total = np.where(real, err.sum(-1), 0.0).sum(1)
    if not np.all(np.isfinite(total)):
        raise FloatingPointError(f"non-finite predicted or reference forces in "
                                 f"{int((~np.isfinite(total)).sum())} of {len(total)} frames")
    return total, 3 * real.sum(1)


def _frame_force_sse(frames, forces_pred) -> tuple:
    """Per-frame sum of squared force errors over the real atoms' components (eV^2/A^2)
    and the number of those components, as two (frames,) arrays."""
    return _frame_force_sums(frames, forces_pred, 2)


def frame_errors(frames, energy_pred, forces_pred) -> dict:
    """Each frame's errors, as (frames,) arrays: ``energy_abs`` |E_pred - E_ref| (eV),
    ``forces_abs_sum`` the sum of |F_pred - F_ref| over the frame's real force components
    (eV/A) and ``force_components`` their number. Summed over frames they give
    :func:`error_metrics`' MAEs exactly (energy: the mean of ``energy_abs``; forces: the sum
    of ``forces_abs_sum`` over that of ``force_components``)."""
    if frames.energy is None:
        raise ValueError("per-frame energy errors need frames with reference energies")
    energy_abs = np.abs(np.asarray(energy_pred, float) - frames.energy)
    if not np.all(np.isfinite(energy_abs)):
        raise FloatingPointError(f"non-finite predicted or reference energies in "
                                 f"{int((~np.isfinite(energy_abs)).sum())} of "
                                 f"{len(energy_abs)} frames")
    forces_abs_sum, components = _frame_force_sums(frames, forces_pred, 1)
    return {"energy_abs": energy_abs, "forces_abs_sum": forces_abs_sum,
            "force_components": components}


def frame_force_rmse(frames, forces_pred) -> np.ndarray:
    """Force RMSE of each frame (frames,) in eV/A, over the components of its real atoms."""
    sse, components = _frame_force_sse(frames, forces_pred)
    return np.sqrt(sse / np.maximum(components, 1))


def force_error_concentration(frames, forces_pred, fraction: float = 0.01) -> float:
    """The share of a set's squared force error carried by its worst ``fraction`` of
    frames (at least one frame), ranked by force RMSE: near ``fraction`` when errors are
    spread evenly, near 1 when a few outliers make the force RMSE."""
    if not 0 < fraction <= 1:
        raise ValueError(f"the fraction of frames must be in (0, 1], got {fraction}")
    sse, _ = _frame_force_sse(frames, forces_pred)
    total = sse.sum()
    if total == 0:
        return 0.0
    k = max(1, int(round(fraction * len(sse))))
    return float(np.sort(sse)[::-1][:k].sum() / total)


#: the fields of every :func:`worst_frames` row (per-frame extras come after them)
_WORST_COLUMNS = ("index", "formula", "force_rmse", "max_force_error", "energy_error",
                  "closest_contact", "share_of_force_sse")


def worst_frames(frames, energy_pred, forces_pred, n: int) -> list:
    """The ``n`` frames with the largest force RMSE, worst first: a few outliers can carry
    a set's force RMSE (and a validation loss built on it) while its MAE improves. Each is
    a dict: ``index`` (in ``frames``), ``formula``, ``force_rmse`` and ``max_force_error``
    (eV/A, the largest component), ``energy_error`` (eV, predicted - reference),
    ``closest_contact`` (A, minimum image for periodic frames), ``share_of_force_sse``
    (the fraction of the set's squared force error that frame carries) and the frame's
    per-frame extras (for example the combustion data's ``reaction``)."""
    n = int(n)
    if n < 0:
        raise ValueError(f"the number of worst frames must be >= 0, got {n}")
    sse, components = _frame_force_sse(frames, forces_pred)
    rmse = np.sqrt(sse / np.maximum(components, 1))
    real = frames.numbers_per_frame > 0
    total = sse.sum()
    rows = []
    for k in np.argsort(-rmse, kind="stable")[:n]:
        atoms = frames.to_atoms(int(k))
        d = atoms.get_all_distances(mic=bool(atoms.pbc.any()))
        d[np.diag_indices(len(atoms))] = np.inf
        diff = np.abs(np.asarray(forces_pred[k]) - frames.forces[k])[real[k]]
        row = {"index": int(k), "formula": atoms.get_chemical_formula(),
               "force_rmse": float(rmse[k]), "max_force_error": float(diff.max()),
               "energy_error": (None if frames.energy is None
                                else float(energy_pred[k] - frames.energy[k])),
               "closest_contact": float(d.min()) if len(atoms) > 1 else None,
               "share_of_force_sse": float(sse[k] / total) if total > 0 else 0.0}
        for key, values in frames.extras.items():
            value = np.asarray(values)[k]
            if value.ndim == 0:   # (an extra never replaces one of the row's own fields)
                row[key if key not in _WORST_COLUMNS else f"extra_{key}"] = (
                    _label_text(value) if value.dtype.kind in "SUO" else value.item())
        rows.append(row)
    return rows


def format_worst_frames(rows) -> str:
    """A plain-text table of :func:`worst_frames` (eV, eV/A, A)."""
    extra = [k for k in (rows[0] if rows else {}) if k not in _WORST_COLUMNS]
    head = ["frame", "formula", "F RMSE (eV/A)", "max |dF| (eV/A)", "dE (eV)",
            "closest (A)", "share of F SSE"] + extra
    table = [head]
    for r in rows:
        table.append([str(r["index"]), r["formula"], f"{r['force_rmse']:.4g}",
                      f"{r['max_force_error']:.4g}",
                      "-" if r["energy_error"] is None else f"{r['energy_error']:+.4g}",
                      "-" if r["closest_contact"] is None else f"{r['closest_contact']:.3f}",
                      f"{100 * r['share_of_force_sse']:.1f} %"] + [str(r[k]) for k in extra])
    widths = [max(len(row[c]) for row in table) for c in range(len(head))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in table)

