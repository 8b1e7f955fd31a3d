"""Flexible TIP3P water-monomer force field (intramolecular bond and angle terms only).

Parameters are the flexible TIP3P of CHARMM (MacKerell et al., J. Phys. Chem. B 102, 3586
(1998); TIP3P geometry from Jorgensen et al., J. Chem. Phys. 79, 926 (1983)):

* O-H bond:   K_b (r - r0)^2,          K_b = 450 kcal/mol/A^2,  r0 = 0.9572 A
* H-O-H:      K_theta (theta - theta0)^2, K_theta = 55 kcal/mol/rad^2, theta0 = 104.52 deg

(CHARMM writes harmonic terms without the factor 1/2, so the harmonic force constants
are 2 K.) For pre-training on *monomers only*, as in the FFPT water experiment, there are
no intermolecular terms; a system of several waters is a set of independent monomers.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms, units

from .bonded import BondedForceField
from .topology import perceive

_KCAL = units.kcal / units.mol  # eV per kcal/mol

KB_CHARMM = 450.0 * _KCAL  # eV/A^2, CHARMM convention (no 1/2)
R0 = 0.9572  # A
KTHETA_CHARMM = 55.0 * _KCAL  # eV/rad^2, CHARMM convention
THETA0 = np.deg2rad(104.52)


def water_monomer() -> Atoms:
    """A TIP3P-geometry water molecule (O, H, H) at its force-field minimum."""
    half = THETA0 / 2
    return Atoms("OH2", positions=[[0, 0, 0], [R0 * np.sin(half), R0 * np.cos(half), 0],
                                   [-R0 * np.sin(half), R0 * np.cos(half), 0]])


class FlexibleTIP3PCalculator(BondedForceField):
    """Flexible TIP3P intramolecular teacher for water monomers (ASE calculator, eV, eV/A).

    Water molecules are found from the first geometry (O-H bonds by covalent radii) and kept;
    anything that is not an H2O fragment raises a ValueError naming it.
    """

    def _setup(self, atoms: Atoms) -> None:
        topo = perceive(atoms.get_atomic_numbers(), atoms.positions)
        bad = [(frag, f) for frag, f in zip(topo.fragments, topo.fragment_formulas())
               if f != "H2O"]
        if bad:
            raise ValueError(f"flexible TIP3P covers water monomers only; found fragments "
                             f"{[f for _, f in bad]} (atoms {[fr for fr, _ in bad]})")
        self.set_terms(
            harmonic_bonds=[(b, (2.0 * KB_CHARMM, R0)) for b in topo.bonds],
            harmonic_angles=[(a, (2.0 * KTHETA_CHARMM, THETA0)) for a in topo.angles])
        self.topology = topo
