"""Rigid energy scans along one internal coordinate (e.g. the O-H distance of HO2).

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
