"""Rattling sampler: statistics, reproducibility, resume, non-finite labels."""

import numpy as np
import pytest

from ffpt_ase.forcefields.base import BatchForceField
from ffpt_ase.applications.systems import sample_system
from ffpt_ase.sampling import BLOCK, RattleSampler
from ffpt_ase.applications.systems import get_system


def _sampler(system="HO2", **kw):
    calc, ref, t = get_system(system)
    return RattleSampler(calc, ref, teacher_name=t, system_name=system, **kw)


def test_displacement_statistics():
    s = _sampler(sigma=0.2, seed=5)
    frames = s.sample(20000, show_progress=False)
    disp = frames.positions - s.x0[None]
    # 20000 * 9 Gaussian numbers: mean within 5 standard errors, sigma within 1 %
    assert abs(disp.mean()) < 5 * 0.2 / np.sqrt(disp.size)
    assert disp.std() == pytest.approx(0.2, rel=0.01)
    # per component, no rescaling: kurtosis of a Gaussian
    assert ((disp / 0.2) ** 4).mean() == pytest.approx(3.0, rel=0.05)
    # mean |displacement| per atom of a 3D Gaussian: sigma * sqrt(8/pi)
    assert np.linalg.norm(disp, axis=-1).mean() == pytest.approx(0.2 * np.sqrt(8 / np.pi), rel=0.01)
    assert frames.metadata["sigma_angstrom"] == 0.2 and frames.metadata["seed"] == 5


def test_labels_are_the_teachers():
    s = _sampler()
    frames = s.sample(500, show_progress=False)
    e, f = s.teacher.evaluate_batch(frames.positions)
    np.testing.assert_array_equal(frames.energy, e)
    np.testing.assert_array_equal(frames.forces, f)


def test_reference_is_relaxed_by_teacher():
    s = _sampler("H2O2")
    _, f = s.teacher.evaluate_batch(s.x0[None])
    assert np.abs(f).max() < 1e-3


def test_reproducible_and_independent_of_batch_size():
    a = _sampler(seed=3).sample(2500, batch_size=1000, show_progress=False)
    b = _sampler(seed=3).sample(2500, batch_size=20000, show_progress=False)
    c = _sampler(seed=4).sample(2500, show_progress=False)
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.energy, b.energy)
    assert not np.allclose(a.positions, c.positions)
    assert len(a) == 2500


def test_resume_from_checkpoint_gives_identical_frames(tmp_path):
    ck = tmp_path / "run.partial.npz"
    full = _sampler(seed=1).sample(3 * BLOCK, show_progress=False)
    # an interrupted run: only the first block was finished and saved
    _sampler(seed=1).sample(BLOCK, batch_size=BLOCK, show_progress=False, checkpoint=ck)
    assert ck.exists()
    resumed = _sampler(seed=1).sample(3 * BLOCK, batch_size=BLOCK, show_progress=False,
                                      checkpoint=ck)
    np.testing.assert_array_equal(resumed.positions, full.positions)
    np.testing.assert_array_equal(resumed.forces, full.forces)
    with pytest.raises(ValueError, match="another sampling run"):
        _sampler(seed=2).sample(3 * BLOCK, show_progress=False, checkpoint=ck)


class _FlakyTeacher(BatchForceField):
    """Harmonic well that returns NaN labels for frames with x[0, 0] > 0.3."""

    def _setup(self, atoms):
        pass

    def _evaluate(self, pos):
        e = 0.5 * (pos**2).sum(axis=(1, 2))
        f = -pos.copy()
        bad = pos[:, 0, 0] > 0.3
        e[bad] = np.nan
        return e, f


def test_nonfinite_labels_are_dropped_and_reported(caplog):
    from ase import Atoms
    sampler = RattleSampler(_FlakyTeacher(), Atoms("H2", positions=[[0, 0, 0], [0, 0, 0]]),
                            relax=False, sigma=0.2)
    frames = sampler.sample(1000, show_progress=False)
    n_bad = frames.metadata["dropped_nonfinite"]
    assert 40 < n_bad < 100  # P(N(0, 0.2) > 0.3) = 6.7 % of 1000 frames
    assert len(frames) == 1000 - n_bad and np.isfinite(frames.energy).all()
    assert "non-finite" in caplog.text


@pytest.mark.parametrize("kw, match", [({"sigma": -0.1}, "sigma"), ({"sigma": np.nan}, "sigma")])
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        _sampler(**kw)
    with pytest.raises(ValueError, match="positive"):
        _sampler().sample(0)


def test_unknown_system_and_wrong_teacher():
    with pytest.raises(ValueError, match="unknown system"):
        sample_system("HO3", 10)
    with pytest.raises(ValueError, match="uses the 'qforce' teacher"):
        sample_system("HO2", 10, teacher="tip3p")


def test_ab_initio_labels_resume_only_for_the_same_frames_and_method(tmp_path):
    """A labelling checkpoint is continued only by the same frames at the same level of
    theory; anything else is refused instead of mixing labels."""
    pytest.importorskip("pyscf", reason="PySCF not installed (extra 'abinitio')")
    from ase import Atoms

    from ffpt_ase.abinitio import PySCFCalculator, label_frames
    h2 = [Atoms("H2", positions=[[0, 0, 0], [0, 0, d]]) for d in (0.70, 0.75)]
    ck = tmp_path / "labels.partial.npz"
    first = label_frames(h2, PySCFCalculator(xc="b3lyp", basis="sto-3g"), checkpoint=ck,
                         show_progress=False)
    again = label_frames(h2, PySCFCalculator(xc="b3lyp", basis="sto-3g"), checkpoint=ck,
                         show_progress=False)  # everything is in the checkpoint already
    np.testing.assert_array_equal(again.energy, first.energy)
    with pytest.raises(ValueError, match="other frames or another level of theory"):
        label_frames(h2[::-1], PySCFCalculator(xc="b3lyp", basis="sto-3g"), checkpoint=ck,
                     show_progress=False)
    with pytest.raises(ValueError, match=r"method: 'b3lyp/sto-3g' -> 'b3lyp/6-31g'"):
        label_frames(h2, PySCFCalculator(xc="b3lyp", basis="6-31g"), checkpoint=ck,
                     show_progress=False)
