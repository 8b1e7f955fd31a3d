"""Stress labels: read under ASE's, MACE's and DeePMD's names (stresses and virials), kept
through every format, and trained on with ``w_stress``."""

import json

import numpy as np
import pytest
import torch
from ase.io import write

from ffpt_ase.calculators import FFPTCalculator
from ffpt_ase.cli.main import main
from ffpt_ase.data import read_frames, write_frames
from ffpt_ase.data.frames import DataFormatError, Frames
from ffpt_ase.model.potential import Potential

from conftest import water_box


@pytest.fixture(scope="module")
def labelled_boxes():
    """Rattled periodic water boxes labelled (energy, forces, stress) by a random model."""
    torch.manual_seed(5)
    teacher = Potential([1, 8], n_features=8, n_interactions=1, n_basis=6)
    calc = FFPTCalculator(teacher, dtype="float64")
    rng = np.random.default_rng(0)
    images = []
    for k in range(24):
        box = water_box(6.0 + 0.1 * (k % 4))
        box.rattle(0.05, rng=rng)
        box.calc = calc
        box.get_potential_energy(), box.get_forces(), box.get_stress()
        images.append(box)
    return Frames.from_atoms_list(images, metadata={"source": "random model"})


def test_stress_survives_npz_extxyz_and_traj(labelled_boxes, tmp_path):
    assert labelled_boxes.stress.shape == (24, 3, 3)
    assert labelled_boxes.metadata["label_keys"]["stress"] == ["stress"]
    for name in ("f.npz", "f.xyz", "f.traj"):
        back = read_frames(write_frames(labelled_boxes, tmp_path / name))
        np.testing.assert_allclose(back.stress, labelled_boxes.stress, atol=1e-12, err_msg=name)
    sub = labelled_boxes[np.array([3, 1])]
    np.testing.assert_array_equal(sub.stress, labelled_boxes.stress[[3, 1]])
    both = Frames.concatenate([labelled_boxes[:2], labelled_boxes[2:5]])
    np.testing.assert_array_equal(both.stress, labelled_boxes.stress[:5])
    # a stress changes the data's fingerprint; a set without one keeps its old digest
    changed = Frames(**{**labelled_boxes.__dict__, "stress": labelled_boxes.stress * 2})
    assert changed.fingerprint() != labelled_boxes.fingerprint()


def test_mace_keys_virials_and_a_stress_key(labelled_boxes, tmp_path):
    images = labelled_boxes.to_atoms_list()[:3]
    for a in images:
        sigma = a.calc.results["stress"]
        volume = a.cell.volume
        a.calc = None
        a.info["REF_energy"] = 0.0
        a.arrays["REF_forces"] = np.zeros((len(a), 3))
        a.info["REF_virials"] = (-np.array(_full(sigma)) * volume).reshape(-1)
        a.info["my_stress"] = sigma                 # Voigt, ASE's order
    write(tmp_path / "mace.xyz", images, format="extxyz")
    # default: the virial, converted (stress = -W / V)
    got = read_frames(tmp_path / "mace.xyz")
    np.testing.assert_allclose(got.stress, labelled_boxes.stress[:3], atol=1e-10)
    assert got.metadata["label_keys"]["stress"] == ["REF_virials"]
    got = read_frames(tmp_path / "mace.xyz", stress_key="my_stress")
    np.testing.assert_allclose(got.stress, labelled_boxes.stress[:3], atol=1e-10)
    with pytest.raises(DataFormatError, match="no stress under the key 'nope'"):
        read_frames(tmp_path / "mace.xyz", stress_key="nope")


def _full(voigt):
    xx, yy, zz, yz, xz, xy = voigt
    return [[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]]


def test_deepmd_virial_becomes_stress(labelled_boxes, tmp_path):
    folder = tmp_path / "dp"
    (folder / "set.000").mkdir(parents=True)
    fr = labelled_boxes[:4]
    n = fr.positions.shape[1]
    (folder / "type_map.raw").write_text("O H\n")
    (folder / "type.raw").write_text(" ".join("0" if z == 8 else "1" for z in fr.numbers))
    s = folder / "set.000"
    np.save(s / "coord.npy", fr.positions.reshape(4, 3 * n))
    np.save(s / "force.npy", fr.forces.reshape(4, 3 * n))
    np.save(s / "energy.npy", fr.energy)
    np.save(s / "box.npy", fr.cell.reshape(4, 9))
    volume = np.abs(np.linalg.det(fr.cell))
    np.save(s / "virial.npy", (-fr.stress * volume[:, None, None]).reshape(4, 9))
    np.testing.assert_allclose(read_frames(folder).stress, fr.stress, atol=1e-12)


def test_training_on_stresses_logs_and_tests_them(labelled_boxes, tmp_path, capsys):
    from ffpt_ase.training.config import TrainConfig
    from ffpt_ase.training.trainer import train
    write_frames(labelled_boxes[:20], tmp_path / "train.npz")
    write_frames(labelled_boxes[20:], tmp_path / "test.npz")
    cfg = TrainConfig(data=str(tmp_path / "train.npz"), output=str(tmp_path / "run"),
                      epochs=2, batch_size=4, features=8, interactions=1, basis=6,
                      w_stress=100.0, dtype="float64", n_val=4,
                      test_data=str(tmp_path / "test.npz"))
    summary = train(cfg)
    header = (tmp_path / "run" / "log.csv").read_text().splitlines()[0].split(",")
    assert "val_stress_mae" in header and summary["final"]["val_stress_mae"] > 0
    assert summary["test"]["stress_mae"] > 0
    # the test errors are the best model's, evaluated on its own
    assert main(["evaluate", str(tmp_path / "run" / "best.pt"), str(tmp_path / "test.npz"),
                 "--json", "--dtype", "float64"]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["stress_mae"] == pytest.approx(summary["test"]["stress_mae"], rel=1e-9)


def test_the_stress_term_is_its_formula(labelled_boxes):
    from ffpt_ase.data.graphs import batch_from_frames
    from ffpt_ase.training.losses import TrainingLoss
    torch.manual_seed(1)
    model = Potential([1, 8], 8, 1, 6).double()
    batch = batch_from_frames(labelled_boxes, np.arange(3), model.elements, model.cutoff)
    pred = model(batch, forces=True, stress=True)
    with_s = TrainingLoss(1.0, 20.0, w_stress=7.0)(pred, batch)
    without = TrainingLoss(1.0, 20.0)(pred, batch)
    expected = 7.0 * torch.mean((pred["stress"] - batch.stress) ** 2)
    assert float(with_s - without) == pytest.approx(float(expected), rel=1e-12)
    assert float(expected) > 0


def test_stress_training_refuses_frames_without_stresses(tmp_path, capsys):
    from ffpt_ase.applications.systems import sample_system
    sample_system("HO2", 20).save(tmp_path / "ho2.npz")
    code = main(["train", "--data", str(tmp_path / "ho2.npz"), "-o", str(tmp_path / "r"),
                 "--w-stress", "1", "--epochs", "1"])
    assert code == 2
    assert "w_stress > 0 trains on stresses, but the training data have no stresses" in \
        capsys.readouterr().err


def test_data_info_shows_the_stress(labelled_boxes, tmp_path, capsys):
    write_frames(labelled_boxes, tmp_path / "b.xyz")
    assert main(["data", "info", str(tmp_path / "b.xyz")]) == 0
    out = capsys.readouterr().out
    assert "stress [eV/A^3]" in out and "stress <- stress" in out
