"""Internal coordinates (values and analytic gradients) and topology perception."""

import numpy as np
import pytest

from ffpt_ase.forcefields import geometry as g
from ffpt_ase.forcefields.topology import canonical_label, hill_formula, perceive

RNG = np.random.default_rng(0)
X = RNG.normal(size=(6, 4, 3))
CASES = [(g.distances, np.array([[0, 1], [2, 3]])),
         (g.angles, np.array([[0, 1, 2], [1, 2, 3]])),
         (g.dihedrals, np.array([[0, 1, 2, 3], [3, 2, 1, 0]]))]


@pytest.mark.parametrize("fn, idx", CASES, ids=["distance", "angle", "dihedral"])
def test_gradients_match_finite_differences(fn, idx):
    _, grad = fn(X, idx)
    h = 1e-6
    for a in range(4):
        for k in range(3):
            xp, xm = X.copy(), X.copy()
            xp[:, a, k] += h
            xm[:, a, k] -= h
            num = (fn(xp, idx)[0] - fn(xm, idx)[0]) / (2 * h)
            ana = sum(np.where((idx[:, j] == a)[None], grad[:, :, j, k], 0.0)
                      for j in range(idx.shape[1]))
            np.testing.assert_allclose(ana, num, atol=1e-7)


def test_known_values():
    pos = np.array([[[1.0, 0, 0], [0, 0, 0], [0, 1.0, 0], [0, 1.0, 1.0]]])
    assert g.distances(pos, np.array([[0, 1]]))[0][0, 0] == pytest.approx(1.0)
    assert g.angles(pos, np.array([[0, 1, 2]]))[0][0, 0] == pytest.approx(np.pi / 2)
    # IUPAC: looking along 1->2, atom 0 on +x and atom 3 on +z: -90 degrees
    assert g.dihedrals(pos, np.array([[0, 1, 2, 3]]))[0][0, 0] == pytest.approx(-np.pi / 2)
    cis = np.array([[[1.0, 0, 0], [0, 0, 0], [0, 1.0, 0], [1.0, 1.0, 0]]])
    trans = np.array([[[1.0, 0, 0], [0, 0, 0], [0, 1.0, 0], [-1.0, 1.0, 0]]])
    assert g.dihedrals(cis, np.array([[0, 1, 2, 3]]))[0][0, 0] == pytest.approx(0.0)
    assert abs(g.dihedrals(trans, np.array([[0, 1, 2, 3]]))[0][0, 0]) == pytest.approx(np.pi)


def test_linear_angle_is_finite():
    pos = np.array([[[0, 0, 0], [1.0, 0, 0], [2.0, 0, 0]]])
    th, grad = g.angles(pos, np.array([[0, 1, 2]]))
    assert th[0, 0] == pytest.approx(np.pi) and np.isfinite(grad).all()


def test_perceive_h2o2_and_fragments():
    pos = [[0, 0, 0], [1.45, 0, 0], [-0.3, 0.9, 0.3], [1.75, 0.3, 0.85], [5, 5, 5]]
    topo = perceive([8, 8, 1, 1, 1], pos)
    assert topo.bonds.tolist() == [[0, 1], [0, 2], [1, 3]]
    assert len(topo.angles) == 2 and topo.dihedrals.tolist() == [[2, 0, 1, 3]]
    assert topo.fragment_formulas() == ["H2O2", "H"]


def test_labels_and_formulas():
    assert hill_formula(["O", "O", "H"]) == "HO2"
    assert hill_formula(["C", "O", "H", "H", "H", "H"]) == "CH4O"
    assert canonical_label(["O", "O", "H"]) == canonical_label(["H", "O", "O"]) == "H-O-O"
