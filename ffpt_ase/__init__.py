"""ffpt-ase: force-field pre-training and ab initio fine-tuning of machine-learned
interatomic potentials, as ASE calculators. Units at every public boundary: eV, Angstrom,
fs (ASE's)."""

from .data import Frames, read_frames, write_frames
from .forcefields.openmm_ff import OpenMMCalculator
from .forcefields.qforce import QForceCalculator
from .forcefields.tip3p import FlexibleTIP3PCalculator
from .sampling import RattleSampler, relax, sample_system

__version__ = "0.1.0"

__all__ = ["FlexibleTIP3PCalculator", "Frames", "OpenMMCalculator", "QForceCalculator",
           "RattleSampler", "read_frames", "relax", "sample_system", "write_frames"]
