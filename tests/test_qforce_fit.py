"""The Q-Force parametrization procedure and the PySCF calculator it runs on."""

import numpy as np
import pytest
from ase import Atoms, units

from conftest import finite_difference_forces
from ffpt_ase.forcefields.qforce import QForceCalculator, QForceParameters
from ffpt_ase.forcefields.qforce_fit import (fit_force_constants, fit_torsion,
                                             partition_well_depths, write_parameters)
from ffpt_ase.sampling import relax
from ffpt_ase.applications.systems import get_system


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
    table = calc.table.species[species]
    for (kind, label, _), k in zip(kinds, k_fit):
        expected = table[kind][label][1] if kind == "bonds" else table[kind][label][0]
        assert k == pytest.approx(expected, rel=1e-4), (kind, label)


TABLE1_LABELS = {"H2": ["H-H"], "HO": ["H-O"], "O2": ["O-O"], "H2O": ["H-O", "H-O"],
                 "HO2": ["H-O", "O-O"], "H2O2": ["H-O", "H-O", "O-O"]}


def test_partition_reproduces_table_1_from_atomization_energies():
    """The rule, given the data set's atomization energies (kJ/mol), returns Table 1's D."""
    ae = {"H2": 450.529259, "HO": 441.538052, "O2": 529.522227, "H2O": 952.678682,
          "HO2": 748.030138, "H2O2": 1117.90849}
    d = partition_well_depths(TABLE1_LABELS, ae)
    table1 = QForceParameters.load("table1").species
    for species, labels in d.items():
        for label, value in labels.items():
            assert value * units.kJ / units.mol == pytest.approx(
                table1[species]["bonds"][label][0], abs=1e-8), (species, label)
    # an offset (torsion energy at the minimum) goes to the heavy-atom bond
    assert partition_well_depths(TABLE1_LABELS, ae, {"H2O2": -5.0})["H2O2"]["O-O"] == \
        pytest.approx(234.83239 - 5.0, abs=1e-4)


def test_partition_refuses_ambiguous_species():
    with pytest.raises(ValueError, match="C-H radical"):
        partition_well_depths({"CH4": ["C-H"] * 3 + ["C-O"], "HO": ["H-O"]},
                              {"CH4": 1.0, "HO": 1.0})
    with pytest.raises(ValueError, match="exactly one"):
        partition_well_depths({"X": ["H-O", "C-O", "O-O"], "HO": ["H-O"]}, {"X": 3, "HO": 1})


pyscf = pytest.importorskip("pyscf", reason="PySCF not installed (extra 'abinitio')")


@pytest.mark.slow
def test_parametrize_qforce_aligns_energy_zeros_with_its_level(tmp_path):
    """`parametrize qforce` at a cheap level: every species' force-field minimum sits at minus
    its atomization energy at that level, so reaction energies are that level's (~45 s)."""
    path = tmp_path / "q.json"
    data = write_parameters(path, xc="b3lyp", basis="sto-3g", fmax=0.01,
                            torsion_step_deg=60.0)
    e_dft = data["provenance"]["species_energies_eV"]
    params = QForceParameters.load(path)
    teacher = {"H": 0.0, "O": 0.0}
    for species in params.species:
        ref = params.reference(species)
        calc = QForceCalculator(params)
        atoms = relax(ref, calc, fmax=1e-6)
        teacher[species] = calc.evaluate_batch(atoms.positions[None], atoms.numbers)[0][0]
        ae = sum(e_dft[s] for s in ref.get_chemical_symbols()) - e_dft[species]
        assert teacher[species] == pytest.approx(-ae, abs=2e-4), species  # < 0.02 kJ/mol
    dft = {s: e - sum(e_dft[a] for a in Atoms(s).get_chemical_symbols()) if len(s) > 1 else 0.0
           for s, e in e_dft.items()}
    for left, right in ((["HO2"], ["H", "O2"]), (["H2O2"], ["HO", "HO"]),
                        (["H2", "HO"], ["H2O", "H"])):
        assert sum(teacher[s] for s in right) - sum(teacher[s] for s in left) == \
            pytest.approx(sum(dft[s] for s in right) - sum(dft[s] for s in left), abs=5e-4)


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
