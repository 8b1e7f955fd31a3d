"""Training losses (energies in eV, forces in eV/A).

Energy/force loss (the FFPT paper's weights by default):

    L = w_E * mean_frames rho(E_pred - E_ref) + w_F * mean_components rho(F_pred - F_ref)
        [+ w_S * mean_components rho(sigma_pred - sigma_ref)]

with w_E = 1 and w_F = 20; E is the total energy of a frame; the stress term (sigma in
eV/A^3, all nine components) only with w_S > 0 (default 0, as in the paper). rho is the square (``mse``,
the paper's) or the Huber function (``huber``: x^2/2 for |x| <= delta, delta (|x| - delta/2)
above, torch's ``huber_loss``; delta in eV for energies and eV/A for force components), which
lets frames with large errors pull linearly instead of quadratically.

Temporal-pair auxiliary loss (the FRAMES idea), for time-ordered trajectories only. For each
pair of consecutive frames (t, t+1) of one trajectory, with displacement dx = x_{t+1} - x_t,

    dE_pred = E_pred(t+1) - E_pred(t)
    dE_ref  = E_ref(t+1)  - E_ref(t)
    W_ref   = -1/2 (F_ref(t) + F_ref(t+1)) . dx      (trapezoid-rule work of the reference forces)

    L_pair = 1/2 [ mean (dE_pred - dE_ref)^2 + mean (dE_pred - W_ref)^2 ]

The first term fits energy *differences* along the trajectory (insensitive to a constant
offset of the reference energies); the second ties the predicted energy change to the work
of the reference forces along the actual MD step, i.e. to the force field along the path the
dynamics took (W_ref equals dE_ref up to O(|dx|^3) for an exact PES, so on clean data the two
targets agree, and on noisy energies the force-derived target regularizes). The total loss is
L + w_pair * L_pair. When the term is disabled no pairs are formed and nothing is computed.
"""

from __future__ import annotations

import torch

from .config import LOSSES


def error_term(pred, ref, kind: str = "mse", delta: float = 0.01, count=None):
    """sum rho(pred - ref) / count (tensors or numpy arrays); ``count`` defaults to the
    number of elements, which makes it the mean of the module docstring. (A share of a
    distributed batch divides by the whole batch's count.)"""
    pred = torch.as_tensor(pred)
    ref = torch.as_tensor(ref, dtype=pred.dtype)
    if kind == "huber":
        total = torch.nn.functional.huber_loss(pred, ref, delta=delta, reduction="sum")
    elif kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r} (one of {LOSSES})")
    else:
        total = torch.sum((pred - ref) ** 2)
    return total / (pred.numel() if count is None else count)


def energy_force_loss(pred: dict, batch, w_energy: float = 1.0, w_forces: float = 20.0,
                      kind: str = "mse", delta: float = 0.01, counts: dict | None = None,
                      w_stress: float = 0.0):
    """Weighted error of total energies, force components and (``w_stress`` > 0) stress
    components (``kind``: mse or huber); returns (loss, parts dict). ``counts``
    (``{"frames": n, "components": n}``) are the divisors when ``batch`` is one share of a
    larger batch (default: its own)."""
    counts = counts or {}
    parts = {}
    loss = pred["energy"].new_zeros(())
    if w_energy and batch.energy is not None:
        parts[f"energy_{kind}"] = error_term(pred["energy"], batch.energy, kind, delta,
                                             counts.get("frames"))
        loss = loss + w_energy * parts[f"energy_{kind}"]
    if w_forces and batch.forces is not None:
        parts[f"forces_{kind}"] = error_term(pred["forces"], batch.forces, kind, delta,
                                             counts.get("components"))
        loss = loss + w_forces * parts[f"forces_{kind}"]
    if w_stress and batch.stress is not None:
        frames = counts.get("frames")
        parts[f"stress_{kind}"] = error_term(pred["stress"], batch.stress, kind, delta,
                                             None if frames is None else 9 * frames)
        loss = loss + w_stress * parts[f"stress_{kind}"]
    return loss, parts


def temporal_pair_loss(pred: dict, batch, pairs: torch.Tensor, n_pairs: int | None = None):
    """L_pair of the module docstring. ``pairs`` (P, 2) holds graph indices (t, t+1)
    within ``batch``; the means divide by ``n_pairs`` (default P)."""
    t0, t1 = pairs[:, 0], pairs[:, 1]
    dE_pred = pred["energy"][t1] - pred["energy"][t0]
    dE_ref = batch.energy[t1] - batch.energy[t0]
    # atoms of frame t and t+1 are stored contiguously and in the same order
    n_atoms = torch.bincount(batch.graph, minlength=batch.n_graphs)
    start = torch.cumsum(n_atoms, 0) - n_atoms
    n_pair = n_atoms[t0]
    if not torch.equal(n_pair, n_atoms[t1]):
        raise ValueError("temporal pairs must join frames with the same atoms")
    owner = torch.repeat_interleave(torch.arange(len(t0), device=t0.device), n_pair)
    within = torch.arange(int(n_pair.sum()), device=t0.device) - torch.repeat_interleave(
        torch.cumsum(n_pair, 0) - n_pair, n_pair)
    ia, ib = start[t0][owner] + within, start[t1][owner] + within
    per_atom = ((batch.forces[ia] + batch.forces[ib])
                * (batch.positions[ib] - batch.positions[ia])).sum(-1)
    w_ref = -0.5 * dE_pred.new_zeros(len(t0)).index_add(0, owner, per_atom.to(dE_pred.dtype))
    n = len(t0) if n_pairs is None else n_pairs
    return 0.5 * (torch.sum((dE_pred - dE_ref) ** 2) + torch.sum((dE_pred - w_ref) ** 2)) / n


class TrainingLoss:
    """The training objective: :func:`energy_force_loss` with weights ``w_energy`` and
    ``w_forces`` and error function ``kind`` (``delta`` for Huber), plus ``w_temporal`` *
    :func:`temporal_pair_loss` when pairs are given."""

    def __init__(self, w_energy: float = 1.0, w_forces: float = 20.0, w_temporal: float = 1.0,
                 kind: str = "mse", delta: float = 0.01, w_stress: float = 0.0):
        self.w_energy, self.w_forces, self.w_temporal = w_energy, w_forces, w_temporal
        self.w_stress = w_stress
        if kind not in LOSSES:
            raise ValueError(f"unknown loss {kind!r} (one of {LOSSES})")
        self.kind, self.delta = kind, delta

    def __call__(self, pred: dict, batch, pairs=None, counts: dict | None = None):
        """The loss of ``batch``; with ``counts`` (frames, components, pairs of the whole
        batch) the loss of one share of it, so that the shares' losses add up to the
        whole batch's."""
        loss, _ = energy_force_loss(pred, batch, self.w_energy, self.w_forces, self.kind,
                                    self.delta, counts, self.w_stress)
        if pairs is not None:
            loss = loss + self.w_temporal * temporal_pair_loss(
                pred, batch, pairs, (counts or {}).get("pairs"))
        return loss

    def validation_loss(self, frames, energy_pred, forces_pred, stress_pred=None) -> float:
        """The energy/force(/stress) loss of a frame set (no temporal pairs) from predicted
        energies (frames,), forces (frames, atoms, 3; padding rows ignored) and stresses
        (frames, 3, 3), in float64."""
        loss = 0.0
        if self.w_energy and frames.energy is not None:
            loss += self.w_energy * float(error_term(
                torch.as_tensor(energy_pred, dtype=torch.float64), frames.energy, self.kind,
                self.delta))
        if self.w_forces and frames.forces is not None:
            real = frames.numbers_per_frame > 0
            loss += self.w_forces * float(error_term(
                torch.as_tensor(forces_pred[real], dtype=torch.float64), frames.forces[real],
                self.kind, self.delta))
        if self.w_stress and frames.stress is not None and stress_pred is not None:
            loss += self.w_stress * float(error_term(
                torch.as_tensor(stress_pred, dtype=torch.float64), frames.stress, self.kind,
                self.delta))
        return loss
