"""Bonded topology of molecules: bonds from covalent radii, fragments, angles, dihedrals.

A classical, non-reactive force field needs a fixed topology. :func:`perceive` derives it
once from a geometry (atoms closer than ``scale`` times the sum of their covalent radii are
bonded) and the result is then kept for the whole run, whatever the atoms do afterwards.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from ase.data import chemical_symbols, covalent_radii

#: atoms closer than BOND_SCALE x (sum of covalent radii) are bonded
BOND_SCALE = 1.25
#: atoms closer than COLLISION_FACTOR x (sum of covalent radii) collide (no chemistry allows it)
COLLISION_FACTOR = 0.5


def hill_formula(symbols) -> str:
    """Hill-order formula without charge, e.g. ``['O', 'O', 'H'] -> 'HO2'``."""
    counts = Counter(symbols)
    order = (["C", "H"] + sorted(s for s in counts if s not in ("C", "H"))) if "C" in counts \
        else sorted(counts)
    return "".join(f"{s}{counts[s] if counts[s] > 1 else ''}" for s in order if s in counts)


def canonical_label(symbols) -> str:
    """Direction-independent label of a bonded term: ``('H','O','O') -> 'H-O-O'``.

    A chain and its reverse describe the same term; the lexicographically smaller wins.
    """
    fwd = list(symbols)
    rev = fwd[::-1]
    return "-".join(min(fwd, rev))


@dataclass
class Topology:
    """Fixed bonded topology of a set of atoms (indices are 0-based)."""

    numbers: np.ndarray
    bonds: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), int))
    angles: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), int))
    dihedrals: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), int))
    fragments: list = field(default_factory=list)

    @property
    def symbols(self):
        return [chemical_symbols[z] for z in self.numbers]

    def fragment_formulas(self):
        sym = self.symbols
        return [hill_formula([sym[i] for i in frag]) for frag in self.fragments]

    def fragment_of_atom(self) -> np.ndarray:
        out = np.empty(len(self.numbers), int)
        for k, frag in enumerate(self.fragments):
            out[list(frag)] = k
        return out


def bonds_from_geometry(numbers, positions, scale: float = BOND_SCALE) -> np.ndarray:
    """Pairs (i < j) closer than ``scale * (r_cov,i + r_cov,j)`` (ASE covalent radii, A)."""
    numbers = np.asarray(numbers)
    pos = np.asarray(positions, float)
    rad = covalent_radii[numbers]
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    i, j = np.nonzero(np.triu(d < scale * (rad[:, None] + rad[None]), k=1))
    return np.stack([i, j], axis=1).astype(int)


def build(numbers, bonds) -> Topology:
    """Topology with all angles and proper dihedrals implied by a bond list."""
    numbers = np.asarray(numbers)
    n = len(numbers)
    bonds = np.asarray(bonds, int).reshape(-1, 2)
    neigh = [set() for _ in range(n)]
    for i, j in bonds:
        if i == j:
            raise ValueError(f"atom {i} bonded to itself")
        neigh[i].add(j)
        neigh[j].add(i)
    angles = sorted({(min(i, k), j, max(i, k)) for j in range(n)
                     for i in neigh[j] for k in neigh[j] if i != k})
    dihedrals = set()
    for j, k in bonds:
        for i in neigh[j] - {k}:
            for l in neigh[k] - {j}:
                if i != l:
                    t = (i, j, k, l)
                    dihedrals.add(min(t, t[::-1]))
    # connected components
    seen = np.full(n, -1)
    fragments = []
    for start in range(n):
        if seen[start] >= 0:
            continue
        stack, comp = [start], []
        seen[start] = len(fragments)
        while stack:
            a = stack.pop()
            comp.append(a)
            for b in neigh[a]:
                if seen[b] < 0:
                    seen[b] = len(fragments)
                    stack.append(b)
        fragments.append(sorted(comp))
    return Topology(
        numbers=numbers,
        bonds=np.array(sorted(tuple(sorted(b)) for b in bonds), int).reshape(-1, 2),
        angles=np.array(angles, int).reshape(-1, 3),
        dihedrals=np.array(sorted(dihedrals), int).reshape(-1, 4),
        fragments=fragments,
    )


def perceive(numbers, positions, scale: float = BOND_SCALE) -> Topology:
    """Perceive the topology of a geometry (bonds by covalent radii, see module doc)."""
    return build(numbers, bonds_from_geometry(numbers, positions, scale))


def fragment_formulas_from_distances(numbers, distances, scale: float = BOND_SCALE) -> list:
    """Sorted fragment formulas of each frame from its distance matrices.

    ``distances`` is (frames, atoms, atoms) in A; atoms closer than ``scale`` times the sum
    of their covalent radii are bonded (as in :func:`perceive`). Returns one sorted tuple of
    Hill formulas per frame. Frames with the same bond pattern share one graph search.
    """
    numbers = np.asarray(numbers)
    d = np.asarray(distances, float)
    rad = covalent_radii[numbers]
    bonded = d < scale * (rad[:, None] + rad[None])
    iu = np.triu_indices(len(numbers), k=1)
    keys = np.packbits(bonded[:, iu[0], iu[1]], axis=1)
    cache, out = {}, []
    for k, key in enumerate(map(bytes, keys)):
        if key not in cache:
            pairs = np.argwhere(np.triu(bonded[k], k=1))
            cache[key] = tuple(sorted(build(numbers, pairs).fragment_formulas()))
        out.append(cache[key])
    return out


def colliding_pairs(numbers, distances, factor: float = COLLISION_FACTOR) -> np.ndarray:
    """(frames, atoms, atoms) bool, upper triangle: pairs closer than ``factor`` times the sum
    of their covalent radii (a collision no chemistry allows)."""
    numbers = np.asarray(numbers)
    d = np.asarray(distances, float).reshape(-1, len(numbers), len(numbers))
    rad = covalent_radii[numbers]
    return np.triu(d < factor * (rad[:, None] + rad[None]), k=1)


def close_contacts(numbers, distances, factor: float = COLLISION_FACTOR) -> np.ndarray:
    """(frames,) bool: some pair of atoms collides (:func:`colliding_pairs`)."""
    return colliding_pairs(numbers, distances, factor).any(axis=(1, 2))
