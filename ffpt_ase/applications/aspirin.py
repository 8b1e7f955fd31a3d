"""Aspirin (the FFPT paper's MD-stability experiment): the potential-energy cuts of the
paper's Figure 1c, along the acetyl methyl group's C-H stretch and H-C-H angle closing, and
what of the GAFF2 teacher's walls a model keeps, for any set of models. Distances in
Angstrom, angles in degrees, energies in eV.
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


def wall_retention(models: dict, n_frames: int = 3000, seed: int = 1000,
                   closest_A: float = 0.5) -> dict:
    """How much of the GAFF2 teacher's walls each model (name -> checkpoint) keeps (issue
    13, item 7): :func:`~ffpt_ase.analysis.walls.wall_retention` on ``n_frames`` held-out
    rattled aspirin frames (sigma 0.2 A, seed ``seed``; the shipped pre-training uses seed
    0) and contact scans of every bond of the relaxed molecule and of the methyl group's
    three H-H pairs (the contact the paper's H-C-H cut closes). Energies in eV, forces in
    eV/A."""
    from ..analysis.walls import wall_retention as retention
    from ..sampling import relax
    from .systems import get_system, sample_system
    calc, ref, _ = get_system("aspirin")
    mol = relax(ref, calc)
    _, hs = methyl(mol)
    bonds = [tuple(int(k) for k in b) for b in perceive(mol.numbers, mol.positions).bonds]
    pairs = bonds + [(hs[0], hs[1]), (hs[0], hs[2]), (hs[1], hs[2])]
    frames = sample_system("aspirin", n_frames, sigma=0.2, seed=seed, show_progress=False)
    out = retention(models, {"aspirin": (calc, mol)}, frames, pairs={"aspirin": pairs},
                    closest_A=closest_A)
    return {**out, "rattled_seed": seed, "scanned_pairs": "bonds and methyl H-H"}
