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
