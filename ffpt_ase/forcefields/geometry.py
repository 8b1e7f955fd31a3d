"""Internal coordinates and their Cartesian gradients, vectorized over frames and terms.

Every function takes ``positions`` of shape ``(frames, atoms, 3)`` in Angstrom and an
integer index array of shape ``(terms, m)`` (m = 2, 3 or 4 atoms per term) and returns

* ``value``: shape ``(frames, terms)``; distances in Angstrom, angles in radians;
* ``grad``: shape ``(frames, terms, m, 3)``, the derivative of each value with respect to
  the Cartesian position of each of its ``m`` atoms.

Energies of the form ``E(q)`` then give forces ``-dE/dq * grad`` that
:func:`scatter_forces` adds onto atoms. No Python loop runs over frames.
"""

from __future__ import annotations

import numpy as np

_TINY = 1e-12


def distances(positions: np.ndarray, idx: np.ndarray):
    """Bond lengths r_ij = |x_j - x_i| and their gradients."""
    d = positions[:, idx[:, 1]] - positions[:, idx[:, 0]]
    r = np.sqrt(np.einsum("ftk,ftk->ft", d, d))
    u = d / np.maximum(r, _TINY)[..., None]
    grad = np.stack([-u, u], axis=2)
    return r, grad


def angles(positions: np.ndarray, idx: np.ndarray):
    """Bond angles theta_ijk (j is the apex) in [0, pi] and their gradients.

    The angle is computed with ``atan2(|a x b|, a . b)``, accurate at 0 and pi. The gradient
    is singular for exactly linear geometries; there ``sin(theta)`` is floored at 1e-8.
    """
    a = positions[:, idx[:, 0]] - positions[:, idx[:, 1]]
    b = positions[:, idx[:, 2]] - positions[:, idx[:, 1]]
    ra = np.sqrt(np.einsum("ftk,ftk->ft", a, a))
    rb = np.sqrt(np.einsum("ftk,ftk->ft", b, b))
    cross = np.cross(a, b)
    sin_ab = np.sqrt(np.einsum("ftk,ftk->ft", cross, cross))
    cos_ab = np.einsum("ftk,ftk->ft", a, b)
    theta = np.arctan2(sin_ab, cos_ab)
    ua = a / np.maximum(ra, _TINY)[..., None]
    ub = b / np.maximum(rb, _TINY)[..., None]
    c = np.cos(theta)[..., None]
    s = np.maximum(np.sin(theta), 1e-8)[..., None]
    gi = (c * ua - ub) / (np.maximum(ra, _TINY)[..., None] * s)
    gk = (c * ub - ua) / (np.maximum(rb, _TINY)[..., None] * s)
    grad = np.stack([gi, -gi - gk, gk], axis=2)
    return theta, grad


def dihedrals(positions: np.ndarray, idx: np.ndarray):
    """Proper dihedral angles phi_ijkl in (-pi, pi] (IUPAC sign convention) and gradients.

    Uses the Blondel-Karplus form of the gradient, which has no 1/sin(phi) singularity; it is
    undefined only when three consecutive atoms are collinear (then the gradient is floored).
    """
    b1 = positions[:, idx[:, 1]] - positions[:, idx[:, 0]]
    b2 = positions[:, idx[:, 2]] - positions[:, idx[:, 1]]
    b3 = positions[:, idx[:, 3]] - positions[:, idx[:, 2]]
    m = np.cross(b1, b2)
    n = np.cross(b2, b3)
    nb2 = np.sqrt(np.einsum("ftk,ftk->ft", b2, b2))
    phi = np.arctan2(nb2 * np.einsum("ftk,ftk->ft", b1, n), np.einsum("ftk,ftk->ft", m, n))
    mm = np.maximum(np.einsum("ftk,ftk->ft", m, m), _TINY)
    nn = np.maximum(np.einsum("ftk,ftk->ft", n, n), _TINY)
    g1 = -(nb2 / mm)[..., None] * m
    g4 = (nb2 / nn)[..., None] * n
    nb2sq = np.maximum(nb2 * nb2, _TINY)
    p = (np.einsum("ftk,ftk->ft", b1, b2) / nb2sq)[..., None]
    q = (np.einsum("ftk,ftk->ft", b3, b2) / nb2sq)[..., None]
    g2 = -(p + 1.0) * g1 + q * g4
    g3 = -(q + 1.0) * g4 + p * g1
    grad = np.stack([g1, g2, g3, g4], axis=2)
    return phi, grad


def scatter_forces(n_atoms: int, idx: np.ndarray, dE_dq: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """Forces ``-sum_t dE/dq_t * dq_t/dx`` of shape (frames, atoms, 3).

    ``idx`` (terms, m), ``dE_dq`` (frames, terms), ``grad`` (frames, terms, m, 3). The scatter
    is a dense matrix product with a (terms*m, atoms) incidence matrix, which is much faster
    than ``np.add.at`` for the small molecules this package labels.
    """
    n_terms, m = idx.shape
    incidence = np.zeros((n_terms * m, n_atoms))
    incidence[np.arange(n_terms * m), idx.reshape(-1)] = 1.0
    contrib = -(dE_dq[..., None, None] * grad).reshape(grad.shape[0], n_terms * m, 3)
    return np.einsum("fck,ca->fak", contrib, incidence)
