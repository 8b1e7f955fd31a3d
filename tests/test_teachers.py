"""Properties every classical teacher must have: forces = -grad E (finite differences, float64),
translation/rotation invariance, a minimum at the relaxed reference, and a batch path that
agrees with the single-frame ASE path."""

import numpy as np
import pytest
from ase.optimize import BFGS

from conftest import finite_difference_forces, random_rotation
from ffpt_ase.sampling import relax
from ffpt_ase.applications.systems import get_system

SYSTEMS = ["H2", "O2", "OH", "H2O", "HO2", "H2O2", "water", "aspirin"]


def _setup(name):
    calc, ref, _ = get_system(name)
    x0 = relax(ref, calc).positions
    return calc, ref, x0


@pytest.fixture(scope="module", params=SYSTEMS)
def teacher(request):
    return (request.param,) + _setup(request.param)


def _energy_fn(calc, ref):
    def f(p):
        return calc.evaluate_batch(p[None])[0][0]
    return f


def test_forces_match_finite_differences(teacher):
    name, calc, ref, x0 = teacher
    rng = np.random.default_rng(1)
    for _ in range(3):
        pos = x0 + 0.1 * rng.normal(size=x0.shape)
        _, f = calc.evaluate_batch(pos[None])
        fd = finite_difference_forces(_energy_fn(calc, ref), pos, h=1e-5)
        scale = max(1.0, np.abs(fd).max())
        assert np.abs(f[0] - fd).max() < 1e-5 * scale, name


def test_translation_and_rotation_invariance(teacher):
    name, calc, ref, x0 = teacher
    rng = np.random.default_rng(2)
    pos = x0 + 0.1 * rng.normal(size=x0.shape)
    rot = random_rotation(rng)
    moved = (pos - pos.mean(0)) @ rot.T + rng.normal(size=3) * 5.0
    e, f = calc.evaluate_batch(np.stack([pos, moved]))
    assert e[1] == pytest.approx(e[0], abs=1e-8 * max(1, abs(e[0])))
    np.testing.assert_allclose(f[1], f[0] @ rot.T, atol=1e-7 * max(1, np.abs(f).max()))


def test_reference_is_a_minimum(teacher):
    name, calc, ref, x0 = teacher
    e0, f0 = calc.evaluate_batch(x0[None])
    assert np.abs(f0).max() < 1e-3, name
    rng = np.random.default_rng(3)
    disp = 0.01 * rng.normal(size=(50,) + x0.shape)
    e, _ = calc.evaluate_batch(x0[None] + disp)
    assert (e >= e0[0] - 1e-9).all(), name


def test_batch_path_equals_ase_path(teacher):
    name, calc, ref, x0 = teacher
    rng = np.random.default_rng(4)
    pos = x0 + 0.2 * rng.normal(size=(4,) + x0.shape)
    e, f = calc.evaluate_batch(pos)
    atoms = ref.copy()
    atoms.calc = calc
    for i in range(4):
        atoms.positions = pos[i]
        assert atoms.get_potential_energy() == pytest.approx(e[i], rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(atoms.get_forces(), f[i], rtol=1e-12, atol=1e-12)


def test_nan_coordinates_are_rejected(teacher):
    name, calc, ref, x0 = teacher
    bad = x0.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        calc.evaluate_batch(bad[None])


def test_ase_optimizer_reaches_same_minimum():
    calc, ref, x0 = _setup("HO2")
    atoms = ref.copy()
    atoms.rattle(0.05, seed=3)
    atoms.calc = calc
    BFGS(atoms, logfile=None).run(fmax=1e-5)
    e_min = calc.evaluate_batch(x0[None])[0][0]
    assert atoms.get_potential_energy() == pytest.approx(e_min, abs=1e-8)


def test_angle_scan_of_water_follows_the_tip3p_angle_term():
    from ffpt_ase.analysis.scans import angle_scan, angle_scan_geometries
    from ffpt_ase.forcefields.tip3p import KTHETA_CHARMM, THETA0

    calc, ref, x0 = _setup("water")
    mono = ref.copy()
    mono.positions = x0
    o = int(np.nonzero(mono.numbers == 8)[0][0])
    h1, h2 = (int(i) for i in np.nonzero(mono.numbers == 1)[0])
    angles = np.array([60.0, 104.52, 150.0, 180.0])
    pos = angle_scan_geometries(mono, h1, o, h2, angles)
    for p, theta in zip(pos, angles):
        a = mono.copy()
        a.positions = p
        assert a.get_angle(h1, o, h2) == pytest.approx(theta, abs=1e-6)
        assert a.get_distance(o, h2) == pytest.approx(mono.get_distance(o, h2), abs=1e-12)
        np.testing.assert_array_equal(p[[o, h1]], x0[[o, h1]])
    e = angle_scan(calc, mono, h1, o, h2, angles)
    expected = KTHETA_CHARMM * (np.radians(angles) - THETA0) ** 2
    np.testing.assert_allclose(e - e[1], expected - expected[1], atol=1e-9)


def test_settings_are_a_plain_ase_dictionary(teacher):
    """ASE's contract: ``parameters`` holds the settings and ``todict()`` gives them as
    plain JSON-able values (run fingerprints and ASE's own file writers rely on it)."""
    import json
    name, calc, ref, x0 = teacher
    settings = calc.todict()
    assert isinstance(settings, dict)
    json.dumps(settings, default=str)
    if name in ("H2", "O2", "OH", "H2O", "HO2", "H2O2"):
        assert settings["parameters"].endswith(".json")  # the Q-Force table's source
