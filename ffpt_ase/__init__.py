"""ffpt-ase: force-field pre-training and ab initio fine-tuning of machine-learned
interatomic potentials, as ASE calculators. Units at every public boundary: eV, Angstrom,
fs (ASE's)."""

from .data import Frames, read_frames, write_frames
from .forcefields.openmm_ff import OpenMMCalculator
from .forcefields.qforce import QForceCalculator
from .forcefields.tip3p import FlexibleTIP3PCalculator, TIP3PLiquidCalculator
from .sampling import RattleSampler, relax

__version__ = "0.1.0"

__all__ = ["Ensemble", "FFPTCalculator", "FlexibleTIP3PCalculator", "Frames", "OpenMMCalculator",
           "Potential", "QForceCalculator", "RattleSampler", "TIP3PLiquidCalculator",
           "TrainConfig", "read_frames",
           "relax", "sample_system", "train", "write_frames"]

_LAZY = {  # torch-backed names, imported on first use so that `import ffpt_ase` stays light
    "FFPTCalculator": ("ffpt_ase.calculators", "FFPTCalculator"),
    "Ensemble": ("ffpt_ase.simulate.ensemble", "Ensemble"),
    "sample_system": ("ffpt_ase.applications.systems", "sample_system"),
    "Potential": ("ffpt_ase.model.potential", "Potential"),
    "TrainConfig": ("ffpt_ase.training.config", "TrainConfig"),
    "train": ("ffpt_ase.training.trainer", "train"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'ffpt_ase' has no attribute {name!r}")
