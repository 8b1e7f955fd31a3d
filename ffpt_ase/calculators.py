"""``FFPTCalculator``: a trained ffpt-ase model as an ASE calculator (eV, eV/A, eV/A^3).

Drop it into any ASE script (optimizers, VelocityVerlet/Langevin MD, or wrapped by
``ase.calculators.plumed.Plumed`` for metadynamics)::

    from ffpt_ase import FFPTCalculator
    atoms.calc = FFPTCalculator("runs/ft/best.pt")

Given several checkpoints, it runs them as a committee: energy and forces are the committee
mean, and ``results['energy_std']``, ``results['forces_std']`` (per atom and component) and
``results['force_disagreement']`` (largest per-atom norm of the force standard deviation,
eV/A) estimate the model uncertainty.
"""

from __future__ import annotations

import numpy as np
import torch
from ase.calculators.calculator import (Calculator, PropertyNotImplementedError,
                                        all_changes)
from ase.stress import full_3x3_to_voigt_6_stress

from .data.graphs import batch_from_atoms, species_index
from .model.potential import load_potential

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class FFPTCalculator(Calculator):
    """ASE calculator for ffpt-ase checkpoints (``best.pt`` / ``last.pt``).

    Parameters
    ----------
    model_path:
        One checkpoint path, or a list of them for a committee.
    device:
        Torch device, ``'cpu'`` by default.
    dtype:
        ``'float32'`` (fast, default) or ``'float64'``.
    compile:
        Compile the network with ``torch.compile`` (about a minute once per process; then
        ~30 % faster calls, worthwhile for long MD).
    threads:
        Torch intra-op threads (default: leave torch's setting).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, model_path, device: str = "cpu", dtype: str = "float32",
                 compile: bool = False, threads: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        if threads:
            torch.set_num_threads(threads)
        paths = [model_path] if isinstance(model_path, (str, bytes)) or not hasattr(
            model_path, "__iter__") else list(model_path)
        self.device = torch.device(device)
        self.dtype = _DTYPES[dtype]
        self.models = []
        for p in paths:
            model = load_potential(p, dtype=self.dtype, device=self.device)
            for param in model.parameters():
                param.requires_grad_(False)  # only position/strain gradients are needed
            if compile:
                model.net = torch.compile(model.net, dynamic=True)
            self.models.append(model)
        ref = self.models[0]
        for p, m in zip(paths[1:], self.models[1:]):
            if m.elements != ref.elements or m.cutoff != ref.cutoff:
                raise ValueError(f"committee member {p} differs from {paths[0]} in elements or "
                                 f"cutoff")
        self.elements = ref.elements
        self.cutoff = ref.cutoff
        self.model_paths = [str(p) for p in paths]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        if not np.all(np.isfinite(atoms.positions)):
            raise ValueError("non-finite atomic positions (NaN or inf) passed to FFPTCalculator")
        species_index(atoms.numbers, self.elements)  # clear error for unknown elements
        want_stress = "stress" in properties
        if want_stress and not atoms.pbc.all():
            raise PropertyNotImplementedError("stress needs a cell periodic in all directions")
        batch = batch_from_atoms(atoms, self.elements, self.cutoff).to(self.device, self.dtype)
        energies, forces, stresses = [], [], []
        for model in self.models:
            out = model(batch, forces=True, stress=want_stress)
            energies.append(float(out["energy"][0].detach()))
            forces.append(out["forces"].detach().double().cpu().numpy())
            if want_stress:
                stresses.append(out["stress"][0].detach().double().cpu().numpy())
        e = float(np.mean(energies))
        f = np.mean(forces, axis=0)
        self.results["energy"] = e
        self.results["free_energy"] = e
        self.results["forces"] = f
        if want_stress:
            self.results["stress"] = full_3x3_to_voigt_6_stress(np.mean(stresses, axis=0))
        if len(self.models) > 1:
            fstd = np.std(forces, axis=0)
            self.results["energy_std"] = float(np.std(energies))
            self.results["forces_std"] = fstd
            self.results["force_disagreement"] = float(np.linalg.norm(fstd, axis=1).max())
