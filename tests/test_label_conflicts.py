"""Label conflicts (ffpt_ase.analysis.label_conflicts): one geometry under two labels."""

import numpy as np
import pytest
from ase import units
from scipy.spatial.transform import Rotation

from ffpt_ase.analysis.label_conflicts import distance_descriptor, label_conflicts
from ffpt_ase.data import Frames

KJ = units.kJ / units.mol
HO2 = np.array([[0.0, 0.0, 0.0], [1.33, 0.0, 0.0], [-0.25, 0.94, 0.0]])   # O, O, H
NUMBERS = np.array([8, 8, 1])


def _moved(positions, seed):
    """A rotated, translated copy with the two O atoms swapped."""
    r = Rotation.random(random_state=seed).as_matrix()
    return (positions[[1, 0, 2]] @ r.T) + np.array([0.3, -1.2, 2.0])


def test_descriptor_is_invariant_and_tells_geometries_apart():
    d0 = distance_descriptor(HO2[None], NUMBERS)
    moved = distance_descriptor(_moved(HO2, 0)[None], NUMBERS[[1, 0, 2]])
    assert d0.shape == (1, 3)
    # element pairs in order H-O (two, sorted), O-O
    np.testing.assert_allclose(d0[0], [0.97268, 1.83848, 1.33], atol=1e-5)
    np.testing.assert_allclose(moved, d0, atol=1e-12)
    other = HO2.copy()
    other[2, 1] += 0.05
    assert np.abs(distance_descriptor(other[None], NUMBERS) - d0).max() > 0.04
    with pytest.raises(ValueError, match="positions must be"):
        distance_descriptor(HO2, NUMBERS)


def _frames():
    near = HO2.copy()
    near[2, 0] -= 0.003                      # within 0.01 A of HO2 in every distance
    far = HO2.copy()
    far[2] += [0.0, 1.0, 0.0]
    hoo = Frames(positions=[HO2, _moved(HO2, 1), near, far, HO2],
                 numbers=[NUMBERS, NUMBERS[[1, 0, 2]], NUMBERS, NUMBERS, NUMBERS],
                 energy=[0.0, 1.0, 0.01, 5.0, 0.0])
    h2 = Frames(positions=[[[0, 0, 0], [0.74, 0, 0]]] * 2, numbers=[1, 1], energy=[0.0, 2.0])
    return Frames.concatenate([hoo, h2]), np.array([2, 4, 2, 4, 2, 1, 1]), \
        np.array(["a", "b", "a", "b", "a", "c", "c"])


def test_conflicts_floor_and_control():
    frames, labels, tags = _frames()
    rows = {(r["composition"], tuple(r["labels"])): r
            for r in label_conflicts(frames, labels, tolerance=0.01, tags=tags)}
    # H2 has one label only: no row; HO2 has 2-2, 2-4, 4-4
    assert set(rows) == {("HO2", (2, 2)), ("HO2", (2, 4)), ("HO2", (4, 4))}
    cross = rows[("HO2", (2, 4))]
    # frames 0, 2, 4 (label 2) all match frame 1 (label 4, same geometry, E = 1 eV)
    assert not cross["control"] and cross["pairs"] == 3 and cross["tags"] == ["a", "b"]
    de = np.array([1.0, 0.99, 1.0]) / KJ
    assert cross["median_abs_kJ_per_mol"] == pytest.approx(1.0 / KJ)
    assert cross["max_abs_kJ_per_mol"] == pytest.approx(1.0 / KJ)
    assert cross["spin_blind_floor_kJ_per_mol"] == pytest.approx(de.mean() / 2)
    # control: the repeated frame 4 (a copy of frame 0) is skipped, so 0 and 4 match the
    # nearby frame 2 (0.01 eV apart), and frame 2 matches 0 or 4
    control = rows[("HO2", (2, 2))]
    assert control["control"] and control["pairs"] == 3
    assert control["max_abs_kJ_per_mol"] == pytest.approx(0.01 / KJ)
    # the far label-4 frame has no partner within the tolerance
    assert rows[("HO2", (4, 4))]["pairs"] == 0


def test_tolerance_decides_what_is_the_same_geometry():
    frames, labels, _ = _frames()
    tight = {tuple(r["labels"]): r for r in label_conflicts(frames, labels, tolerance=0.001)}
    assert tight[(2, 4)]["pairs"] == 2            # frame 2 (0.003 A off) no longer matches
    assert tight[(2, 2)]["pairs"] == 0            # and only exact repeats were left


def test_bad_arguments():
    frames, labels, _ = _frames()
    with pytest.raises(ValueError, match="tolerance must be > 0"):
        label_conflicts(frames, labels, tolerance=0.0)
    with pytest.raises(ValueError, match="6 labels for 7 frames"):
        label_conflicts(frames, labels[:6])
