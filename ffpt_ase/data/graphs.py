"""Atom graphs for the model: batches of frames as one set of atoms with a half edge list.

* Molecules (no periodic direction): all pairs closer than the cutoff, found for a whole
  batch of frames at once with one vectorized distance computation (no per-frame loop);
  for a batch of 32 aspirin molecules this takes 0.72 ms against 2.67 ms for matscipy
  called per frame (measured on the 2-core project machine).
* Periodic cells: matscipy's linked-cell neighbour list per frame, any cell shape, with
  the lattice shift of every pair.
* On a GPU (or when asked for with ``neighbour_list="torch"``) the edges are found on the
  device by :mod:`~ffpt_ase.data.neighbours`, so positions cross to the host at most once
  and no per-frame loop runs; the same edges as the NumPy path (tested).

Edges are unordered pairs: each pair (i, j, shift) appears once (i < j, or i == j with the
shift's first nonzero component positive for periodic images of the same atom).
Positions in Angstrom.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class GraphBatch:
    """Torch tensors describing ``n_graphs`` frames (see module docstring)."""

    species: torch.Tensor      # (atoms,) index into the model's element list
    numbers: torch.Tensor      # (atoms,) atomic numbers
    positions: torch.Tensor    # (atoms, 3) Angstrom
    graph: torch.Tensor        # (atoms,) frame index of each atom
    edge_i: torch.Tensor       # (edges,)
    edge_j: torch.Tensor       # (edges,)
    shift_frac: torch.Tensor   # (edges, 3) integer lattice shift of j (float)
    cell: torch.Tensor         # (graphs, 3, 3) rows are cell vectors, Angstrom
    n_graphs: int
    energy: torch.Tensor | None = None   # (graphs,) eV
    forces: torch.Tensor | None = None   # (atoms, 3) eV/A
    stress: torch.Tensor | None = None   # (graphs, 3, 3) eV/A^3

    def to(self, device=None, dtype=None) -> "GraphBatch":
        def cv(t, floating):
            if t is None:
                return None
            return t.to(device=device, dtype=dtype if floating else None)
        return GraphBatch(
            species=cv(self.species, False), numbers=cv(self.numbers, False),
            positions=cv(self.positions, True), graph=cv(self.graph, False),
            edge_i=cv(self.edge_i, False), edge_j=cv(self.edge_j, False),
            shift_frac=cv(self.shift_frac, True), cell=cv(self.cell, True),
            n_graphs=self.n_graphs, forces=cv(self.forces, True), stress=cv(self.stress, True),
            energy=None if self.energy is None else self.energy.to(device=device))  # float64


def species_index(numbers: np.ndarray, elements) -> np.ndarray:
    """Map atomic numbers to indices of ``elements``; unknown elements raise a ValueError."""
    from ase.data import chemical_symbols
    lut = np.full(119, -1, dtype=np.int64)
    lut[np.asarray(elements)] = np.arange(len(elements))
    idx = lut[np.asarray(numbers)]
    if (idx < 0).any():
        missing = sorted({chemical_symbols[z] for z in np.asarray(numbers)[idx < 0]})
        known = [chemical_symbols[z] for z in elements]
        raise ValueError(f"element(s) {missing} not known to the model (trained on {known})")
    return idx


def _molecular_edges(pos, real, cutoff):
    """Half edge list of non-periodic frames: pos (B, N, 3), real (B, N) -> (b, i, j)."""
    d2 = ((pos[:, :, None, :] - pos[:, None, :, :]) ** 2).sum(-1)
    n = pos.shape[1]
    upper = np.triu(np.ones((n, n), bool), k=1)
    mask = upper[None] & real[:, :, None] & real[:, None, :] & (d2 < cutoff * cutoff)
    return np.nonzero(mask)


def periodic_edges(pos, numbers, cell, pbc, cutoff):
    from matscipy.neighbours import neighbour_list

    from ase import Atoms
    atoms = Atoms(numbers=numbers, positions=pos, cell=cell, pbc=pbc)
    i, j, S = neighbour_list("ijS", atoms, cutoff)
    first = np.where(S[:, 0] != 0, S[:, 0], np.where(S[:, 1] != 0, S[:, 1], S[:, 2]))
    keep = (i < j) | ((i == j) & (first > 0))
    return i[keep], j[keep], S[keep]


NEIGHBOUR_LISTS = ("numpy", "torch")


def build_batch(positions, numbers, elements, cutoff, cell=None, pbc=None, energy=None,
                forces=None, device=None, neighbour_list: str | None = None,
                stress=None) -> GraphBatch:
    """Batch of frames in the package's array layout (padding numbers = 0).

    positions (B, N, 3), numbers (B, N) or (N,), cell (B, 3, 3), pbc (3,). The tensors
    are made on ``device`` (default CPU); ``neighbour_list`` is ``"numpy"`` (NumPy for
    molecules, matscipy for cells: the CPU default) or ``"torch"`` (on the device: the
    default elsewhere).
    """
    device = torch.device("cpu" if device is None else device)
    method = neighbour_list or ("numpy" if device.type == "cpu" else "torch")
    if method not in NEIGHBOUR_LISTS:
        raise ValueError(f"neighbour_list must be one of {NEIGHBOUR_LISTS}, got {method!r}")
    pos = np.asarray(positions, float)
    B, N = pos.shape[:2]
    num = np.broadcast_to(np.asarray(numbers), (B, N))
    real = num > 0
    bad = real & ~np.isfinite(pos).all(axis=-1)
    if bad.any():  # a NaN distance is never < cutoff: the atom would silently lose its edges
        f, a = np.argwhere(bad)[0]
        raise ValueError(f"non-finite coordinates (NaN or inf) in {int(bad.any(1).sum())} "
                         f"frame(s), first: frame {f}, atom {a}")
    node_id = np.cumsum(real.reshape(-1)).reshape(B, N) - 1
    pbc = np.zeros(3, bool) if pbc is None else np.asarray(pbc, bool)
    cell = np.zeros((B, 3, 3)) if cell is None else np.array(np.broadcast_to(
        np.asarray(cell, float), (B, 3, 3)))
    z = num[real]
    species = species_index(z, elements)

    def tensor(a):
        return torch.as_tensor(np.ascontiguousarray(a), device=device)

    if method == "torch":
        ei, ej, shift = _device_edges(tensor(pos), tensor(real), tensor(node_id),
                                      tensor(cell), pbc, cutoff)
    elif not pbc.any():
        b, i, j = _molecular_edges(pos, real, cutoff)
        ei, ej = tensor(node_id[b, i]), tensor(node_id[b, j])
        shift = torch.zeros((len(ei), 3), dtype=torch.float64, device=device)
    else:
        parts_i, parts_j, parts_s = [], [], []
        for f in range(B):
            r = real[f]
            ii, jj, S = periodic_edges(pos[f][r], num[f][r], cell[f], pbc, cutoff)
            offs = node_id[f][r][0] if r.any() else 0
            parts_i.append(ii + offs)
            parts_j.append(jj + offs)
            parts_s.append(S)
        ei = tensor(np.concatenate(parts_i).astype(np.int64))
        ej = tensor(np.concatenate(parts_j).astype(np.int64))
        shift = tensor(np.concatenate(parts_s).astype(float))
    return GraphBatch(
        species=tensor(species), numbers=tensor(z.astype(np.int64)),
        positions=tensor(pos[real]), graph=tensor(np.nonzero(real)[0].astype(np.int64)),
        edge_i=ei.to(torch.int64), edge_j=ej.to(torch.int64), shift_frac=shift,
        cell=tensor(cell), n_graphs=B,
        energy=None if energy is None else tensor(np.asarray(energy, float)),
        forces=None if forces is None else tensor(np.asarray(forces, float)[real]),
        stress=None if stress is None else tensor(np.asarray(stress, float)))


def _device_edges(pos, real, node_id, cell, pbc, cutoff):
    """Half edges found by :func:`~ffpt_ase.data.neighbours.padded_half_edges` on the
    tensors' device, as atom indices of the compacted batch and float shifts."""
    from .neighbours import padded_half_edges
    if pbc.any() and bool((torch.linalg.det(cell).abs() < 1e-9).any()):
        raise ValueError("a periodic frame has a singular cell: the device neighbour list "
                         "needs three independent cell vectors")
    b, i, j, S = padded_half_edges(pos, real, cell, torch.as_tensor(pbc, device=pos.device),
                                   float(cutoff))
    return node_id[b, i], node_id[b, j], S.to(torch.float64)


def batch_from_frames(frames, index, elements, cutoff, device=None) -> GraphBatch:
    """Graph batch of ``frames[index]`` (a :class:`~ffpt_ase.data.frames.Frames`), made on
    ``device``."""
    index = np.asarray(index)
    num = frames.numbers if frames.numbers.ndim == 1 else frames.numbers[index]
    return build_batch(frames.positions[index], num, elements, cutoff, cell=frames.cell[index],
                       pbc=frames.pbc,
                       energy=None if frames.energy is None else frames.energy[index],
                       forces=None if frames.forces is None else frames.forces[index],
                       stress=None if frames.stress is None else frames.stress[index],
                       device=device)


def batch_from_atoms(atoms, elements, cutoff, device=None) -> GraphBatch:
    """Graph batch of one ASE Atoms object, made on ``device``."""
    return build_batch(atoms.positions[None], atoms.numbers, elements, cutoff,
                       cell=atoms.cell.array[None], pbc=atoms.pbc, device=device)
