"""What pre-training leaves behind (analysis.walls): errors against the teacher by energy
bin, relative to each model's own equilibrium, and close-contact wall heights."""

import numpy as np
import pytest
import torch
from ase.calculators.calculator import Calculator, all_changes

from ffpt_ase.analysis import walls
from ffpt_ase.applications.h2combustion.workflows import (rattled_species_frames,
                                                          rattled_species_sets)
from ffpt_ase.applications.systems import get_system
from ffpt_ase.model.potential import Potential


@pytest.fixture(scope="module")
def rattled():
    return rattled_species_frames(rattled_species_sets(40, seed=5))


@pytest.fixture(scope="module")
def equilibria():
    out = {}
    for name in ("H2", "O2", "OH", "H2O", "HO2", "H2O2"):
        calc, ref, _ = get_system(name)
        atoms = ref.copy()
        atoms.calc = calc
        out[walls.formula_of(atoms.numbers)] = (ref.copy(), atoms.get_potential_energy())
    return out


def _fake_predict(frames_ref, eq, scale, offset):
    """A stand-in for ``predict``: the teacher's energies relative to equilibrium times
    ``scale`` plus a model energy zero ``offset``; forces the teacher's times ``scale``."""
    def fake(model, frames, batch_size=64, dtype=None, forces=True):
        if frames.energy is None:       # the equilibrium frames
            return np.full(len(frames), offset), None
        f = [walls.formula_of(z) for z in frames.numbers_per_frame]
        e_ref = np.array([eq[x][1] for x in f])
        return offset + scale * (frames.energy - e_ref), scale * frames.forces
    return fake


def test_errors_against_the_teacher_measure_the_kept_fraction_of_the_walls(
        rattled, equilibria, monkeypatch):
    model = torch.nn.Linear(1, 1)      # only its dtype is read; predict is replaced
    monkeypatch.setattr(walls, "predict", _fake_predict(rattled, equilibria, 1.0, -1234.0))
    exact = walls.errors_against_teacher({"m": model}, rattled, equilibria)
    # free atoms (80 of 320 frames) are left out; every other frame falls in one bin
    assert exact["frames"] == 240 == sum(r["n"] for r in exact["m"])
    for row in exact["m"]:
        if row["n"]:
            assert row["forces_mae"] < 1e-12 and row["energy_mae"] < 1e-9
            assert row["retained"] == pytest.approx(1.0)
    monkeypatch.setattr(walls, "predict", _fake_predict(rattled, equilibria, 0.5, 7.0))
    half = walls.errors_against_teacher({"m": model}, rattled, equilibria)["m"]
    real = rattled.numbers_per_frame > 0
    rel = rattled.energy - np.array([equilibria.get(walls.formula_of(z), (None, np.nan))[1]
                                     for z in rattled.numbers_per_frame])
    top = (rel >= 10.0) & (real.sum(1) > 1)
    assert half[-1]["n"] == top.sum() > 0
    assert half[-1]["retained"] == pytest.approx(0.5)
    assert half[-1]["energy_mean_error"] == pytest.approx(-0.5 * rel[top].mean())
    assert half[-1]["forces_mae"] == pytest.approx(
        0.5 * np.abs(rattled.forces[top][real[top]]).mean())


def test_errors_against_the_teacher_run_a_real_model(rattled, equilibria):
    torch.manual_seed(0)
    model = Potential([1, 8], 8, 1, 4, 5.0).double()
    out = walls.errors_against_teacher({"tiny": model}, rattled[::4], equilibria)
    rows = out["tiny"]
    assert sum(r["n"] for r in rows) == out["frames"] == 60
    assert all(np.isfinite(r["forces_mae"]) for r in rows if r["n"])
    with pytest.raises(ValueError, match="nothing to compare"):
        walls.errors_against_teacher({"tiny": model}, rattled[:40], equilibria)  # H atoms


class _Scaled(Calculator):
    implemented_properties = ["energy", "forces"]

    def __init__(self, inner, factor):
        super().__init__()
        self.inner, self.factor = inner, factor

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        work = self.atoms.copy()
        work.calc = self.inner
        self.results = {"energy": self.factor * work.get_potential_energy(),
                        "forces": self.factor * work.get_forces()}


def test_contact_scans_give_wall_heights_relative_to_the_teacher():
    calc, ho2, _ = get_system("HO2")
    d = [float(ho2.get_distance(0, 2)), 0.8, 0.6]
    assert d[0] > 0.9
    out = walls.contact_scans({"teacher": calc, "double": _Scaled(calc, 2.0)}, ho2,
                              [(0, 2)], d, reference="teacher")
    (key, curves), = out["pairs"].items()
    assert key == f"{ho2[0].symbol}0-{ho2[2].symbol}2"
    t = curves["teacher"]
    assert t["energy_eV"][0] == 0.0 and t["wall_eV"] > 1.0   # a Morse wall at 0.6 A
    assert t["wall_ratio"] == pytest.approx(1.0)
    assert curves["double"]["wall_ratio"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="reference 'dft'"):
        walls.contact_scans({"teacher": calc}, ho2, [(0, 2)], d, reference="dft")


def test_combustion_wall_retention_covers_every_pair_on_held_out_frames():
    from ffpt_ase.applications.h2combustion.workflows import WALL_SPECIES, wall_retention
    out = wall_retention({"FFPT": "pretrained:h2combustion-small"}, n_per_species=5)
    # 1 + 1 + 1 + 3 + 3 + 6 atom pairs of H2, O2, OH, H2O, HO2, H2O2
    assert len(out["contact_scans"]) == 15 and len(WALL_SPECIES) == 6
    assert not set(out["rattled_seeds"]) & set(range(8))   # pre-training used seeds 0..7
    assert out["rattled"]["frames"] == 30
    for scan in out["contact_scans"].values():
        assert scan["distances_A"][-1] == pytest.approx(0.5)
        assert scan["teacher"]["wall_eV"] > 1.0   # every close contact is repulsive


def test_water_wall_retention_scans_the_monomer_and_keeps_its_frames_held_out(tiny_model):
    from ffpt_ase.applications.water import wall_retention
    out = wall_retention({"tiny": tiny_model}, n_frames=6)
    assert sorted(out["contact_scans"]) == ["H2O H1-H2", "H2O O0-H1", "H2O O0-H2"]
    assert out["rattled_seed"] != 0 and out["rattled"]["frames"] == 6
    for scan in out["contact_scans"].values():
        assert scan["teacher"]["wall_eV"] > 1.0 and "tiny" in scan


def test_aspirin_wall_retention_scans_every_bond_and_the_methyl_contacts(tmp_path):
    import torch

    from ffpt_ase.applications.aspirin import wall_retention
    from ffpt_ase.model.potential import Potential
    torch.manual_seed(0)
    m = Potential([1, 6, 8], n_features=8, n_interactions=1, n_basis=6)
    torch.save(m.checkpoint(stage="test"), tmp_path / "m.pt")
    out = wall_retention({"tiny": tmp_path / "m.pt"}, n_frames=4)
    # aspirin C9H8O4 has 21 bonds; plus the methyl group's 3 H-H pairs
    scans = out["contact_scans"]
    assert len(scans) == 24 and out["rattled"]["frames"] == 4
    hh = [k for k in scans if k.count("H") == 2]
    assert len(hh) == 3
    assert all(scans[k]["teacher"]["wall_eV"] > 1.0 for k in scans)
