"""ASE calculator backed by an OpenMM ``System`` (AMBER prmtop or serialized XML).

Used for the GAFF2 aspirin teacher: the prmtop written by ``ffpt-ase parametrize gaff2``
holds bonds, angles, torsions and impropers plus the intramolecular non-bonded terms as
GAFF defines them (Lennard-Jones and Coulomb between atoms more than three bonds apart,
1-4 pairs scaled by 1/2 (LJ) and 1/1.2 (Coulomb)). The system is evaluated in vacuum
without cutoff and without constraints. OpenMM works in nm and kJ/mol; this module
converts to Angstrom and eV at the boundary.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
from ase import Atoms, units

from .base import BatchForceField

_NM = 10.0
_KJMOL = units.kJ / units.mol

#: GAFF2 aspirin files shipped with the package (made by ``ffpt-ase parametrize gaff2 aspirin``)
ASPIRIN_PRMTOP = "aspirin_gaff2.prmtop"


def shipped_file(name: str) -> Path:
    """Path of a file in ``ffpt_ase/forcefields/params``."""
    return Path(str(resources.files("ffpt_ase.forcefields.params").joinpath(name)))


def _load_system(path: Path):
    import openmm
    import openmm.app as app

    suffix = path.suffix.lower()
    if suffix in (".prmtop", ".parm7", ".top"):
        prmtop = app.AmberPrmtopFile(str(path))
        system = prmtop.createSystem(nonbondedMethod=app.NoCutoff, constraints=None,
                                     rigidWater=False, removeCMMotion=False)
        numbers = np.array([a.element.atomic_number for a in prmtop.topology.atoms()])
        return system, numbers
    if suffix == ".xml":
        system = openmm.XmlSerializer.deserialize(path.read_text())
        return system, None
    raise ValueError(f"unsupported OpenMM system file {path} (use .prmtop or .xml)")


class OpenMMCalculator(BatchForceField):
    """Energies and forces from an OpenMM System (ASE calculator; eV and eV/A).

    Parameters
    ----------
    system_file:
        AMBER ``.prmtop`` (atomic numbers are read from it) or an OpenMM ``.xml`` System
        (then pass ``numbers``).
    platform:
        OpenMM platform name. ``'Reference'`` (float64) is the default: for one small
        molecule per call it is about 15x faster than ``'CPU'``, whose thread pool costs
        ~0.6 ms per call (measured for GAFF2 aspirin: 0.04 vs 0.6 ms per frame).
    threads:
        CPU threads for the CPU platform (default: OpenMM's choice).
    """

    def __init__(self, system_file, numbers=None, platform: str = "Reference", threads=None,
                 **kwargs):
        import openmm

        path = Path(system_file)
        if not path.exists():
            raise FileNotFoundError(f"OpenMM system file not found: {path}")
        system, file_numbers = _load_system(path)
        if file_numbers is None and numbers is None:
            raise ValueError("an XML System carries no elements: pass numbers=")
        if numbers is not None and file_numbers is not None and \
                not np.array_equal(np.asarray(numbers), file_numbers):
            raise ValueError(f"numbers do not match the atoms of {path}")
        super().__init__(numbers=file_numbers if numbers is None else numbers, **kwargs)
        if system.getNumParticles() != len(self.numbers):
            raise ValueError(f"{path} has {system.getNumParticles()} particles, "
                             f"numbers has {len(self.numbers)}")
        props = {"Threads": str(threads)} if (threads and platform == "CPU") else {}
        self.system_file = path
        self._context = openmm.Context(system, openmm.VerletIntegrator(1.0),
                                       openmm.Platform.getPlatformByName(platform), props)

    def _setup(self, atoms: Atoms) -> None:  # numbers are fixed by the system file
        pass

    def _evaluate(self, pos):
        energies = np.empty(len(pos))
        forces = np.empty_like(pos)
        ctx = self._context
        for i, x in enumerate(pos / _NM):
            ctx.setPositions(x)
            state = ctx.getState(getEnergy=True, getForces=True)
            energies[i] = state.getPotentialEnergy()._value  # kJ/mol
            forces[i] = state.getForces(asNumpy=True)._value  # kJ/mol/nm
        return energies * _KJMOL, forces * (_KJMOL / _NM)

    def __getstate__(self):  # an OpenMM Context cannot be pickled
        raise TypeError("OpenMMCalculator cannot be pickled; recreate it from system_file")


def gaff2_aspirin(**kwargs) -> OpenMMCalculator:
    """The shipped GAFF2 aspirin teacher (21 atoms, order as in ``aspirin_gaff2.prmtop``)."""
    return OpenMMCalculator(shipped_file(ASPIRIN_PRMTOP), **kwargs)


def reference_structure(prmtop: str | Path) -> Atoms:
    """Atoms with the coordinates of the ``.inpcrd`` next to a ``.prmtop``."""
    import openmm.app as app
    import openmm.unit as unit

    prmtop = Path(prmtop)
    top = app.AmberPrmtopFile(str(prmtop))
    crd = app.AmberInpcrdFile(str(prmtop.with_suffix(".inpcrd")))
    pos = crd.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    return Atoms(numbers=[a.element.atomic_number for a in top.topology.atoms()], positions=pos)
