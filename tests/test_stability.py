"""MD stability harness criteria and runs, and liquid analysis (RDF, diffusion)."""

import json

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from conftest import water_box

from ffpt_ase.analysis.liquid import diffusion_coefficient, rdf, unwrap
from ffpt_ase.applications.systems import start_structure as load_structure
from ffpt_ase.simulate.stability import (StabilityConfig, StabilityCriteria,
                                         run_stability, survival_curve)
from ffpt_ase.applications.systems import get_system


def test_criteria_on_crafted_frames():
    ref = load_structure("HO2")
    crit = StabilityCriteria(ref)
    assert len(crit.bonds) == 2 and crit.check(ref) is None
    small = ref.copy()
    small.positions[2] += 0.3 * (small.positions[2] - small.positions[1]) / 0.98
    assert crit.check(small) is None  # +0.3 A is within the 0.5 A tolerance
    stretched = ref.copy()
    h, o = 2, int(crit.bonds[crit.bonds[:, 1] == 2][0, 0])
    u = (stretched.positions[h] - stretched.positions[o])
    stretched.positions[h] += 0.6 * u / np.linalg.norm(u)
    reason, info = crit.check(stretched)
    assert reason == "bond_deviation" and info["length_A"] == pytest.approx(
        info["reference_A"] + 0.6, abs=1e-6)
    folded = ref.copy()  # H moved next to the other O: a bond that was not there
    other = 1 - o
    folded.positions[h] = folded.positions[other] + [0, 0, 0.95]
    folded.positions[h] = folded.positions[o] + 0.9 * (folded.positions[h] - folded.positions[o]) / \
        np.linalg.norm(folded.positions[h] - folded.positions[o]) * 1.1
    # a new bond is recorded, and is a failure only when asked
    assert crit.new_bond(folded) is not None and crit.check(folded) is None
    strict = StabilityCriteria(ref, count_new_bonds=True)
    assert strict.check(folded)[0] == "new_bond"
    assert crit.check(ref, energy=np.nan)[0] == "nonfinite"


def test_reference_lengths_are_the_mean_over_reference_frames():
    ref = load_structure("HO2")
    h, o = 2, 0
    frames = []
    for dr in (0.2, 0.4):  # O-H stretched by 0.2 and 0.4 A: mean +0.3 A
        f = ref.copy()
        u = f.positions[h] - f.positions[o]
        f.positions[h] += dr * u / np.linalg.norm(u)
        frames.append(f)
    crit = StabilityCriteria(ref, reference_frames=frames)
    k = [tuple(b) for b in crit.bonds.tolist()].index((o, h))
    assert crit.ref_lengths[k] == pytest.approx(ref.get_distance(o, h) + 0.3, abs=1e-9)
    assert "mean over 2" in crit.reference_source
    # +0.7 A from the start structure is only +0.4 A from the frames' mean: no failure
    far = ref.copy()
    u = far.positions[h] - far.positions[o]
    far.positions[h] += 0.7 * u / np.linalg.norm(u)
    assert crit.check(far) is None and StabilityCriteria(ref).check(far)[0] == "bond_deviation"
    with pytest.raises(ValueError, match="other atoms"):
        StabilityCriteria(ref, reference_frames=[Atoms("H3", positions=np.zeros((3, 3)))])
    assert crit.check(ref, forces=np.full((3, 3), np.inf))[0] == "nonfinite"


def test_periodic_criteria_use_minimum_image():
    box = water_box()
    crit = StabilityCriteria(box)
    assert len(crit.bonds) == 6
    moved = box.copy()
    moved.positions[:3] += [6.0, 0, 0]  # a whole molecule shifted by a lattice vector
    assert crit.check(moved) is None


class Collapse(Calculator):
    """Pulls every atom towards the centre: trajectories must fail (new bonds)."""
    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        x = self.atoms.positions - self.atoms.positions.mean(0)
        self.results = {"energy": float(5.0 * (x ** 2).sum()), "forces": -10.0 * x}


def test_run_stability_stable_and_failing(tmp_path):
    calc, _, _ = get_system("HO2")
    cfg = StabilityConfig(system="HO2", trajectories=2, time_ps=0.05, output=str(tmp_path / "ok"))
    s = run_stability(cfg, calc=calc, start=load_structure("HO2"), show_progress=False)
    assert s["n_failed"] == 0 and s["fraction_stable"] == 1.0
    assert s["survival"]["fraction_surviving"][-1] == 1.0
    assert s["survival"]["time_ps"][-1] == pytest.approx(0.05)
    bad = StabilityConfig(system="H2O2", trajectories=3, time_ps=0.2, output=str(tmp_path / "bad"),
                          count_new_bonds=True)
    s = run_stability(bad, calc=Collapse(), start=load_structure("H2O2"), show_progress=False)
    assert s["n_failed"] == 3 and all(r["time_to_failure_ps"] < 0.2 for r in s["trajectories"])
    assert set(s["reasons"]) <= {"new_bond", "bond_deviation"}
    summary = json.loads((tmp_path / "bad" / "summary.json").read_text())
    failed = sorted(r["time_to_failure_ps"] for r in s["trajectories"])
    assert summary["time_to_failure_of_failed_ps"]["median"] == pytest.approx(failed[1])
    assert summary["time_to_failure_of_failed_ps"]["min"] == pytest.approx(failed[0])
    # rerun: finished trajectories are not repeated
    lines = (tmp_path / "bad" / "trajectories.jsonl").read_text().splitlines()
    run_stability(bad, calc=Collapse(), start=load_structure("H2O2"), show_progress=False)
    assert (tmp_path / "bad" / "trajectories.jsonl").read_text().splitlines() == lines


def test_survival_curve():
    res = [{"failed": True, "time_to_failure_ps": 1.0}, {"failed": False, "time_to_failure_ps": None}]
    t, s = survival_curve(res, 2.0, n_points=5)
    assert s.tolist() == [1.0, 1.0, 0.5, 0.5, 0.5]


def test_diffusion_of_random_walk_with_known_D():
    rng = np.random.default_rng(0)
    D = 0.25  # A^2/ps
    dt_fs = 10.0
    steps = rng.normal(size=(4000, 200, 3)) * np.sqrt(2 * D * dt_fs * 1e-3)
    pos = np.cumsum(steps, axis=0)
    res = diffusion_coefficient(pos, dt_fs, max_lag=400)
    assert res["D_A2_per_ps"] == pytest.approx(D, rel=0.05)
    cell = np.eye(3) * 10.0
    np.testing.assert_allclose(unwrap(pos[:50] % 10.0, cell) - (pos[:50] % 10.0)[:1],
                               pos[:50] - pos[:1], atol=1e-9)


def test_rdf_of_ideal_gas_is_one():
    rng = np.random.default_rng(1)
    images = [Atoms("O300", positions=rng.uniform(0, 12, (300, 3)), cell=np.eye(3) * 12,
                    pbc=True) for _ in range(20)]
    r, g = rdf(images, 8, 8, r_max=5.5, n_bins=11)
    assert np.abs(g[2:] - 1).max() < 0.1


def test_rdf_criterion_flags_a_window_whose_structure_changed():
    from ffpt_ase.simulate.stability import RDFCriterion
    rng = np.random.default_rng(0)
    box = Atoms("O64", positions=rng.uniform(0, 12.0, size=(64, 3)), cell=np.eye(3) * 12.0,
                pbc=True)
    ref = []
    for _ in range(20):
        f = box.copy()
        f.positions = rng.uniform(0, 12.0, size=(64, 3))
        ref.append(f)
    crit = RDFCriterion(ref, (8, 8), window_ps=1.0, max_error=0.3)
    # ideal-gas frames like the reference: no window fails
    for k in range(30):
        f = box.copy()
        f.positions = rng.uniform(0, 12.0, size=(64, 3))
        assert crit.add(f, 0.1 * k) is None
    # then every O sits on a 3 A lattice: g(r) is all peaks, judged when its window ends
    lattice = box.copy()
    lattice.positions = np.stack(np.meshgrid(*[np.arange(4) * 3.0] * 3), -1).reshape(-1, 3)
    verdicts = [crit.add(lattice, 3.0 + 0.1 * k) for k in range(11)]
    assert verdicts[:10] == [None] * 10
    reason, info = verdicts[10]
    assert reason == "rdf_deviation" and info["rdf_error"] > 0.3
    assert info["window_ps"] == [3.0, 4.0]
    with pytest.raises(ValueError, match="max_error"):
        RDFCriterion(ref, max_error=0)


@pytest.mark.parametrize("field, value", [("time_ps", 0.0), ("time_ps", -1.0),
                                          ("temperature_K", -5.0), ("trajectories", 0),
                                          ("timestep_fs", 0.0), ("check_interval", 0)])
def test_stability_settings_out_of_range_are_refused(field, value):
    """`--time-ps 0` used to report 100 % stable and a negative temperature a failure at
    0 ps: both are input errors, refused before any MD runs."""
    with pytest.raises(ValueError, match=f"{field}={value}"):
        StabilityConfig(system="HO2", **{field: value})


def test_run_stability_with_the_rdf_criterion(tmp_path):
    """The RDF criterion through run_stability: its reference is read from a file once per
    run and each trajectory starts with empty windows; an impossible tolerance fails every
    trajectory at the end of its first 1-ps window."""
    from ase.io import write

    from ffpt_ase.forcefields.tip3p import FlexibleTIP3PCalculator
    box = water_box()
    write(tmp_path / "ref.xyz", [box] * 3)
    box.write(tmp_path / "start.xyz")
    cfg = StabilityConfig(system=str(tmp_path / "start.xyz"), trajectories=2, time_ps=1.2,
                          temperature_K=300.0, output=str(tmp_path / "rdf"), check_interval=100,
                          rdf_reference=str(tmp_path / "ref.xyz"), rdf_max_error=1e-9)
    s = run_stability(cfg, calc=FlexibleTIP3PCalculator(), show_progress=False)
    assert s["n_failed"] == 2 and s["reasons"] == {"rdf_deviation": 2}
    for r in s["trajectories"]:
        assert r["details"]["window_ps"] == [0.0, 1.0]
        assert r["time_to_failure_ps"] == pytest.approx(1.0, abs=0.06)
