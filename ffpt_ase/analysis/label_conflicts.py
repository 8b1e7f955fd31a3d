"""Label conflicts: one geometry labelled with two different energies.

A potential that sees only the geometry gives one energy per geometry. Where a data set
holds the same geometry (up to a permutation of like atoms) under two labels, such as two
spin states of one composition, no such potential can fit both: on a pair whose energies
differ by dE it errs by at least |dE| / 2 on average over the two frames. This module finds
those pairs and states that floor; pairs within one label, matched the same way, are the
control that says how much energy the geometric tolerance alone allows.

Distances in A, energies in the frames' eV, results in kJ/mol.
"""

from __future__ import annotations

import itertools

import numpy as np
from ase import units
from ase.data import chemical_symbols
from ase.formula import Formula

_KJ = units.kJ / units.mol   # eV per kJ/mol

#: neighbours searched for a control match that is not a repeat of the frame itself
CONTROL_NEIGHBOURS = 16


def distance_descriptor(positions, numbers) -> np.ndarray:
    """(frames, pairs) interatomic distances (A) of frames of one composition, sorted within
    each element pair (e.g. H-H, H-O, O-O): two geometries that differ by a permutation of
    like atoms, a rotation or a translation have the same descriptor."""
    positions = np.asarray(positions, float)
    numbers = np.asarray(numbers, int)
    if positions.ndim != 3 or positions.shape[1:] != (len(numbers), 3):
        raise ValueError(f"positions must be (frames, {len(numbers)}, 3), got {positions.shape}")
    blocks = []
    for a, b in itertools.combinations_with_replacement(sorted(set(numbers.tolist())), 2):
        pairs = [(i, j) for i, j in itertools.combinations(range(len(numbers)), 2)
                 if sorted((numbers[i], numbers[j])) == [a, b]]
        if pairs:
            i, j = np.array(pairs).T
            blocks.append(np.sort(np.linalg.norm(positions[:, i] - positions[:, j], axis=-1),
                                  axis=1))
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((len(positions), 0))


def _summary(de_kj: np.ndarray) -> dict:
    a = np.abs(de_kj)
    if not len(a):
        return {"pairs": 0}
    return {"pairs": int(len(a)), "median_abs_kJ_per_mol": float(np.median(a)),
            "p90_abs_kJ_per_mol": float(np.percentile(a, 90)),
            "max_abs_kJ_per_mol": float(a.max()),
            "spin_blind_floor_kJ_per_mol": float(a.mean() / 2)}


def label_conflicts(frames, labels, tolerance: float = 0.01, tags=None) -> list:
    """Pairs of frames of one composition whose :func:`distance_descriptor` agree within
    ``tolerance`` (A, largest difference of any distance), for every pair of values of
    ``labels`` (one per frame, e.g. the spin multiplicity) within a composition that has
    more than one.

    Each frame of the first label is matched to its nearest frame of the second; for the
    control rows (the same label twice) to its nearest *other* geometry, a repeated frame
    measuring nothing. Returns one dict per composition and label pair: ``composition``,
    ``labels``, ``control``, ``pairs``, and where there are pairs the median, 90th
    percentile and largest |dE| and the floor mean(|dE|) / 2 (kJ/mol); ``tags`` (one string
    per frame, e.g. the reaction channel) are listed for the matched frames.
    """
    from scipy.spatial import cKDTree
    if not tolerance > 0:
        raise ValueError(f"the matching tolerance must be > 0 A, got {tolerance}")
    labels = np.asarray(labels)
    if len(labels) != len(frames):
        raise ValueError(f"{len(labels)} labels for {len(frames)} frames")
    tags = np.asarray(tags) if tags is not None else None
    numbers = frames.numbers if frames.numbers.ndim == 2 else np.broadcast_to(
        frames.numbers, frames.positions.shape[:2])
    keys = np.array([",".join(map(str, sorted(z[z > 0]))) for z in numbers])
    out = []
    for key in sorted(set(keys)):
        sel = np.flatnonzero(keys == key)
        kinds = np.unique(labels[sel])
        if len(kinds) < 2:
            continue
        z = np.sort(numbers[sel[0]][numbers[sel[0]] > 0])
        # every frame's atoms in the order of their atomic numbers, padding last: one
        # descriptor call for frames whose files list the atoms in different orders
        order = np.argsort(np.where(numbers[sel] > 0, numbers[sel], 10**6), axis=1,
                           kind="stable")[:, :len(z)]
        desc = distance_descriptor(np.take_along_axis(frames.positions[sel], order[..., None],
                                                      axis=1), z)
        energy = frames.energy[sel] / _KJ
        lab = labels[sel]
        formula = str(Formula("".join(chemical_symbols[n] for n in sorted(z))).format("hill"))
        for l1, l2 in itertools.combinations_with_replacement(kinds, 2):
            a, b = np.flatnonzero(lab == l1), np.flatnonzero(lab == l2)
            tree = cKDTree(desc[b])
            if l1 != l2:   # the nearest frame of the other label, identical or not
                d, j = tree.query(desc[a], k=1, p=np.inf, distance_upper_bound=tolerance)
            else:
                d, j = tree.query(desc[a], k=min(CONTROL_NEIGHBOURS, len(b)), p=np.inf,
                                  distance_upper_bound=tolerance)
                d, j = d.reshape(len(a), -1), j.reshape(len(a), -1)
                first = np.argmax(d > 0, axis=1)
                rows = np.arange(len(a))
                d, j = d[rows, first].copy(), j[rows, first]
                d[d == 0] = np.inf
            hit = np.isfinite(d)
            pa, pb = a[hit], b[j[hit]]
            row = {"composition": formula, "labels": [l1.item() if hasattr(l1, "item") else l1,
                                                      l2.item() if hasattr(l2, "item") else l2],
                   "control": bool(l1 == l2), **_summary(energy[pa] - energy[pb])}
            if tags is not None:
                row["tags"] = sorted(set(tags[sel][pa].tolist()) | set(tags[sel][pb].tolist()))
            out.append(row)
    return out
