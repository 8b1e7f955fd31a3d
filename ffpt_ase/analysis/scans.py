"""Rigid energy scans along one internal coordinate (the O-H distance of HO2, the H-O-H
angle of water).

Scans evaluate all geometries in one batch when the calculator has ``evaluate_batch``
(the classical teachers), otherwise one ASE call per point.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms


def bond_scan_geometries(atoms: Atoms, i: int, j: int, distances) -> np.ndarray:
    """Positions (points, atoms, 3) with atom ``j`` moved along the i->j axis to each
    distance (Angstrom); all other atoms fixed."""
    pos = atoms.positions
    u = pos[j] - pos[i]
    u = u / np.linalg.norm(u)
    out = np.repeat(pos[None], len(distances), axis=0)
    out[:, j] = pos[i] + np.asarray(distances, float)[:, None] * u
    return out


def energies_of(calc, atoms: Atoms, positions: np.ndarray) -> np.ndarray:
    """Energies (eV) of ``atoms`` at each of ``positions`` with ``calc``."""
    if hasattr(calc, "evaluate_batch"):
        if hasattr(calc, "bind"):
            calc.bind(atoms)
        return calc.evaluate_batch(positions)[0]
    work = atoms.copy()
    work.calc = calc
    out = []
    for p in positions:
        work.positions = p
        out.append(work.get_potential_energy())
    return np.array(out)


def bond_scan(calc, atoms: Atoms, i: int, j: int, distances) -> np.ndarray:
    """Energy (eV) along the i-j distance (see :func:`bond_scan_geometries`)."""
    return energies_of(calc, atoms, bond_scan_geometries(atoms, i, j, distances))


def angle_scan_geometries(atoms: Atoms, i: int, j: int, k: int, angles_deg) -> np.ndarray:
    """Positions (points, atoms, 3) with atom ``k`` rotated about atom ``j``, in the i-j-k
    plane and at its original j-k distance, so that the angle i-j-k takes each value
    (degrees, 0 to 180); all other atoms fixed."""
    pos = atoms.positions
    u = pos[i] - pos[j]
    u = u / np.linalg.norm(u)
    v = pos[k] - pos[j]
    r = np.linalg.norm(v)
    w = v - np.dot(v, u) * u                 # in-plane direction perpendicular to j->i
    if np.linalg.norm(w) < 1e-8 * r:         # linear start: any perpendicular will do
        w = np.cross(u, [1.0, 0.0, 0.0])
        if np.linalg.norm(w) < 1e-8:
            w = np.cross(u, [0.0, 1.0, 0.0])
    w = w / np.linalg.norm(w)
    theta = np.radians(np.asarray(angles_deg, float))
    out = np.repeat(pos[None], len(theta), axis=0)
    out[:, k] = pos[j] + r * (np.cos(theta)[:, None] * u + np.sin(theta)[:, None] * w)
    return out


def angle_scan(calc, atoms: Atoms, i: int, j: int, k: int, angles_deg) -> np.ndarray:
    """Energy (eV) along the i-j-k angle (see :func:`angle_scan_geometries`)."""
    return energies_of(calc, atoms, angle_scan_geometries(atoms, i, j, k, angles_deg))
