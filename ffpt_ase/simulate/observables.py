"""Structural observables computed during MD (the stability criteria use them; the liquid
analysis reuses them): the radial distribution function of periodic frames (Angstrom)."""

from __future__ import annotations

import numpy as np
from ase.geometry import find_mic


def rdf(images, element_a: int, element_b: int, r_max: float = 6.0, n_bins: int = 120):
    """g_ab(r) averaged over periodic frames (minimum image; r_max below half the cell).

    Returns ``(r, g)``; ``g -> 1`` for an uncorrelated (ideal-gas) system.
    """
    edges = np.linspace(0.0, r_max, n_bins + 1)
    hist = np.zeros(n_bins)
    norm = 0.0
    for atoms in images:
        z = atoms.numbers
        ia, ib = np.nonzero(z == element_a)[0], np.nonzero(z == element_b)[0]
        vec = atoms.positions[ib][None] - atoms.positions[ia][:, None]
        vec, d = find_mic(vec.reshape(-1, 3), atoms.cell, atoms.pbc)
        d = d.reshape(len(ia), len(ib))
        if element_a == element_b:
            d = d[np.triu_indices(len(ia), k=1)]
            n_pairs = len(ia) * (len(ia) - 1) / 2
        else:
            d = d.ravel()
            n_pairs = len(ia) * len(ib)
        hist += np.histogram(d, bins=edges)[0]
        norm += n_pairs / atoms.get_volume()
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    r = 0.5 * (edges[1:] + edges[:-1])
    return r, hist / (shell * norm)
