"""Aspirin (the FFPT paper's MD-stability experiment): the potential-energy cuts of the
paper's Figure 1c, along the acetyl methyl group's C-H stretch and H-C-H angle closing, for
any set of models. Distances in Angstrom, angles in degrees, energies in eV.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from ..analysis.scans import angle_scan, bond_scan, energies_of
from ..calculators import FFPTCalculator
from ..forcefields.topology import perceive


def methyl(atoms: Atoms) -> tuple:
    """``(C, [H, H, H])``: atom indices of the (first) methyl group, from the perceived
    bonds."""
    topo = perceive(atoms.numbers, atoms.positions)
    neigh = {i: set() for i in range(len(atoms))}
    for i, j in topo.bonds:
        neigh[int(i)].add(int(j))
        neigh[int(j)].add(int(i))
    for c in np.nonzero(atoms.numbers == 6)[0]:
        hs = sorted(j for j in neigh[int(c)] if atoms.numbers[j] == 1)
        if len(hs) == 3:
            return int(c), hs
    raise ValueError("no methyl group found")


def pes_cuts(start: Atoms, models: dict, n_stretch: int = 49, n_angle: int = 40) -> dict:
    """Energy (eV, relative to each model's energy of ``start``) along the methyl C-H1
    distance (r0 - 0.4 .. r0 + 2.0 A) and along the H2-C-H1 angle closing to 30 degrees (H1
    moved, everything else fixed), for each model (name -> checkpoint or calculator)."""
    c, (h1, h2, _) = methyl(start)
    r0 = start.get_distance(c, h1)
    theta0 = start.get_angle(h2, c, h1)
    stretch = np.linspace(r0 - 0.4, r0 + 2.0, n_stretch)
    angles = np.linspace(theta0, 30.0, n_angle)
    curves = {"stretch": {"x": stretch.tolist()}, "angle": {"x": angles.tolist()}}
    for name, model in models.items():
        calc = model if hasattr(model, "get_potential_energy") else \
            FFPTCalculator.from_checkpoints(model, dtype="float64")
        e_ref = energies_of(calc, start, start.positions[None])[0]
        curves["stretch"][name] = (bond_scan(calc, start, c, h1, stretch) - e_ref).tolist()
        curves["angle"][name] = (angle_scan(calc, start, h2, c, h1, angles) - e_ref).tolist()
    return curves
