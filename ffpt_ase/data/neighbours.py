"""Neighbour lists in torch: on any device, and TorchScript-compatible (the exported model
carries this code, see :mod:`ffpt_ase.model.export`).

Frames come in the padded layout of :func:`~ffpt_ase.data.graphs.build_batch`: positions
(B, N, 3) in Angstrom, a mask of real atoms (B, N), cells (B, 3, 3) with cell vectors as
rows, one periodicity (3,) for the batch. The result is a half edge list in the package's
convention: every pair (i, j, S) within the cutoff appears once, with i < j, or i == j and
the lattice shift S lexicographically positive (a periodic image of the atom itself); the
vector of an edge is x_j + S . cell - x_i.

Method: all pairs of each frame, for each lattice shift S in [-n_k, n_k] along the periodic
directions, n_k = ceil(cutoff * |b_k|) with b_k the reciprocal vectors (1/|b_k| is the
spacing of the lattice planes), so every image within the cutoff is found for any cell
shape, also when the cutoff exceeds half the cell. Memory per shift is B x N^2: right for
molecules and cells of up to a few thousand atoms on a GPU; on the CPU the NumPy/matscipy
path of :mod:`~ffpt_ase.data.graphs` is used.
"""


from typing import List, Tuple

import torch


def image_range(cell: torch.Tensor, pbc: torch.Tensor, cutoff: float) -> List[int]:
    """Lattice images needed along each direction, ``[n_0, n_1, n_2]`` (0 where not
    periodic); ``cell`` (B, 3, 3) must be invertible when any direction is periodic."""
    if not bool(pbc.any()):
        return [0, 0, 0]
    recip = torch.linalg.inv(cell.double())            # columns are the reciprocal vectors
    norms = torch.linalg.norm(recip, dim=1)            # (B, 3): |b_k| per frame
    n = torch.ceil(cutoff * norms.max(dim=0).values - 1e-9).to(torch.int64)
    n = torch.where(pbc, n, torch.zeros_like(n))
    return [int(n[0]), int(n[1]), int(n[2])]


def lattice_shifts(n: List[int], device: torch.device) -> torch.Tensor:
    """All integer shifts (S_0, S_1, S_2), |S_k| <= n_k, as an (M, 3) int64 tensor."""
    axes = [torch.arange(-k, k + 1, device=device) for k in n]
    grid = torch.meshgrid(axes, indexing="ij")
    return torch.stack([grid[0].reshape(-1), grid[1].reshape(-1), grid[2].reshape(-1)], dim=1)


def _positive(shifts: torch.Tensor) -> torch.Tensor:
    """(M,) bool: whether the first nonzero component of each shift (M, 3) is positive."""
    nonzero = shifts != 0
    first = torch.argmax(nonzero.to(torch.int64), dim=1)          # 0 when all are zero
    lead = shifts.gather(1, first.unsqueeze(1)).squeeze(1)
    return lead > 0


def padded_half_edges(positions: torch.Tensor, real: torch.Tensor, cell: torch.Tensor,
                      pbc: torch.Tensor, cutoff: float, chunk_pairs: int = 4000000
                      ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Half edge list of padded frames (module docstring): ``(frame, i, j, shift)`` with
    i, j the atoms' slots within their frame and ``shift`` (edges, 3) the integer lattice
    shift (int64). ``positions`` (B, N, 3), ``real`` (B, N) bool, ``cell`` (B, 3, 3),
    ``pbc`` (3,) bool. All shifts are handled together, in chunks of at most
    ``chunk_pairs`` (shift, frame, atom, atom) candidates (about 100 MB in float64), so the
    memory stays bounded whatever the system's size."""
    B, N = positions.shape[0], positions.shape[1]
    device = positions.device
    shifts = lattice_shifts(image_range(cell, pbc, cutoff), device)
    both = real.unsqueeze(2) & real.unsqueeze(1)                       # (B, N, N)
    strict = torch.ones(N, N, dtype=torch.bool, device=device).triu(1)
    with_self = torch.ones(N, N, dtype=torch.bool, device=device).triu(0)
    # a positive shift also pairs an atom with its own image (i == j)
    upper = torch.where(_positive(shifts)[:, None, None], with_self, strict)   # (M, N, N)
    disp = torch.einsum("mk,bkl->mbl", shifts.to(positions.dtype), cell)      # (M, B, 3)
    rc2 = cutoff * cutoff
    diff = [positions[:, :, k].unsqueeze(1) - positions[:, :, k].unsqueeze(2)  # x_j - x_i
            for k in range(3)]
    step = max(1, chunk_pairs // max(1, B * N * N))
    found: List[torch.Tensor] = []
    for start in range(0, shifts.shape[0], step):
        stop = min(start + step, shifts.shape[0])
        # |x_j + S.cell - x_i|^2 one Cartesian component at a time: contiguous (m, B, N, N)
        # tensors, no reduction over a last axis of 3 (several times faster on a CPU)
        d2 = torch.zeros((stop - start, B, N, N), dtype=positions.dtype, device=device)
        for k in range(3):
            t = diff[k].unsqueeze(0) + disp[start:stop, :, k][:, :, None, None]
            d2.addcmul_(t, t)
        keep = both.unsqueeze(0) & upper[start:stop].unsqueeze(1) & (d2 < rc2)
        hit = torch.nonzero(keep)
        hit[:, 0] += start
        found.append(hit)
    hits = torch.cat(found)
    return hits[:, 1], hits[:, 2], hits[:, 3], shifts[hits[:, 0]]
