"""The interatomic potential: NewtonNet atomic energies with per-element scale and shift,
forces as minus the autograd gradient, and stress from the strain derivative.

E = sum_i [ s_{Z_i} * eps_i + mu_{Z_i} ]      (eV)
F_i = -dE/dx_i                                (eV/A)
sigma = (1/V) dE/d(strain)                    (eV/A^3, ASE's sign convention)

mu (shift) and s (scale) are buffers refitted from the data of each training stage
(:meth:`Potential.fit_normalization`): force-field and ab initio energies have different
zeros, so fine-tuning must not inherit the pre-training reference energies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .newtonnet import NewtonNet

CHECKPOINT_FORMAT = "ffpt-ase/newtonnet"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A file is not an ffpt-ase model checkpoint, or does not fit the model it should."""


def symmetric(strain: torch.Tensor) -> torch.Tensor:
    """The symmetric part of a strain (..., 3, 3): the derivative of the energy with respect
    to it is the virial, whatever the rotation part of the deformation."""
    return 0.5 * (strain + strain.transpose(-1, -2))


def atomic_energies(eps: torch.Tensor, species: torch.Tensor, scale: torch.Tensor,
                    shift: torch.Tensor) -> torch.Tensor:
    """Atomic energies in eV, float64: ``scale[Z] * eps + shift[Z]``.

    The network output ``eps`` stays in its own dtype; the large per-element shifts
    (hundreds of eV per atom) are added in float64, so total energies keep meV resolution
    when the network runs in float32. Used by :class:`Potential` and by the TorchScript
    export, so both give the same numbers."""
    return (eps * scale.to(eps.dtype)[species]).double() + shift[species]


class Potential(nn.Module):
    """Energy, forces and stress of a :class:`~ffpt_ase.data.graphs.GraphBatch`."""

    def __init__(self, elements, n_features: int = 128, n_interactions: int = 3,
                 n_basis: int = 20, cutoff: float = 5.0):
        super().__init__()
        self.elements = [int(z) for z in sorted(set(int(z) for z in elements))]
        if not self.elements or min(self.elements) < 1:
            raise ValueError(f"elements must be atomic numbers >= 1, got {elements}")
        self.config = {"elements": self.elements, "n_features": int(n_features),
                       "n_interactions": int(n_interactions), "n_basis": int(n_basis),
                       "cutoff": float(cutoff)}
        self.net = NewtonNet(len(self.elements), n_features, n_interactions, n_basis, cutoff)
        self.register_buffer("shift", torch.zeros(len(self.elements), dtype=torch.float64))
        self.register_buffer("scale", torch.ones(len(self.elements), dtype=torch.float64))
        self.source = None   # the checkpoint file it was read from, if any

    @property
    def cutoff(self) -> float:
        return self.config["cutoff"]

    def _apply(self, fn, recurse=True):
        """dtype/device conversions (``.float()``, ``.to(...)``) apply to the network; the
        per-element shift and scale stay float64 and only follow the device, so that
        shifts of hundreds of eV per atom are never rounded to float32."""
        self.net._apply(fn, recurse)
        device = next(self.net.parameters()).device
        self.shift = self.shift.to(device=device, dtype=torch.float64)
        self.scale = self.scale.to(device=device, dtype=torch.float64)
        return self

    # ------------------------------------------------------------------------------------
    def forward(self, batch, forces: bool = True, stress: bool = False,
                create_graph: bool = False) -> dict:
        """Return ``{'energy': (graphs,), 'forces': (atoms, 3), 'stress': (graphs, 3, 3)}``.

        Energies are float64 whatever the model dtype; forces and stress follow the model.
        """
        pos = batch.positions
        cell = batch.cell
        graph = batch.graph
        if forces:
            pos = pos.detach().requires_grad_(True)
        strain = None
        if stress:
            strain = torch.zeros_like(cell, requires_grad=True)
            sym = symmetric(strain)
            pos = pos + torch.einsum("ak,akl->al", pos, sym[graph])
            cell = cell + torch.bmm(cell, sym)
        edge_graph = graph[batch.edge_i]
        shift = torch.einsum("ek,ekl->el", batch.shift_frac, cell[edge_graph])
        eps = self.net(batch.species, pos, batch.edge_i, batch.edge_j, shift)
        e_atom = atomic_energies(eps, batch.species, self.scale, self.shift)
        energy = torch.zeros(batch.n_graphs, dtype=torch.float64, device=eps.device)
        energy = energy.index_add(0, graph, e_atom)
        out = {"energy": energy, "atomic_energy": e_atom}
        wrt = [t for t in (pos if forces else None, strain) if t is not None]
        if wrt:
            grads = torch.autograd.grad(energy.sum(), wrt, create_graph=create_graph or
                                        self.training)
            if forces:
                out["forces"] = -grads[0]
            if stress:
                volume = torch.abs(torch.linalg.det(batch.cell))
                out["stress"] = grads[-1] / volume[:, None, None]
        return out

    # ------------------------------------------------------------------------------------
    @torch.no_grad()
    def fit_normalization(self, frames, max_frames: int = 20000, seed: int = 0) -> dict:
        """Refit per-element shift (least squares of energy on composition) and scale (RMS
        force component of each element's atoms) from a :class:`Frames` set."""
        rng = np.random.default_rng(seed)
        sub = frames[np.sort(rng.permutation(len(frames))[:max_frames])]
        counts = self._composition(sub)  # also rejects elements the model lacks
        shift = np.zeros(len(self.elements))
        if sub.energy is not None:
            shift = self._per_element_fit(counts, sub.energy)
        scale = np.ones(len(self.elements))
        if sub.forces is not None:
            num = sub.numbers_per_frame
            for k, z in enumerate(self.elements):
                sel = num == z
                if sel.any():
                    rms = float(np.sqrt(np.mean(sub.forces[sel] ** 2)))
                    scale[k] = rms if rms > 1e-8 else 1.0
        self.shift.copy_(torch.from_numpy(shift))
        self.scale.copy_(torch.from_numpy(scale))
        return {"shift": dict(zip(self.elements, shift.tolist())),
                "scale": dict(zip(self.elements, scale.tolist()))}

    def _composition(self, frames) -> np.ndarray:
        """Atoms of each model element per frame (frames, elements); unknown elements raise."""
        num = frames.numbers_per_frame
        unknown = set(np.unique(num[num > 0])) - set(self.elements)
        if unknown:
            raise ValueError(f"data contain elements {sorted(unknown)} the model was not built for")
        return np.stack([(num == z).sum(axis=1) for z in self.elements], axis=1).astype(float)

    @staticmethod
    def _per_element_fit(counts, target) -> np.ndarray:
        """Per-element energies (eV) whose composition sums fit ``target`` (frames,) in the
        least-squares sense; zero for elements absent from ``counts``."""
        present = counts.sum(axis=0) > 0
        out = np.zeros(counts.shape[1])
        out[present] = np.linalg.lstsq(counts[:, present], target, rcond=None)[0]
        return out

    @torch.no_grad()
    def set_shift(self, energies: dict) -> dict:
        """Fix the per-element shifts to given isolated-atom energies ``{Z: eV}`` (E0s);
        every element of the model needs one."""
        from ase.data import chemical_symbols
        missing = [chemical_symbols[z] for z in self.elements if z not in energies]
        if missing:
            raise ValueError(f"E0s are missing for {missing} (the model has elements "
                             f"{[chemical_symbols[z] for z in self.elements]})")
        self.shift.copy_(torch.tensor([float(energies[z]) for z in self.elements],
                                      dtype=torch.float64))
        return {"shift (E0s)": dict(zip(self.elements, self.shift.tolist()))}

    def refit_shift(self, frames, energy_pred) -> dict:
        """Move the per-element shifts by the least-squares fit of the residual
        ``E_ref - energy_pred`` (eV) on composition, leaving scale and network untouched.

        This is how fine-tuning starts: the pre-trained PES shape (forces) is kept and only
        the energy zero of the new level of theory (e.g. DFT vs force field) is absorbed.
        """
        delta = self._per_element_fit(self._composition(frames),
                                      frames.energy - np.asarray(energy_pred))
        self.shift.add_(torch.from_numpy(delta))
        return {"shift": dict(zip(self.elements, self.shift.tolist())),
                "scale (kept)": dict(zip(self.elements, self.scale.tolist()))}

    # ------------------------------------------------------------------------------------
    def checkpoint(self, **extra) -> dict:
        """The model as a checkpoint dictionary; its tensors are copies on the CPU, so the
        dictionary keeps this moment's weights while training goes on (on any device)."""
        state = {k: v.detach().to("cpu", copy=True) for k, v in self.state_dict().items()}
        return {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION,
                "config": dict(self.config), "model_state": state, **extra}

    @classmethod
    def from_checkpoint(cls, ckpt: dict) -> "Potential":
        check_checkpoint(ckpt)
        model = cls(**ckpt["config"])
        model.load_state_dict(ckpt["model_state"])
        return model


def check_checkpoint(ckpt, source="checkpoint") -> None:
    """Raise :class:`CheckpointError` unless ``ckpt`` is an ffpt-ase model checkpoint."""
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format", sorted(ckpt)[:8]) if isinstance(ckpt, dict) else type(ckpt)
        raise CheckpointError(f"{source} is not an ffpt-ase NewtonNet checkpoint "
                              f"(found {found!r}); it may belong to another model or code")
    if ckpt.get("format_version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{source} has format version {ckpt['format_version']}, newer than "
                              f"this ffpt-ase understands ({CHECKPOINT_VERSION})")


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load and validate a checkpoint file (clear errors for foreign or broken files).

    ``path`` may be ``pretrained:NAME`` for a shipped model. Files are read with
    ``weights_only=True``: tensors and plain containers only, no code runs on loading.
    """
    from ..pretrained import resolve_checkpoint
    path = resolve_checkpoint(path)
    if not path.exists():
        raise FileNotFoundError(f"model checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for non-checkpoints
        raise CheckpointError(f"{path} could not be read as a torch checkpoint ({err})") from err
    check_checkpoint(ckpt, str(path))
    return ckpt


def load_potential(path: str | Path, dtype=torch.float32, device="cpu") -> Potential:
    """A :class:`Potential` from a checkpoint file, in eval mode."""
    model = Potential.from_checkpoint(load_checkpoint(path))
    model.source = str(path)
    return model.to(device=device, dtype=dtype).eval()
