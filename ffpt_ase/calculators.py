"""``FFPTCalculator``: a trained ffpt-ase model as an ASE calculator (eV, eV/A, eV/A^3).

Drop it into any ASE script (optimizers, VelocityVerlet/Langevin MD, or wrapped by
``ase.calculators.plumed.Plumed`` for metadynamics)::

    from ffpt_ase import FFPTCalculator
    atoms.calc = FFPTCalculator.from_checkpoints("runs/ft/best.pt")
    atoms.calc = FFPTCalculator(model)           # a Potential already in memory

Given several models, it runs them as a committee: energy and forces are the committee
mean, and ``results['energy_std']``, ``results['forces_std']`` (per atom and component) and
``results['force_disagreement']`` (largest per-atom norm of the force standard deviation,
eV/A) estimate the model uncertainty. ``results['energies']`` holds the per-atom energies
(eV) of the committee mean.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from ase.calculators.calculator import (Calculator, PropertyNotImplementedError,
                                        all_changes)
from ase.stress import full_3x3_to_voigt_6_stress

from .data.graphs import batch_from_atoms, species_index
from .model.potential import Potential, load_potential
from .runtime import set_threads, torch_dtype, usable_device


def _is_path(x) -> bool:
    return isinstance(x, (str, bytes, os.PathLike))


class FFPTCalculator(Calculator):
    """ASE calculator for ffpt-ase potentials.

    Parameters
    ----------
    model:
        A :class:`~ffpt_ase.model.potential.Potential`, or a list of them for a committee.
        A checkpoint path (or ``pretrained:NAME``) is read as by :meth:`from_checkpoints`.
        The calculator converts its models to ``device`` and ``dtype`` and freezes their
        weights; pass a copy if the model must stay trainable.
    device:
        Torch device, ``'cpu'`` by default.
    dtype:
        ``'float32'`` (fast, default) or ``'float64'``.
    compile:
        Compile the network with ``torch.compile`` (about a minute once per process; then
        ~30 % faster calls, worthwhile for long MD).
    threads:
        Torch intra-op threads for the whole process (default: leave torch's setting).

    ``parameters`` (and ``todict()``) record the models' sources, device, dtype and compile.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, model, device: str = "cpu", dtype: str = "float32",
                 compile: bool = False, threads: int | None = None, **kwargs):
        members = [model] if _is_path(model) or isinstance(model, torch.nn.Module) \
            else list(model)
        if not members:
            raise ValueError("FFPTCalculator needs at least one model")
        self.dtype = torch_dtype(dtype)
        set_threads(threads)
        self.device = usable_device(device)
        self.models, sources = [], []
        for m in members:
            if _is_path(m):
                sources.append(os.fspath(m) if not isinstance(m, bytes) else m.decode())
                m = load_potential(m, dtype=self.dtype)
            elif isinstance(m, Potential):
                sources.append(m.source or "in-memory model")
            else:
                raise TypeError(f"FFPTCalculator takes Potential models or checkpoint paths, "
                                f"got {type(m).__name__}")
            m = m.to(device=self.device, dtype=self.dtype).eval()
            for param in m.parameters():
                param.requires_grad_(False)  # only position/strain gradients are needed
            if compile:
                m.net = torch.compile(m.net, dynamic=True)
            self.models.append(m)
        ref = self.models[0]
        for src, m in zip(sources[1:], self.models[1:]):
            if m.elements != ref.elements or m.cutoff != ref.cutoff:
                raise ValueError(f"committee member {src} differs from {sources[0]} in elements "
                                 f"or cutoff")
        super().__init__(model=sources, device=str(self.device), dtype=dtype, compile=compile,
                         **kwargs)
        self.elements = ref.elements
        self.cutoff = ref.cutoff
        self.model_paths = sources

    @classmethod
    def from_checkpoints(cls, paths, **kwargs) -> "FFPTCalculator":
        """A calculator from checkpoint files (one path, or several for a committee; also
        ``pretrained:NAME``); ``kwargs`` as for the constructor. Files are read with
        ``weights_only=True``."""
        paths = [paths] if _is_path(paths) else list(paths)
        # loaded in the calculator's dtype: a float64 calculator must not inherit float32
        # rounding of the radial frequencies from a detour through float32
        dtype = torch_dtype(kwargs.get("dtype", "float32"))
        return cls([load_potential(p, dtype=dtype) for p in paths], **kwargs)

    def fingerprint(self) -> str:
        """``sha256:...`` of the models' architectures and weights (as float64), the same
        for the same models whatever their files' names, the calculator's dtype or whether
        the network is compiled (which prefixes its parameters' names)."""
        from .runfolder import bytes_digest
        parts = []
        for m in self.models:
            parts.append(repr(sorted(m.config.items())).encode())
            for name, tensor in m.state_dict().items():
                t = tensor.detach().cpu()
                name = name.replace("_orig_mod.", "")
                parts += [name.encode(), (t.double() if t.is_floating_point() else t)
                          .contiguous().numpy().tobytes()]
        return bytes_digest(*parts)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        species_index(atoms.numbers, self.elements)  # clear error for unknown elements
        want_stress = "stress" in properties
        if want_stress and not atoms.pbc.all():
            raise PropertyNotImplementedError("stress needs a cell periodic in all directions")
        batch = batch_from_atoms(atoms, self.elements, self.cutoff, device=self.device
                                 ).to(dtype=self.dtype)
        energies, atomic, forces, stresses = [], [], [], []
        for model in self.models:
            out = model(batch, forces=True, stress=want_stress)
            energies.append(float(out["energy"][0].detach()))
            atomic.append(out["atomic_energy"].detach().cpu().numpy())
            forces.append(out["forces"].detach().double().cpu().numpy())
            if want_stress:
                stresses.append(out["stress"][0].detach().double().cpu().numpy())
        e = float(np.mean(energies))
        f = np.mean(forces, axis=0)
        self.results["energy"] = e
        self.results["free_energy"] = e
        self.results["energies"] = np.mean(atomic, axis=0)
        self.results["forces"] = f
        if want_stress:
            self.results["stress"] = full_3x3_to_voigt_6_stress(np.mean(stresses, axis=0))
        if len(self.models) > 1:
            fstd = np.std(forces, axis=0)
            self.results["energy_std"] = float(np.std(energies))
            self.results["forces_std"] = fstd
            self.results["force_disagreement"] = float(np.linalg.norm(fstd, axis=1).max())
