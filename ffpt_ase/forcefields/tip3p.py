"""Flexible TIP3P water: the monomer force field (intramolecular bond and angle terms only)
and, for liquids and clusters, the full model with its intermolecular terms.

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
from ase.calculators.calculator import Calculator, all_changes

from .bonded import BondedForceField
from .openmm_ff import _KJMOL, _NM
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


# ----------------------------------------------------------------- liquid (intermolecular)
#: CHARMM TIP3P non-bonded parameters (the same source as the flexible terms above):
#: charges (e), Lennard-Jones epsilon (kcal/mol) and Rmin/2 (A) of O and H
CHARGE = {8: -0.834, 1: 0.417}
LJ_EPSILON = {8: 0.1521, 1: 0.046}
LJ_RMIN_HALF = {8: 1.7682, 1: 0.2245}


def water_molecules_of(atoms: Atoms) -> list:
    """``[(o, h1, h2), ...]``: consecutive O, H, H triplets when the atoms come in that order
    (as MD engines write water), otherwise every H assigned to its nearest O (minimum image
    in periodic cells); a ValueError unless the atoms are whole H2O molecules."""
    from ase.geometry import get_distances

    z = atoms.get_atomic_numbers()
    o, h = np.flatnonzero(z == 8), np.flatnonzero(z == 1)
    if len(o) + len(h) != len(z) or len(h) != 2 * len(o) or len(o) == 0:
        raise ValueError(f"TIP3P water needs whole H2O molecules, got "
                         f"{atoms.get_chemical_formula()}")
    if np.array_equal(z, np.tile([8, 1, 1], len(o))):
        return [(3 * k, 3 * k + 1, 3 * k + 2) for k in range(len(o))]
    pbc = atoms.pbc.any()
    _, d = get_distances(atoms.positions[h], atoms.positions[o],
                         cell=atoms.cell if pbc else None, pbc=atoms.pbc if pbc else None)
    owner = d.argmin(axis=1)
    counts = np.bincount(owner, minlength=len(o))
    if (counts != 2).any() or d.min(axis=1).max() > 1.6:
        raise ValueError("TIP3P water: the H atoms do not form H2O molecules with the O atoms "
                         "(each O needs two H within 1.6 A)")
    return [(int(o[k]), *map(int, h[owner == k])) for k in range(len(o))]


class TIP3PLiquidCalculator(Calculator):
    """Flexible TIP3P with its intermolecular terms, for any number of water molecules (ASE
    calculator; eV, eV/A): the monomer terms above plus Coulomb (charges O -0.834 e, H
    +0.417 e) and Lennard-Jones (CHARMM's O and H parameters, Lorentz-Berthelot mixing)
    between atoms of different molecules; a molecule's own atom pairs are excluded.

    OpenMM evaluates it (a validated non-bonded implementation; units converted at the
    boundary): periodic cells (all three directions) with particle-mesh Ewald (relative
    error ``ewald_tolerance``) and a real-space cutoff of ``cutoff`` A, at most just under
    half the cell's smallest width, no long-range dispersion correction; clusters without
    a cell with no cutoff. The molecules are ``molecules`` (``[(o, h1, h2), ...]``) when
    given, otherwise found once from the first geometry (:func:`water_molecules_of`) and
    kept for later geometries of the same atoms, as an MD engine keeps its topology.
    """

    implemented_properties = ["energy", "forces"]
    default_parameters = {"cutoff": 9.0, "ewald_tolerance": 1e-5}

    def __init__(self, molecules=None, **kwargs):
        super().__init__(**kwargs)
        self._key = self._ctx = None   # the OpenMM Context of the last system and its key
        self._molecules = None if molecules is None else [tuple(map(int, m))
                                                          for m in molecules]
        self._fixed = molecules is not None
        self._numbers = None

    def _context(self, atoms: Atoms, molecules: list):
        import openmm

        periodic = bool(atoms.pbc.all())
        if atoms.pbc.any() and not periodic:
            raise ValueError("TIP3P liquid: the cell must be periodic in all three directions "
                             "or in none")
        cutoff = self.parameters["cutoff"]
        if periodic:
            cell = atoms.cell.array
            widths = atoms.cell.volume / np.linalg.norm(np.cross(cell[[1, 2, 0]],
                                                                 cell[[2, 0, 1]]), axis=1)
            cutoff = min(cutoff, 0.5 * widths.min() - 1e-3)
            if cutoff < 3.0:
                raise ValueError(f"TIP3P liquid: the cell is too small for a real-space "
                                 f"cutoff of 3 A (smallest width {widths.min():.2f} A)")
        key = (tuple(atoms.get_atomic_numbers()), tuple(map(tuple, molecules)), periodic,
               round(cutoff, 6))
        if key == self._key:
            return self._ctx
        system = openmm.System()
        bonds = openmm.HarmonicBondForce()
        angles = openmm.HarmonicAngleForce()
        nb = openmm.NonbondedForce()
        for z in atoms.get_atomic_numbers():
            system.addParticle(15.999 if z == 8 else 1.008)
            sigma = 2.0 * LJ_RMIN_HALF[z] / 2 ** (1 / 6) / _NM          # nm
            nb.addParticle(CHARGE[z], sigma, LJ_EPSILON[z] * _KCAL / _KJMOL)   # kJ/mol
        k_bond = 2.0 * KB_CHARMM / _KJMOL * _NM ** 2      # kJ/mol/nm^2
        k_angle = 2.0 * KTHETA_CHARMM / _KJMOL            # kJ/mol/rad^2
        for o, h1, h2 in molecules:
            bonds.addBond(o, h1, R0 / _NM, k_bond)
            bonds.addBond(o, h2, R0 / _NM, k_bond)
            angles.addAngle(h1, o, h2, THETA0, k_angle)
            for i, j in ((o, h1), (o, h2), (h1, h2)):
                nb.addException(i, j, 0.0, 1.0, 0.0)
        if periodic:
            nb.setNonbondedMethod(openmm.NonbondedForce.PME)
            nb.setCutoffDistance(cutoff / _NM)
            nb.setEwaldErrorTolerance(self.parameters["ewald_tolerance"])
            nb.setUseDispersionCorrection(False)
            system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*v) for v in
                                                  atoms.cell.array / _NM))
        else:
            nb.setNonbondedMethod(openmm.NonbondedForce.NoCutoff)
        for force in (bonds, angles, nb):
            system.addForce(force)
        # one system at a time: the frames of a set share it
        self._key = key
        self._ctx = openmm.Context(system, openmm.VerletIntegrator(1.0),
                                   openmm.Platform.getPlatformByName("Reference"))
        return self._ctx

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        import openmm

        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        numbers = tuple(atoms.get_atomic_numbers())
        if self._molecules is None or (not self._fixed and numbers != self._numbers):
            self._molecules, self._numbers = water_molecules_of(atoms), numbers
        z = atoms.get_atomic_numbers()
        if sorted(i for m in self._molecules for i in m) != list(range(len(atoms))) or \
                any(len(m) != 3 or tuple(z[list(m)]) != (8, 1, 1) for m in self._molecules):
            raise ValueError("TIP3P liquid: the molecules must be (O, H, H) triplets holding "
                             "every atom once")
        ctx = self._context(atoms, self._molecules)
        if atoms.pbc.all():
            cell = atoms.cell.array
            if not (abs(cell[0, 1]) + abs(cell[0, 2]) + abs(cell[1, 2]) < 1e-9 and
                    cell[0, 0] >= 2 * abs(cell[1, 0]) and cell[0, 0] >= 2 * abs(cell[2, 0])
                    and cell[1, 1] >= 2 * abs(cell[2, 1])):
                raise ValueError("TIP3P liquid: OpenMM needs a reduced lower-triangular cell "
                                 "(a along x, b in the xy plane)")
            ctx.setPeriodicBoxVectors(*(openmm.Vec3(*v) for v in cell / _NM))
        ctx.setPositions(atoms.positions / _NM)
        state = ctx.getState(getEnergy=True, getForces=True)
        self.results = {   # kJ/mol and kJ/mol/nm from OpenMM
            "energy": state.getPotentialEnergy()._value * _KJMOL,
            "forces": state.getForces(asNumpy=True)._value * (_KJMOL / _NM)}
