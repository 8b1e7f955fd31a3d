"""Application helpers the benchmarks use: the combustion data set's splits and per-channel
errors, the water liquid analysis, the aspirin PES cuts."""

import numpy as np
import pytest
import torch
from ase import Atoms

from ffpt_ase.model.potential import Potential


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    m = Potential([1, 6, 8], n_features=8, n_interactions=1, n_basis=4, cutoff=4.0)
    path = tmp_path_factory.mktemp("m") / "tiny.pt"
    torch.save(m.checkpoint(stage="test"), path)
    return path


def test_combustion_splits_are_disjoint_seeded_and_labelled(data_dir):
    from ffpt_ase.applications.h2combustion.dataset import (EXCLUDED, data_files, split_file,
                                                           train_test_sets)
    from ffpt_ase.data import read_combustion_npz
    h2 = data_dir / "h2combustion"
    files = data_files(h2)
    assert files and not any(f.stem in EXCLUDED for f in files)
    frames = read_combustion_npz(files[0])
    a, b = split_file(frames, 0.1, 50, seed=3)
    assert len(set(a) & set(b)) == 0 and len(a) == max(5, round(0.1 * len(frames)))
    assert np.array_equal(a, split_file(frames, 0.1, 50, seed=3)[0])
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_file(frames, 1.5, 5, 0)
    with pytest.raises(FileNotFoundError, match="npz"):
        data_files(data_dir)
    train, test = train_test_sets(h2, 0.01, 3, seed=0)
    assert train.metadata["teacher"] == test.metadata["teacher"] == "ab initio"
    assert len(test) == 3 * len(files) and train.time is None
    assert set(np.asarray(train.extras["reaction"])) == set(np.asarray(test.extras["reaction"]))


def test_per_channel_errors_and_energy_changes(data_dir, tiny):
    from ffpt_ase.applications.h2combustion.dataset import data_files
    from ffpt_ase.applications.h2combustion.workflows import (per_channel_errors,
                                                              test_predictions)
    from ffpt_ase.data import read_combustion_npz
    from ffpt_ase.model.potential import load_potential
    from ffpt_ase.training.metrics import energy_change_errors, error_metrics, predict
    aimd = [f for f in data_files(data_dir / "h2combustion", kinds=("aimd",))][:2]
    frames = [read_combustion_npz(f) for f in aimd]
    from ffpt_ase.data import Frames
    test = Frames.concatenate([f[np.arange(20)] for f in frames])
    res = per_channel_errors(test, test_predictions(tiny, test))
    assert sorted(res) == sorted(set(np.asarray(test.extras["reaction"])))
    assert sum(r["n"] for r in res.values()) == 40
    # the per-channel MAEs average (weighted) to the whole set's
    e, f = predict(load_potential(tiny), test)
    whole = error_metrics(test, e, f)["energy_mae"] * 1e3
    assert sum(r["n"] * r["energy_mae_meV"] for r in res.values()) / 40 == pytest.approx(whole)
    one = frames[0][np.arange(20)]
    e1, _ = predict(load_potential(tiny), one, forces=False)
    ch = energy_change_errors(one, e1)
    expect = np.mean(np.abs(np.diff(e1) - np.diff(one.energy))[np.diff(one.time) == 1])
    assert ch["energy_change_mae"] == pytest.approx(expect) and ch["pairs"] >= 1


def test_per_channel_comparison_of_a_model_with_itself_and_another(data_dir, tiny, tmp_path):
    import torch

    from ffpt_ase.applications.h2combustion.dataset import data_files
    from ffpt_ase.applications.h2combustion.workflows import (per_channel_comparison,
                                                              per_channel_errors,
                                                              test_predictions)
    from ffpt_ase.data import Frames, read_combustion_npz
    from ffpt_ase.model.potential import load_potential
    test = Frames.concatenate([read_combustion_npz(f)[np.arange(100)] for f in
                               data_files(data_dir / "h2combustion", kinds=("aimd",))[:2]])
    base_pred = test_predictions(tiny, test)
    same = per_channel_comparison(test, base_pred, base_pred, block=10)   # 10 per channel
    assert sorted(same["groups"]) == sorted(set(np.asarray(test.extras["reaction"])))
    for c in [same["all"], *same["groups"].values()]:
        assert c["forces_mae_difference"]["difference"] == 0
        assert c["energy_mae_difference"]["p_value"] == 1
    other = load_potential(tiny)
    with torch.no_grad():
        other.shift.add_(0.5)               # every energy 0.5 eV per atom higher
    torch.save(other.checkpoint(stage="test"), tmp_path / "shifted.pt")
    shifted = test_predictions(tmp_path / "shifted.pt", test)
    res = per_channel_comparison(test, base_pred, shifted, block=10)
    own = per_channel_errors(test, shifted)
    base = per_channel_errors(test, base_pred)
    for rxn, c in res["groups"].items():
        assert 1e3 * c["b"]["energy_mae"] == pytest.approx(own[rxn]["energy_mae_meV"])
        e = c["energy_mae_difference"]   # the shift moves every energy: B is worse or better
        assert 1e3 * e["difference"] == pytest.approx(own[rxn]["energy_mae_meV"]
                                                      - base[rxn]["energy_mae_meV"])
        assert e["ci_low"] <= e["difference"] <= e["ci_high"]
        d = c["forces_mae_difference"]   # rounding-level differences: a finite interval
        assert d["difference"] == pytest.approx(0, abs=1e-9)
        assert abs(d["ci_low"]) < 1e-9 and abs(d["ci_high"]) < 1e-9
        assert c["n_frames"] == own[rxn]["n"] == 100 and d["n_blocks"] == 10


def test_liquid_properties_recover_a_known_diffusion_coefficient(tmp_path):
    """Random-walk oxygens with step variance s^2 per axis per frame: D = s^2 / (2 dt)."""
    from ase.io import Trajectory

    from ffpt_ase.applications.water import liquid_properties
    rng = np.random.default_rng(0)
    n, frames, dt_fs, s = 64, 400, 10.0, 0.05
    x = rng.uniform(0, 12.0, (n, 3)) + np.cumsum(rng.normal(scale=s, size=(frames, n, 3)), 0)
    for k in range(2):
        with Trajectory(str(tmp_path / f"traj_{k:03d}.traj"), "w") as tr:
            for p in x:
                tr.write(Atoms(["O"] * n, positions=p % 12.0, cell=[12.0] * 3, pbc=True))
    summary = {"trajectories": [{"trajectory": 0, "failed": False},
                                {"trajectory": 1, "failed": False},
                                {"trajectory": 2, "failed": True}]}
    res = liquid_properties(tmp_path, summary, skip_ps=0.0, save_fs=dt_fs)
    d_true = s ** 2 / (2 * dt_fs * 1e-3)          # A^2/ps
    assert res["n_trajectories"] == 2
    assert res["D_A2_per_ps_mean"] == pytest.approx(d_true, rel=0.15)
    each = res["D_A2_per_ps_each"]
    assert res["D_A2_per_ps_sem"] == pytest.approx(abs(each[0] - each[1]) / 2)  # n = 2
    assert len(res["g_OO_sem"]) == len(res["r_A"])
    assert abs(np.mean(res["g_OO_mean"][40:]) - 1.0) < 0.15   # an ideal gas: g -> 1
    with pytest.raises(ValueError, match="save_fs"):
        liquid_properties(tmp_path, summary, 0.0, 0.0)


def test_aspirin_pes_cuts_start_at_zero_and_find_the_methyl(tiny):
    from ffpt_ase.applications.aspirin import methyl, pes_cuts
    from ffpt_ase.applications.systems import get_system
    _, aspirin, _ = get_system("aspirin")
    c, hs = methyl(aspirin)
    assert aspirin.numbers[c] == 6 and all(aspirin.numbers[h] == 1 for h in hs)
    assert all(aspirin.get_distance(c, h) < 1.2 for h in hs)
    cuts = pes_cuts(aspirin, {"tiny": tiny}, n_stretch=6, n_angle=4)
    assert cuts["angle"]["tiny"][0] == pytest.approx(0.0, abs=1e-8)   # first angle: start
    r0 = aspirin.get_distance(c, hs[0])
    assert cuts["stretch"]["x"][0] == pytest.approx(r0 - 0.4)
    with pytest.raises(ValueError, match="no methyl"):
        methyl(Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.97]]))
