"""Built-in systems: each name gives a classical teacher and a reference geometry.

=================================================  ==========  ==================================
system                                             teacher     reference geometry
=================================================  ==========  ==================================
``H``, ``O``, ``H2``, ``O2``, ``OH``, ``H2O``,     ``qforce``  from the Q-Force parameter file
``HO2``, ``H2O2`` (hydrogen-combustion species)
``water`` (monomer)                                ``tip3p``   TIP3P geometry
``aspirin``                                        ``gaff2``   the shipped GAFF2 ``.inpcrd``
=================================================  ==========  ==================================

A structure file (xyz, pdb, ...) may be given instead of a name together with an explicit
teacher (``qforce`` or ``tip3p``; for GAFF2 first run ``ffpt-ase parametrize gaff2``, then
pass the ``.prmtop`` as the system).
"""

from __future__ import annotations

from pathlib import Path

from ase import Atoms

from ..data.frames import Frames
from ..forcefields.qforce import QForceCalculator, QForceParameters
from ..forcefields.tip3p import FlexibleTIP3PCalculator, water_monomer
from ..sampling import RattleSampler, relax
from ..simulate.stability import load_structure

COMBUSTION_SPECIES = ("H", "O", "H2", "O2", "OH", "H2O", "HO2", "H2O2")
TEACHERS = ("qforce", "tip3p", "gaff2")
DEFAULT_TEACHER = {**{s: "qforce" for s in COMBUSTION_SPECIES}, "water": "tip3p",
                   "aspirin": "gaff2"}

_SINGLE_ATOM = {"H": Atoms("H", positions=[[0, 0, 0]]), "O": Atoms("O", positions=[[0, 0, 0]])}


def make_teacher(name: str, **kwargs):
    """A fresh teacher calculator by name (``qforce``, ``tip3p``, ``gaff2`` for aspirin)."""
    if name == "qforce":
        return QForceCalculator(**kwargs)
    if name == "tip3p":
        return FlexibleTIP3PCalculator(**kwargs)
    if name == "gaff2":
        from ..forcefields.openmm_ff import gaff2_aspirin
        return gaff2_aspirin(**kwargs)
    raise ValueError(f"unknown teacher {name!r}; choose from {TEACHERS}")


def get_system(system: str, teacher: str | None = None, parameters=None):
    """Return ``(teacher_calculator, reference_atoms, teacher_name)`` for a system.

    ``system`` is a built-in name (case-insensitive for the combustion species) or a path
    to a structure file (or an AMBER ``.prmtop`` for an OpenMM teacher). ``parameters`` is
    an optional Q-Force parameter file.
    """
    names = {s.lower(): s for s in DEFAULT_TEACHER}
    key = names.get(system.lower())
    if key is not None:
        teacher = teacher or DEFAULT_TEACHER[key]
        if teacher != DEFAULT_TEACHER[key]:
            raise ValueError(f"system {key} uses the {DEFAULT_TEACHER[key]!r} teacher, "
                             f"not {teacher!r}")
        if teacher == "qforce":
            params = parameters if isinstance(parameters, QForceParameters) \
                else QForceParameters.load(parameters)
            formula = "HO" if key == "OH" else key
            ref = _SINGLE_ATOM[key].copy() if key in _SINGLE_ATOM else params.reference(formula)
            return QForceCalculator(parameters=params), ref, teacher
        if teacher == "tip3p":
            return FlexibleTIP3PCalculator(), water_monomer(), teacher
        from ..forcefields.openmm_ff import ASPIRIN_PRMTOP, reference_structure, shipped_file
        calc = make_teacher("gaff2")
        return calc, reference_structure(shipped_file(ASPIRIN_PRMTOP)), teacher

    path = Path(system)
    if not path.exists():
        raise ValueError(f"unknown system {system!r}: use one of "
                         f"{sorted(DEFAULT_TEACHER)} or a structure file")
    if path.suffix.lower() in (".prmtop", ".parm7"):
        from ..forcefields.openmm_ff import OpenMMCalculator, reference_structure
        if teacher not in (None, "gaff2", "openmm"):
            raise ValueError(f"a .prmtop system needs the gaff2/openmm teacher, not {teacher!r}")
        return OpenMMCalculator(path), reference_structure(path), "openmm"
    if teacher is None:
        raise ValueError(f"choose a teacher for {path} with --teacher ({TEACHERS[:2]})")
    from ase.io import read
    atoms = read(path, index=0)
    calc = make_teacher(teacher, **({"parameters": parameters} if teacher == "qforce" else {}))
    return calc, atoms, teacher


def sample_system(system: str, n: int, teacher: str | None = None, sigma: float = 0.2,
                  seed: int = 0, parameters=None, **kwargs) -> Frames:
    """Rattled frames of a system labelled by its teacher: :func:`get_system` +
    :class:`~ffpt_ase.sampling.RattleSampler` (``kwargs`` go to ``sample``)."""
    calc, ref, tname = get_system(system, teacher, parameters)
    sampler = RattleSampler(calc, ref, sigma=sigma, seed=seed, teacher_name=tname,
                            system_name=system)
    return sampler.sample(n, **kwargs)


def start_structure(system: str) -> Atoms:
    """A structure file's first frame, or a built-in system relaxed with its teacher."""
    if Path(system).exists():
        return load_structure(system)
    calc, ref, _ = get_system(system)
    return relax(ref, calc)
