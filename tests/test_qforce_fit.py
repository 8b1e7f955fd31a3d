"""The Q-Force parametrization procedure and the PySCF calculator it runs on."""

import numpy as np
import pytest
from ase import Atoms

from conftest import finite_difference_forces
from ffpt_ase.forcefields.qforce_fit import fit_force_constants, fit_torsion
from ffpt_ase.sampling import relax
from ffpt_ase.systems import get_system


def test_fit_torsion_recovers_series():
    phi = np.deg2rad(np.arange(0, 360, 15.0))
    true = [(1.5, 1, 0.0), (0.7, 2, np.pi), (0.2, 3, 0.0), (0.05, 4, np.pi)]
    e = sum(k * (1 + np.cos(n * phi - p0)) for k, n, p0 in true)
    fitted = fit_torsion(phi, e - e.min())
    for (k, n, p0), (kf, nf, pf) in zip(true, fitted):
        assert (nf, kf) == (n, pytest.approx(k, abs=1e-10))
        assert pf == pytest.approx(p0)


@pytest.mark.parametrize("species", ["H2O", "HO2"])
def test_force_constants_recovered_from_teacher_hessian(species):
    """Fitting the Q-Force teacher's own Hessian must return its own k (closed loop)."""
    calc, ref, _ = get_system(species)
    atoms = relax(ref, calc, fmax=1e-7)
    x0 = atoms.positions
    n = len(atoms)
    hess = np.zeros((3 * n, 3 * n))
    h = 1e-4
    for a in range(n):
        for k in range(3):
            p, m = x0.copy(), x0.copy()
            p[a, k] += h
            m[a, k] -= h
            fp = calc.evaluate_batch(p[None])[1][0]
            fm = calc.evaluate_batch(m[None])[1][0]
            hess[3 * a + k] = -(fp - fm).reshape(-1) / (2 * h)
    kinds, k_fit = fit_force_constants(atoms, 0.5 * (hess + hess.T))
    table = calc.parameters.species[species]
    for (kind, label, _), k in zip(kinds, k_fit):
        expected = table[kind][label][1] if kind == "bonds" else table[kind][label][0]
        assert k == pytest.approx(expected, rel=1e-4), (kind, label)


pyscf = pytest.importorskip("pyscf", reason="PySCF not installed (extra 'abinitio')")


def test_pyscf_forces_are_energy_gradient():
    from ffpt_ase.abinitio import PySCFCalculator

    calc = PySCFCalculator(xc="b3lyp", basis="sto-3g", multiplicity=2)
    atoms = Atoms("OH", positions=[[0, 0, 0], [0.1, 0, 1.0]])
    atoms.calc = calc
    f = atoms.get_forces()

    def energy(p):
        a = atoms.copy()
        a.positions = p
        a.calc = calc
        return a.get_potential_energy()

    fd = finite_difference_forces(energy, atoms.positions, h=1e-4)
    np.testing.assert_allclose(f, fd, atol=2e-4)
    # Hessian is symmetric and translations are zero modes (up to the DFT grid error)
    hess = calc.hessian(atoms)
    np.testing.assert_allclose(hess, hess.T, atol=1e-6)
    assert np.abs(hess @ np.tile([1.0, 0, 0], 2)).max() < 1e-4 * np.abs(hess).max()
    # the Hessian's O-H stretch curvature agrees with finite differences of the forces
    d = atoms.positions[1] - atoms.positions[0]
    u = np.concatenate([-d, d]) / np.linalg.norm(d) / np.sqrt(2)
    fd_curv = (energy(atoms.positions + 1e-3 * u.reshape(2, 3)) - 2 * energy(atoms.positions)
               + energy(atoms.positions - 1e-3 * u.reshape(2, 3))) / 1e-6
    assert u @ hess @ u == pytest.approx(fd_curv, rel=1e-2)
