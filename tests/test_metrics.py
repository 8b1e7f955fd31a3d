"""Per-frame errors: the worst frames of a set, found and described."""

import numpy as np
import pytest
from ase import Atoms

from ffpt_ase.data.frames import Frames
from ffpt_ase.training.metrics import (force_error_concentration,
                                      format_worst_frames, frame_force_rmse, grouped_errors,
                                      worst_frames)


def _frames():
    """Three padded molecular frames with known geometry, and one periodic pair whose
    closest contact is 1.0 A only through the cell boundary."""
    rng = np.random.default_rng(0)
    images = [Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]),
              Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]),
              Atoms("O2", positions=[[0, 0, 0], [0, 0, 1.21]]),
              Atoms("H2", positions=[[0.5, 5, 5], [9.5, 5, 5]], cell=[10, 10, 10], pbc=False)]
    for a in images:
        a.info["energy"] = float(rng.normal())
        a.arrays["forces"] = rng.normal(size=(len(a), 3))
    molecular = Frames.from_atoms_list(images[:3])
    molecular.extras["reaction"] = np.array(["05", "08", "06b"])
    periodic = images[3].copy()
    periodic.pbc = True
    periodic.info["energy"] = 0.0
    periodic.arrays["forces"] = np.zeros((2, 3))
    return molecular, Frames.from_atoms_list([periodic])


def test_worst_frames_ranked_with_shares_contacts_and_extras():
    frames, _ = _frames()
    f_pred = frames.forces.copy()
    real = frames.numbers_per_frame > 0
    f_pred[1][real[1]] += 2.0       # water: every component 2 eV/A off
    f_pred[2][real[2]] += 0.5       # O2: 0.5 eV/A off
    e_pred = frames.energy + np.array([0.0, 0.3, -0.1])
    rmse = frame_force_rmse(frames, f_pred)
    np.testing.assert_allclose(rmse, [0.0, 2.0, 0.5], atol=1e-12)
    rows = worst_frames(frames, e_pred, f_pred, 2)
    assert [r["index"] for r in rows] == [1, 2]
    water, o2 = rows
    assert water["formula"] == "H2O" and water["reaction"] == "08"
    assert water["closest_contact"] == pytest.approx(0.96)
    assert o2["closest_contact"] == pytest.approx(1.21)
    assert water["energy_error"] == pytest.approx(0.3)
    assert water["max_force_error"] == pytest.approx(2.0)
    # squared errors: water 9 components x 4, O2 6 x 0.25: shares 36/37.5 and 1.5/37.5
    assert water["share_of_force_sse"] == pytest.approx(36 / 37.5)
    assert o2["share_of_force_sse"] == pytest.approx(1.5 / 37.5)
    assert worst_frames(frames, e_pred, f_pred, 0) == []
    assert len(worst_frames(frames, e_pred, f_pred, 10)) == 3   # capped at the set's size
    text = format_worst_frames(rows).splitlines()
    assert len(text) == 3 and "reaction" in text[0] and "96.0 %" in text[1]
    with pytest.raises(ValueError, match=">= 0"):
        worst_frames(frames, e_pred, f_pred, -1)
    # the worst third of the frames (one) carries the water frame's share
    assert force_error_concentration(frames, f_pred, 1 / 3) == pytest.approx(36 / 37.5)
    assert force_error_concentration(frames, f_pred, 0.01) == pytest.approx(36 / 37.5)
    assert force_error_concentration(frames, f_pred, 1.0) == pytest.approx(1.0)
    assert force_error_concentration(frames, frames.forces, 0.5) == 0.0
    with pytest.raises(ValueError, match="fraction"):
        force_error_concentration(frames, f_pred, 0.0)
    # padding rows never count, whatever they hold; a non-finite prediction is an error
    padded = f_pred.copy()
    padded[~real] = 1e6
    np.testing.assert_allclose(frame_force_rmse(frames, padded), [0.0, 2.0, 0.5], atol=1e-12)
    assert worst_frames(frames, e_pred, padded, 1)[0]["max_force_error"] == pytest.approx(2.0)
    padded[2, 0, 0] = np.nan
    with pytest.raises(FloatingPointError, match="1 of 3 frames"):
        worst_frames(frames, e_pred, padded, 1)
    # an extra named like one of the row's fields does not replace it
    frames.extras["index"] = np.array([7, 8, 9])
    row = worst_frames(frames, e_pred, f_pred, 1)[0]
    assert row["index"] == 1 and row["extra_index"] == 8


def test_worst_frames_closest_contact_uses_the_minimum_image():
    _, periodic = _frames()
    f_pred = periodic.forces + 1.0
    (row,) = worst_frames(periodic, periodic.energy, f_pred, 1)
    assert row["closest_contact"] == pytest.approx(1.0)    # 9 A inside the cell
    assert row["share_of_force_sse"] == pytest.approx(1.0)


def test_grouped_errors_are_each_groups_own_metrics():
    frames, _ = _frames()
    frames.extras["reaction"] = np.array(["06", "08", "06"])
    f_pred = frames.forces + 0.1 * np.arange(3)[:, None, None]
    e_pred = frames.energy + np.array([0.2, -0.4, 0.6])
    groups = grouped_errors(frames, e_pred, f_pred, "reaction")
    assert list(groups) == ["06", "08"]
    assert groups["06"]["energy_mae"] == pytest.approx(0.4)       # (0.2 + 0.6) / 2
    assert groups["08"]["forces_mae"] == pytest.approx(0.1)
    # H2 (2 atoms, padded to 3) is 0 off, O2 (2 atoms) 0.2 off in every component: the
    # padding row, 0.2 off as well, counts in neither the sum nor the denominator
    assert groups["06"]["forces_rmse"] == pytest.approx(np.sqrt(6 * 0.04 / 12))
    assert groups["06"]["n_frames"] == 2 and groups["08"]["n_frames"] == 1
    frames.extras["reaction"] = np.array([b"06", b"08", b"06"])     # bytes read as text
    assert list(grouped_errors(frames, e_pred, f_pred, "reaction")) == ["06", "08"]
    frames.extras["reaction"] = np.array([1.0, np.nan, 1.0])
    with pytest.raises(ValueError, match="non-finite"):
        grouped_errors(frames, e_pred, f_pred, "reaction")
    with pytest.raises(ValueError, match="no per-frame 'channel'.*reaction"):
        grouped_errors(frames, e_pred, f_pred, "channel")
