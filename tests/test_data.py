"""Frame container, its .npz format, and readers on synthetic and real files."""

import numpy as np
import pytest
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator

from ffpt_ase.data import (DataFormatError, Frames, read_combustion_npz, read_deepmd,
                           read_frames, write_frames)

KCAL = units.kcal / units.mol


def _frames(nf=5, na=3, seed=0):
    rng = np.random.default_rng(seed)
    return Frames(positions=rng.normal(size=(nf, na, 3)), numbers=[8, 8, 1][:na],
                  energy=rng.normal(size=nf), forces=rng.normal(size=(nf, na, 3)),
                  time=np.arange(nf) * 0.5, extras={"tag": np.arange(nf)},
                  metadata={"teacher": "qforce", "sigma_angstrom": 0.2})


@pytest.mark.parametrize("suffix", [".npz", ".xyz", ".traj"])
def test_round_trip(tmp_path, suffix):
    f = _frames()
    path = write_frames(f, tmp_path / f"frames{suffix}")
    g = read_frames(path)
    np.testing.assert_allclose(g.positions, f.positions, atol=1e-8)
    np.testing.assert_allclose(g.energy, f.energy, atol=1e-8)
    np.testing.assert_allclose(g.forces, f.forces, atol=1e-8)
    assert g.numbers_per_frame[0].tolist() == [8, 8, 1]
    if suffix == ".npz":
        assert g.metadata == f.metadata
        np.testing.assert_array_equal(g.time, f.time)
        np.testing.assert_array_equal(g.extras["tag"], f.extras["tag"])


def test_mixed_sizes_are_padded_and_stripped(tmp_path):
    a, b = _frames(3, 3), _frames(2, 2, seed=1)
    both = Frames.concatenate([a, b])
    assert both.positions.shape == (5, 3, 3)
    assert both.n_atoms.tolist() == [3, 3, 3, 2, 2]
    g = read_frames(both.save(tmp_path / "mixed.npz"))
    atoms = g.to_atoms(4)
    assert len(atoms) == 2 and atoms.get_potential_energy() == pytest.approx(b.energy[1])
    sub = g[[0, 4]]
    assert len(sub) == 2 and sub.n_atoms.tolist() == [3, 2]


def test_from_atoms_list_reads_info_and_calc():
    a = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    a.info["energy"] = -1.0
    b = a.copy()
    b.calc = SinglePointCalculator(b, energy=-2.0, forces=np.ones((2, 3)))
    fr = Frames.from_atoms_list([a, b])
    assert fr.energy.tolist() == [-1.0, -2.0]


def _write_combustion(path, **override):
    R = np.zeros((2, 6, 3))
    R[:, :3] = np.random.default_rng(0).normal(size=(2, 3, 3))
    Z = np.zeros((2, 6), int)
    Z[:, :3] = [8, 8, 1]
    arrays = dict(R=R, Z=Z, N=np.array([[3], [3]]), E=np.array([[-178.8], [-170.0]]),
                  F=np.ones((2, 6, 3)), RXN=np.array([["09"], ["09"]]))
    arrays.update(override)
    np.savez(path, **arrays)
    return path


def test_combustion_reader_units_and_padding(tmp_path):
    fr = read_combustion_npz(_write_combustion(tmp_path / "09_aimd.npz"))
    assert fr.positions.shape == (2, 3, 3) and fr.numbers.tolist() == [8, 8, 1]
    assert fr.energy[0] == pytest.approx(-178.8 * KCAL)
    assert fr.forces[0, 0, 0] == pytest.approx(KCAL)
    assert fr.time.tolist() == [0.0, 1.0] and fr.extras["reaction"].tolist() == ["09", "09"]


@pytest.mark.parametrize("override, match", [
    ({"N": np.array([[2], [3]])}, "atom counts"),
    ({"F": np.ones((2, 5, 3))}, "inconsistent shapes"),
])
def test_combustion_reader_rejects_malformed(tmp_path, override, match):
    with pytest.raises(DataFormatError, match=match):
        read_combustion_npz(_write_combustion(tmp_path / "x.npz", **override))
    np.savez(tmp_path / "y.npz", R=np.zeros(3))
    with pytest.raises(DataFormatError, match="missing keys"):
        read_combustion_npz(tmp_path / "y.npz")


def test_malformed_files(tmp_path):
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(DataFormatError, match="not a readable"):
        read_frames(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    with pytest.raises(DataFormatError, match="unknown .npz layout"):
        read_frames(tmp_path / "other.npz")
    np.savez(tmp_path / "bad.npz", positions=np.zeros((2, 3, 3)), numbers=np.zeros(4, int))
    with pytest.raises(DataFormatError, match="numbers must be"):
        read_frames(tmp_path / "bad.npz")
    (tmp_path / "bad.xyz").write_text("3\nno\nX 0 0\n")
    with pytest.raises(DataFormatError, match="extended XYZ"):
        read_frames(tmp_path / "bad.xyz")
    (tmp_path / "f.csv").write_text("1")
    with pytest.raises(DataFormatError, match="unknown data format"):
        read_frames(tmp_path / "f.csv")
    with pytest.raises(FileNotFoundError):
        read_frames(tmp_path / "missing.npz")
    (tmp_path / "dp").mkdir()
    with pytest.raises(DataFormatError, match="no DeePMD system"):
        read_deepmd(tmp_path / "dp")


def test_nonfinite_frames_are_found():
    f = _frames()
    f.energy[2] = np.nan
    f.forces[4, 0, 0] = np.inf
    assert f.nonfinite_frames().tolist() == [2, 4]
    assert "non-finite" in f.summary()


# ---------------------------------------------------------------- real data (../shared/data)
def test_real_combustion_file(data_dir):
    path = data_dir / "h2combustion" / "npz" / "09_irc.npz"
    raw = np.load(path)
    fr = read_frames(path)
    assert len(fr) == len(raw["E"]) and fr.positions.shape[1:] == (3, 3)
    np.testing.assert_allclose(fr.energy, raw["E"][:, 0] * KCAL)
    np.testing.assert_allclose(fr.forces, raw["F"][:, :3] * KCAL)
    # HO2 about -178.8 kcal/mol relative to the atoms (data README)
    assert fr.energy.min() == pytest.approx(-178.8 * KCAL, abs=0.05)


def test_trajectory_breaks_get_a_time_gap():
    from ffpt_ase.data.readers import trajectory_time
    rng = np.random.default_rng(1)
    walk = np.cumsum(rng.normal(scale=0.01, size=(10, 3, 3)), axis=0)
    walk[6:] += 1.5  # a second trajectory starts at frame 6
    t = trajectory_time(walk)
    assert np.diff(t).tolist() == [1, 1, 1, 1, 1, 2, 1, 1, 1]


def test_real_combustion_aimd_is_time_ordered(data_dir):
    fr = read_frames(data_dir / "h2combustion" / "npz" / "09_aimd.npz")
    assert len(fr) == 10000 and fr.time is not None
    dt = np.diff(fr.time)
    assert set(np.unique(dt)) == {1.0, 2.0}
    # within a trajectory consecutive frames are close; the file holds many short ones
    step = np.abs(np.diff(fr.positions, axis=0)).max(axis=(1, 2))
    assert step[dt == 1].max() <= 0.1 and 100 < (dt == 2).sum() < 400


def test_real_aspirin_extxyz(data_dir):
    fr = read_frames(data_dir / "aspirin_ccsd" / "aspirin_ccsd-train.xyz")
    assert len(fr) == 1000 and fr.positions.shape[1] == 21
    assert fr.energy.mean() == pytest.approx(-17592, abs=2)
    assert np.sort(fr.numbers).tolist() == [1] * 8 + [6] * 9 + [8] * 4


def test_real_water_deepmd(data_dir):
    fr = read_frames(data_dir / "water_bulk")
    assert len(fr) == 400 and fr.positions.shape[1] == 192 and fr.pbc.all()
    np.testing.assert_allclose(np.diag(fr.cell[0]), 12.4447, atol=1e-3)
    one = read_deepmd(data_dir / "water_bulk" / "data_1")
    assert len(one) == 160
    assert (fr.numbers == 8).sum() == 64


def test_consecutive_pairs_need_one_time_step_and_the_same_atoms():
    """The pairs both the temporal-pair loss and the energy-change error use: a time gap or a
    change of atoms ends a trajectory."""
    pos = np.zeros((5, 2, 3))
    numbers = np.array([[1, 8], [1, 8], [1, 8], [8, 8], [8, 8]])
    fr = Frames(positions=pos, numbers=numbers, energy=np.zeros(5), forces=np.zeros((5, 2, 3)),
                time=np.array([0.0, 1.0, 3.0, 4.0, 5.0]))
    assert fr.consecutive_pairs().tolist() == [True, False, False, True]
    fr.time = None
    with pytest.raises(ValueError, match="time-ordered"):
        fr.consecutive_pairs()


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    from ffpt_ase.files import atomic_path
    target = tmp_path / "state.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and list(tmp_path.iterdir()) == [target]


def test_mace_style_reference_keys_are_read_and_reported(tmp_path, capsys):
    """An extended-XYZ file written for MACE (REF_energy, REF_forces) gives labelled frames,
    and `data info` says which keys it read; a file without labels gets a warning."""
    from ase import Atoms
    from ase.io import write

    from ffpt_ase.cli.main import main
    from ffpt_ase.data import read_frames
    images = []
    for k in range(3):
        a = Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.97 + 0.01 * k]])
        a.info["REF_energy"] = -1.5 - 0.1 * k
        a.arrays["REF_forces"] = np.full((2, 3), 0.1 * k)
        images.append(a)
    write(tmp_path / "mace.xyz", images, format="extxyz")
    fr = read_frames(tmp_path / "mace.xyz")
    np.testing.assert_allclose(fr.energy, [-1.5, -1.6, -1.7])
    np.testing.assert_allclose(fr.forces[2], 0.2)
    assert fr.metadata["label_keys"] == {"energy": ["REF_energy"], "forces": ["REF_forces"]}
    assert main(["data", "info", str(tmp_path / "mace.xyz")]) == 0
    assert "labels from: energy <- REF_energy, forces <- REF_forces" in capsys.readouterr().out
    write(tmp_path / "bare.xyz", [Atoms("OH", positions=[[0, 0, 0], [0, 0, 1]])],
          format="extxyz")
    assert main(["data", "info", str(tmp_path / "bare.xyz")]) == 0
    assert "WARNING: no energy or force labels found (looked for energy, REF_energy" in \
        capsys.readouterr().out


def _mace_style_file(path, n=3):
    """Extended XYZ with MACE's REF_* labels and a decoy plain `energy` (e.g. a cheap
    method's) that a default reader would pick first."""
    from ase.build import molecule
    from ase.io import write
    images = []
    for k in range(n):
        a = molecule("H2O")
        a.info["REF_energy"] = -10.0 - k
        a.info["energy"] = 99.0
        a.arrays["REF_forces"] = np.full((3, 3), 0.1 * k)
        images.append(a)
    write(path, images)
    return path


def test_label_keys_choose_where_the_labels_are(tmp_path):
    from ffpt_ase.data import read_frames
    path = _mace_style_file(tmp_path / "mace.xyz")
    f = read_frames(path, energy_key="REF_energy", forces_key="REF_forces")
    assert f.energy.tolist() == [-10.0, -11.0, -12.0]
    np.testing.assert_allclose(f.forces[2], 0.2)
    assert f.metadata["label_keys"] == {"energy": ["REF_energy"], "forces": ["REF_forces"]}
    default = read_frames(path)   # ASE's own key comes first without --energy-key
    assert default.energy.tolist() == [99.0] * 3
    only_e = read_frames(path, energy_key="REF_energy")   # forces still found by default
    np.testing.assert_allclose(only_e.forces[1], 0.1)
    with pytest.raises(DataFormatError, match="no energy under the key 'dft'"):
        read_frames(path, energy_key="dft")
    Frames(positions=np.zeros((1, 2, 3)), numbers=np.array([1, 1])).save(tmp_path / "a.npz")
    with pytest.raises(DataFormatError, match="fixed labels"):
        read_frames(tmp_path / "a.npz", energy_key="REF_energy")


@pytest.mark.parametrize("suffix", [".xyz", ".traj"])
def test_provenance_survives_a_round_trip_so_the_fidelity_check_holds(tmp_path, suffix):
    from ffpt_ase.applications.systems import sample_system
    from ffpt_ase.data import read_frames, write_frames
    from ffpt_ase.data.frames import label_sources
    from ffpt_ase.training.trainer import check_training_frames
    teacher = sample_system("HO2", 4, sigma=0.1, seed=0, show_progress=False)
    write_frames(teacher, tmp_path / f"t{suffix}")
    back = read_frames(tmp_path / f"t{suffix}")
    assert label_sources(back.metadata) == {"qforce"}
    np.testing.assert_allclose(back.energy, teacher.energy)
    dft = Frames(positions=teacher.positions, numbers=teacher.numbers,
                 energy=teacher.energy - 4106.0, forces=teacher.forces,
                 metadata={"source": "dft run"})
    write_frames(Frames.concatenate([teacher, dft]), tmp_path / f"mixed{suffix}")
    mixed = read_frames(tmp_path / f"mixed{suffix}")
    assert label_sources(mixed.metadata) == {"qforce", "ab initio"}
    with pytest.raises(ValueError, match="mix label sources"):
        check_training_frames(mixed)
    assert label_sources(read_frames(_mace_style_file(tmp_path / "plain.xyz")).metadata) == \
        {"ab initio"}   # files not written by ffpt-ase count as ab initio, as before


def test_label_keys_on_the_command_line(tmp_path, capsys):
    from ffpt_ase.cli.main import main
    path = _mace_style_file(tmp_path / "mace.xyz")
    assert main(["data", "info", str(path), "--energy-key", "REF_energy", "--forces-key",
                 "REF_forces"]) == 0
    assert "REF_energy" in capsys.readouterr().out
    assert main(["data", "convert", str(path), str(tmp_path / "out.npz"), "--energy-key",
                 "REF_energy"]) == 0
    assert Frames.load(tmp_path / "out.npz").energy.tolist() == [-10.0, -11.0, -12.0]
    assert main(["data", "info", str(path), "--energy-key", "nope"]) == 2
    assert "no energy under the key 'nope'" in capsys.readouterr().err
