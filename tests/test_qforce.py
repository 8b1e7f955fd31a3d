"""Q-Force teacher: functional form, shipped parameters, fragments and error messages."""

import json

import numpy as np
import pytest
from ase import Atoms, units

from ffpt_ase.forcefields.qforce import (MissingParameterError, QForceCalculator,
                                         QForceParameters, default_parameter_path)
from ffpt_ase.sampling import relax
from ffpt_ase.systems import get_system

KJMOL = units.kJ / units.mol


@pytest.fixture(scope="module")
def params():
    return QForceParameters.load()


def test_shipped_file_covers_all_species_and_declares_units(params):
    assert set(params.species) == {"H2", "O2", "HO", "H2O", "HO2", "H2O2"}
    assert set(params.species["HO2"]["bonds"]) == {"H-O", "O-O"}
    assert len(params.species["H2O2"]["dihedrals"]["H-O-O-H"]) == 4
    assert params.provenance["generated_by"] == "ffpt-ase parametrize qforce"


def test_morse_minimum_depth_and_curvature_equal_D_and_k(params):
    """E(r0) = -D and d2E/dr2(r0) = k_r: the reading a = sqrt(k_r / 2D) of the exponent."""
    D, k, r0 = params.species["H2"]["bonds"]["H-H"]
    calc = QForceCalculator(params)
    h = 1e-4
    pos = np.zeros((3, 2, 3))
    pos[:, 1, 2] = [r0 - h, r0, r0 + h]
    e, _ = calc.evaluate_batch(pos, numbers=[1, 1])
    assert e[1] == pytest.approx(-D, rel=1e-12)
    assert (e[0] - 2 * e[1] + e[2]) / h**2 == pytest.approx(k, rel=1e-5)
    # the file stores kJ/mol and nm; check the conversion on the raw number
    raw = json.loads(default_parameter_path().read_text())
    assert D == pytest.approx(raw["species"]["H2"]["bonds"]["H-H"]["D"] * KJMOL)
    assert r0 == pytest.approx(raw["species"]["H2"]["bonds"]["H-H"]["r0"] * 10.0)


def test_dissociated_bond_goes_to_zero():
    calc, ref, _ = get_system("O2")
    pos = np.array([[[0, 0, 0], [0, 0, 30.0]]])
    calc.bind(ref)
    e, f = calc.evaluate_batch(pos)
    assert abs(e[0]) < 1e-8 and np.abs(f).max() < 1e-8


def test_single_atoms_have_zero_energy():
    for s in ("H", "O"):
        calc, ref, _ = get_system(s)
        atoms = ref.copy()
        atoms.calc = calc
        assert atoms.get_potential_energy() == 0.0
        assert np.all(atoms.get_forces() == 0.0)


def test_fragments_are_independent_and_additive():
    calc_ho2, ho2, _ = get_system("HO2")
    ho2 = relax(ho2, calc_ho2)
    e_ho2 = calc_ho2.evaluate_batch(ho2.positions[None])[0][0]
    # HO2 + H far away, and two HO2 side by side
    complex_ = ho2 + Atoms("H", positions=[ho2.positions.mean(0) + [0, 0, 3.0]])
    dimer = ho2 + ho2.copy()
    dimer.positions[3:] += [0, 0, 3.5]
    for system, expected, n_frag in ((complex_, e_ho2, 2), (dimer, 2 * e_ho2, 2)):
        calc = QForceCalculator()
        system.calc = calc
        assert system.get_potential_energy() == pytest.approx(expected, abs=1e-10)
        assert len(calc.topology.fragments) == n_frag


def test_topology_is_fixed_after_first_geometry():
    """Non-reactive: pulling the H of HO2 away keeps the O-H bond term (energy rises to
    the dissociation limit) instead of re-perceiving an O2 + H system."""
    calc, ref, _ = get_system("HO2")
    ref = relax(ref, calc)
    atoms = ref.copy()
    atoms.calc = calc
    e0 = atoms.get_potential_energy()
    h = int(np.nonzero(atoms.numbers == 1)[0][0])
    atoms.positions[h] += [0, 0, 8.0]
    e_far = atoms.get_potential_energy()
    d_oh = calc.parameters.species["HO2"]["bonds"]["H-O"][0]
    assert e_far > e0 + 0.9 * d_oh
    assert len(calc.topology.bonds) == 2


def test_explicit_bonds_override_perception():
    calc = QForceCalculator(bonds=[(0, 1)])
    atoms = Atoms("HH", positions=[[0, 0, 0], [0, 0, 2.5]])  # too far to be perceived
    atoms.calc = calc
    assert atoms.get_potential_energy() < 0.0


def test_unknown_species_error_names_it():
    atoms = Atoms("HHH", positions=[[0, 0, 0], [0, 0, 0.74], [0, 0, 1.48]])
    atoms.calc = QForceCalculator()
    with pytest.raises(MissingParameterError, match="H3"):
        atoms.get_potential_energy()
    carbon = Atoms("CO", positions=[[0, 0, 0], [0, 0, 1.13]])
    carbon.calc = QForceCalculator()
    with pytest.raises(MissingParameterError, match="CO"):
        carbon.get_potential_energy()


def test_missing_term_error_names_it(tmp_path, params):
    raw = json.loads(default_parameter_path().read_text())
    del raw["species"]["HO2"]["angles"]["H-O-O"]
    path = tmp_path / "p.json"
    path.write_text(json.dumps(raw))
    calc, ref, _ = get_system("HO2", parameters=str(path))
    with pytest.raises(MissingParameterError, match="angle parameters for H-O-O in species HO2"):
        calc.bind(ref)


def test_changed_atoms_are_rejected():
    calc, ref, _ = get_system("H2O")
    calc.bind(ref)
    with pytest.raises(ValueError, match="atomic numbers"):
        calc.evaluate_batch(ref.positions[None], numbers=[8, 1, 8])


@pytest.mark.parametrize("content, match", [
    ("{not json", "malformed"),
    (json.dumps({"species": {}}), "malformed"),
    (json.dumps({"units": {"distance": "A", "energy": "eV", "angle": "rad"}, "species": {}}),
     "units must be nm"),
    (json.dumps({"units": {"distance": "nm", "energy": "kJ/mol", "angle": "rad"},
                 "species": {"H2": {"bonds": {"H-H": {"D": -1, "k": 1, "r0": 0.07}}}}}),
     "positive"),
])
def test_malformed_parameter_file(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        QForceParameters.load(path)
