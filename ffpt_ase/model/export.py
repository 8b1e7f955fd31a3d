"""A trained potential as a self-contained TorchScript file, for MD engines and codes that
know torch but not ffpt-ase (``ffpt-ase export MODEL -o model.pt``).

The file loads with ``torch.jit.load`` alone. Its ``forward(numbers, positions, cell, pbc)``
takes one structure (atomic numbers (N,) int64, positions (N, 3) in Angstrom, cell (3, 3)
rows are cell vectors in Angstrom, pbc (3,) bool) and returns a dictionary::

    energy   ()      eV (float64)
    forces   (N, 3)  eV/A
    stress   (3, 3)  eV/A^3, ASE's sign convention (only for cells periodic in all directions)

It carries its own neighbour list (:mod:`ffpt_ase.data.neighbours`), the per-element shift
and scale in float64, and its provenance as attributes (``elements``, ``cutoff``,
``source``, ``ffpt_ase_version``; ``model.elements`` etc. after loading).

:class:`OpenMMForce` wraps the same network in the convention of OpenMM-Torch's
``TorchForce``: ``forward(positions[, box_vectors])`` in nm, energy and forces in kJ/mol (/nm), with the
atomic numbers fixed when it is written (``--openmm STRUCTURE``).
"""


import copy
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from ..data.neighbours import padded_half_edges
from ..files import atomic_path
from .potential import Potential, atomic_energies, symmetric

#: ASE's units: 1 eV in kJ/mol and 1 nm in Angstrom (OpenMM's units)
KJ_PER_MOL_PER_EV = 96.48533212331
ANGSTROM_PER_NM = 10.0


class ExportedPotential(nn.Module):
    """Energy, forces and stress of one structure from a :class:`Potential`, in TorchScript
    (see the module docstring)."""

    elements: List[int]
    cutoff: float
    source: str
    ffpt_ase_version: str

    def __init__(self, potential: Potential, dtype: torch.dtype = torch.float64):
        super().__init__()
        from .. import __version__
        model = copy.deepcopy(potential).cpu().to(dtype).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.net = model.net
        lut = torch.full((119,), -1, dtype=torch.int64)
        lut[torch.tensor(model.elements)] = torch.arange(len(model.elements))
        self.register_buffer("species_of", lut)
        self.register_buffer("shift", model.shift.clone())
        self.register_buffer("scale", model.scale.clone())
        self.elements = list(model.elements)
        self.cutoff = float(model.cutoff)
        self.source = str(potential.source or "in-memory model")
        self.ffpt_ase_version = __version__

    def forward(self, numbers: torch.Tensor, positions: torch.Tensor, cell: torch.Tensor,
                pbc: torch.Tensor) -> Dict[str, torch.Tensor]:
        species = self.species_of[numbers.long()]
        if bool((species < 0).any()):
            raise RuntimeError("the structure has elements this model was not trained for")
        dtype = self.net.embedding.weight.dtype
        pos = positions.to(self.shift.device, dtype).detach().requires_grad_(True)
        cell = cell.to(pos.device, dtype)
        pbc = pbc.to(device=pos.device, dtype=torch.bool)
        periodic = bool(pbc.all())
        strain = torch.zeros((3, 3), dtype=dtype, device=pos.device).requires_grad_(periodic)
        if periodic:   # stress from the derivative with respect to a symmetric strain
            sym = symmetric(strain)
            x = pos + pos @ sym
            cell_s = cell + cell @ sym
        else:
            x, cell_s = pos, cell
        with torch.no_grad():
            real = torch.ones((1, x.shape[0]), dtype=torch.bool, device=pos.device)
            _, ei, ej, S = padded_half_edges(x.detach().unsqueeze(0), real,
                                             cell.unsqueeze(0), pbc, self.cutoff)
        shift = S.to(dtype) @ cell_s
        eps = self.net(species, x, ei, ej, shift)
        e_atom = atomic_energies(eps, species, self.scale, self.shift)
        energy = e_atom.sum()
        inputs = [pos, strain] if periodic else [pos]
        grads = torch.autograd.grad([energy], inputs)
        g = grads[0]
        assert g is not None
        out = {"energy": energy.detach(), "forces": -g.detach(), "energies": e_atom.detach()}
        if periodic:
            gs = grads[1]
            assert gs is not None
            out["stress"] = gs.detach() / torch.abs(torch.linalg.det(cell))
        return out


class OpenMMForce(nn.Module):
    """OpenMM-Torch's ``TorchForce`` convention: ``forward(positions, box_vectors)`` with
    positions (N, 3) and box vectors (3, 3) in nm (box ``None`` for a molecule), returns
    ``(energy, forces)`` in kJ/mol and kJ/mol/nm (so the force is created with
    ``setOutputsForces(True)``). The atomic numbers are fixed at construction."""

    def __init__(self, exported: ExportedPotential, numbers, periodic: bool):
        super().__init__()
        self.potential = exported
        self.register_buffer("numbers", torch.as_tensor(numbers, dtype=torch.int64))
        self.periodic = bool(periodic)
        self.nm = ANGSTROM_PER_NM               # module attributes: TorchScript reads no
        self.kj_per_mol = KJ_PER_MOL_PER_EV     # float globals

    def forward(self, positions: torch.Tensor,
                box_vectors: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        pos = positions.double() * self.nm
        if box_vectors is None:
            cell = torch.zeros((3, 3), dtype=torch.float64, device=pos.device)
            pbc = torch.zeros(3, dtype=torch.bool, device=pos.device)
        else:
            cell = box_vectors.double() * self.nm
            pbc = torch.full((3,), self.periodic, dtype=torch.bool, device=pos.device)
        out = self.potential(self.numbers, pos, cell, pbc)
        return (out["energy"] * self.kj_per_mol,
                out["forces"].double() * (self.kj_per_mol * self.nm))


def export_potential(potential: Potential, path, dtype: str = "float64",
                     openmm_atoms=None) -> Path:
    """Write ``potential`` as TorchScript to ``path`` (an :class:`ExportedPotential`, or with
    ``openmm_atoms`` (ASE ``Atoms``) an :class:`OpenMMForce` for those atoms); returns the
    path. The file is checked by loading it back before this returns."""
    from ..runtime import torch_dtype
    module = ExportedPotential(potential, torch_dtype(dtype))
    if openmm_atoms is not None:
        module = OpenMMForce(module, openmm_atoms.numbers, bool(openmm_atoms.pbc.all()))
    with warnings.catch_warnings():
        # torch 2.13 marks TorchScript deprecated; it is still the format LAMMPS (ML-IAP,
        # pair_style) and OpenMM-Torch load, so it is the format written here
        warnings.filterwarnings("ignore", message=r".*torch\.jit", category=DeprecationWarning)
        scripted = torch.jit.script(module)
        with atomic_path(path) as tmp:
            scripted.save(str(tmp))
            torch.jit.load(str(tmp))
    return Path(path)
