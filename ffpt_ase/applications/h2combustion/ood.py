"""Frames outside the combustion data set's distribution, labelled at its level of theory
(issue 13, item 6): compressed and stretched bonds and closed angles of the six molecules,
where a model's walls (or holes) decide what metadynamics sees, computed with PySCF at UKS
wB97X-V/cc-pVTZ, the data set's level (Guan et al. 2022), energies relative to free atoms at
the same level, as the data set's are. None of these frames is in the data set.

Energies in eV, forces in eV/A, distances in A, angles in degrees.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...analysis.scans import angle_scan_geometries, bond_scan_geometries
from ...data import Frames
from ..systems import get_system
from .channels import reactant_complex
from .dataset import DATA_LEVEL
from .workflows import ho2_oh_bond

#: the data set's level of theory
#: ground-state spin multiplicities of the molecules (the data set's channels agree)
MULTIPLICITY = {"H2": 1, "O2": 3, "OH": 2, "H2O": 1, "HO2": 2, "H2O2": 1}


def ood_geometries() -> dict:
    """``{species: [(label, Atoms), ...]}``: the out-of-distribution geometries, each made from
    the species' reference geometry by one rigid change (the channel-09 reactant for HO2, in
    the O-H scan's atom order)."""
    out = {}
    ho2 = reactant_complex("09")
    o, h = ho2_oh_bond()
    rs = (0.55, 0.65, 0.75, 1.5, 2.0, 2.5, 3.0)
    out["HO2"] = [(f"O-H {r:g}", _with(ho2, p))
                  for r, p in zip(rs, bond_scan_geometries(ho2, o, h, rs))]
    _, water, _ = get_system("H2O")
    out["H2O"] = [(f"H-O-H {a:g} deg", _with(water, p)) for a, p in
                  zip((45, 65), angle_scan_geometries(water, 1, 0, 2, (45, 65)))]
    out["H2O"].append(("O-H 0.65", _with(water, bond_scan_geometries(water, 0, 1, [0.65])[0])))
    _, o2, _ = get_system("O2")
    out["O2"] = [(f"O-O {r:g}", _with(o2, p)) for r, p in
                 zip((0.95, 1.05), bond_scan_geometries(o2, 0, 1, (0.95, 1.05)))]
    _, hooh, _ = get_system("H2O2")
    out["H2O2"] = [("O-O 1.15", _with(hooh, bond_scan_geometries(hooh, 0, 1, [1.15])[0])),
                   ("O-O-H 60 deg", _with(hooh, angle_scan_geometries(hooh, 0, 1, 3,
                                                                      [60])[0]))]
    _, h2, _ = get_system("H2")
    out["H2"] = [("H-H 0.45", _with(h2, bond_scan_geometries(h2, 0, 1, [0.45])[0]))]
    _, oh, _ = get_system("OH")
    out["OH"] = [("O-H 0.65", _with(oh, bond_scan_geometries(oh, 0, 1, [0.65])[0]))]
    return out


def _with(atoms, positions):
    new = atoms.copy()
    new.calc = None
    new.positions = positions
    return new


def label_ood(folder: Path, xc: str = DATA_LEVEL["xc"], basis: str = DATA_LEVEL["basis"],
              show_progress: bool = True) -> Frames:
    """The out-of-distribution frames labelled with PySCF (``xc``/``basis``, default the
    data set's level), energies relative to free atoms at that level. Each species' labels
    are checkpointed in ``folder`` (``ood_<species>.npz``), so an interrupted run continues;
    frames whose SCF fails are left out. Returns one frame set with ``extras['label']``
    (what was changed) and ``extras['species']``."""
    from ...abinitio import PySCFCalculator, free_atom_energies, label_frames

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    level = f"{xc}_{basis}".replace("*", "s")   # in file names
    atoms_cache = folder / f"free_atoms_{level}.npz"
    if atoms_cache.exists():
        atom_e = {k: float(v) for k, v in np.load(atoms_cache).items()}
    else:
        atom_e = free_atom_energies(["H", "O"], xc=xc, basis=basis)
        np.savez(atoms_cache, **atom_e)
    parts = []
    for species, items in ood_geometries().items():
        calc = PySCFCalculator(xc=xc, basis=basis, multiplicity=MULTIPLICITY[species])
        frames = label_frames([a for _, a in items], calc,
                              checkpoint=folder / f"ood_{species}_{level}.npz",
                              show_progress=show_progress, atom_energies=atom_e,
                              metadata={"kind": "out-of-distribution", "species": species})
        if len(frames) < len(items):
            raise RuntimeError(f"{species}: {len(items) - len(frames)} SCF calculations did not "
                               f"converge; the labels would not match their geometries")
        frames.extras = {"label": np.array([lab for lab, _ in items]),
                         "species": np.array([species] * len(items))}
        parts.append(frames)
    out = Frames.concatenate(parts)
    out.metadata = {"kind": "out-of-distribution", "method": f"{xc}/{basis}", "code": "PySCF",
                    "energy_zero": "free atoms at the same level",
                    "free_atom_energies_eV": atom_e,
                    "species": list(ood_geometries())}
    return out
