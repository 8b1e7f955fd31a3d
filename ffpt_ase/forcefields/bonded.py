"""Vectorized bonded energy terms shared by the bonded teachers (Q-Force, flexible TIP3P).

All parameters are held in internal units (Angstrom, eV, rad). A subclass decides which
terms exist in ``_setup`` by calling :meth:`BondedForceField.set_terms`; evaluation over
any number of frames is then a handful of array expressions:

* Morse bond:     D (1 - exp(-a (r - r0)))^2 - D
* harmonic bond:  k/2 (r - r0)^2
* harmonic angle: k/2 (theta - theta0)^2
* cosine torsion: k (1 + cos(n phi - phi0))
"""

from __future__ import annotations

import numpy as np

from .base import BatchForceField
from .geometry import angles, dihedrals, distances, scatter_forces


def _cols(rows, n):
    """Split a list of parameter tuples into ``n`` float arrays (empty arrays if no rows)."""
    if not rows:
        return tuple(np.zeros(0) for _ in range(n))
    return tuple(np.asarray(c, float) for c in zip(*rows))


class BondedForceField(BatchForceField):
    """Batch evaluator of Morse/harmonic bonds, harmonic angles and cosine torsions."""

    def set_terms(self, morse=(), harmonic_bonds=(), harmonic_angles=(), torsions=()):
        """Define the terms. Each argument is a sequence of ``(atom indices, parameters)``:

        morse ``((i, j), (D, k, r0))`` with k the harmonic force constant (eV/A^2);
        harmonic_bonds ``((i, j), (k, r0))``; harmonic_angles ``((i, j, k), (k, theta0))``;
        torsions ``((i, j, k, l), (k, n, phi0))`` (one row per Fourier term).
        """
        def split(rows, m, n):
            idx = np.array([r[0] for r in rows], int).reshape(-1, m)
            return (idx,) + _cols([tuple(r[1]) for r in rows], n)

        self._morse_idx, D, k, self._morse_r0 = split(list(morse), 2, 3)
        self._morse_D = D
        self._morse_a = np.sqrt(k / (2.0 * D)) if len(D) else D
        self._hb_idx, self._hb_k, self._hb_r0 = split(list(harmonic_bonds), 2, 2)
        self._ha_idx, self._ha_k, self._ha_t0 = split(list(harmonic_angles), 3, 2)
        self._tor_idx, self._tor_k, self._tor_n, self._tor_p0 = split(list(torsions), 4, 3)

    def _evaluate(self, pos):
        n_frames, n_atoms = pos.shape[:2]
        energy = np.zeros(n_frames)
        forces = np.zeros_like(pos)
        if len(self._morse_idx):
            r, g = distances(pos, self._morse_idx)
            ex = np.exp(-self._morse_a * (r - self._morse_r0))
            energy += (self._morse_D * ((1.0 - ex) ** 2 - 1.0)).sum(axis=1)
            dE = 2.0 * self._morse_D * self._morse_a * ex * (1.0 - ex)
            forces += scatter_forces(n_atoms, self._morse_idx, dE, g)
        if len(self._hb_idx):
            r, g = distances(pos, self._hb_idx)
            dr = r - self._hb_r0
            energy += 0.5 * (self._hb_k * dr**2).sum(axis=1)
            forces += scatter_forces(n_atoms, self._hb_idx, self._hb_k * dr, g)
        if len(self._ha_idx):
            th, g = angles(pos, self._ha_idx)
            dt = th - self._ha_t0
            energy += 0.5 * (self._ha_k * dt**2).sum(axis=1)
            forces += scatter_forces(n_atoms, self._ha_idx, self._ha_k * dt, g)
        if len(self._tor_idx):
            phi, g = dihedrals(pos, self._tor_idx)
            arg = self._tor_n * phi - self._tor_p0
            energy += (self._tor_k * (1.0 + np.cos(arg))).sum(axis=1)
            dE = -self._tor_k * self._tor_n * np.sin(arg)
            forces += scatter_forces(n_atoms, self._tor_idx, dE, g)
        return energy, forces
