"""Trainer: stages, files, resume after an interrupt, fine-tuning rules, temporal pairs."""

import csv
import json

import numpy as np
import pytest
import torch

from ffpt_ase.data import Frames
from ffpt_ase.model.potential import CheckpointError, load_checkpoint
from ffpt_ase.applications.systems import sample_system
from ffpt_ase.training.config import TrainConfig
from ffpt_ase.training.losses import temporal_pair_loss
from ffpt_ase.training.trainer import (Trainer, earliest_plateau_stop, plateau_reached,
                                      prepare, train)

TINY = dict(features=8, interactions=1, basis=4, batch_size=16)


@pytest.fixture(scope="module")
def ho2(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "ho2.npz"
    sample_system("HO2", 240, sigma=0.1, seed=0, show_progress=False).save(path)
    return path


def _ab_initio_like(frames):
    """Frames relabelled as if they came from a reference method (no teacher metadata),
    with a different energy zero, as DFT energies would have."""
    return Frames(positions=frames.positions, numbers=frames.numbers,
                  energy=frames.energy - 4106.0, forces=frames.forces,
                  metadata={"source": "reference"})


def rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_pretrain_writes_all_outputs_and_learns(ho2, tmp_path):
    out = tmp_path / "pt"
    summary = train(TrainConfig(stage="pretrain", data=str(ho2), output=str(out), epochs=6,
                                lr=3e-3, **TINY))
    for name in ("best.pt", "last.pt", "log.csv", "split.npz", "config.json", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    log = rows(out / "log.csv")
    assert len(log) == 6 and summary["epochs"] == 6
    assert float(log[-1]["val_forces_mae"]) < float(log[0]["val_forces_mae"])
    split = np.load(out / "split.npz")
    assert len(split["val"]) == 12 and len(set(split["train"]) & set(split["val"])) == 0
    ck = load_checkpoint(out / "best.pt")
    assert ck["stage"] == "pretrain" and ck["config"]["n_features"] == 8


def test_resume_after_interrupt_equals_uninterrupted(ho2, tmp_path, monkeypatch):
    cfg = dict(stage="scratch", data=str(ho2), epochs=4, **TINY)
    train(TrainConfig(output=str(tmp_path / "full"), **cfg))

    from conftest import interrupt_at_call
    interrupt_at_call(monkeypatch, Trainer, "_validate", 3)  # interrupted during epoch 3
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(output=str(tmp_path / "cut"), **cfg))
    assert len(rows(tmp_path / "cut" / "log.csv")) == 2
    monkeypatch.undo()
    train(TrainConfig(output=str(tmp_path / "cut"), **cfg))
    full, cut = rows(tmp_path / "full" / "log.csv"), rows(tmp_path / "cut" / "log.csv")
    assert len(cut) == 4
    for a, b in zip(full, cut):
        assert float(a["val_loss"]) == pytest.approx(float(b["val_loss"]), rel=1e-5)


def training_result(folder):
    """What a finished training run left: models, history without wall times, summary."""
    import json
    last, best = load_checkpoint(folder / "last.pt"), load_checkpoint(folder / "best.pt")
    best_forces = load_checkpoint(folder / "best_forces.pt")
    log = [{k: v for k, v in r.items() if k != "time_s"} for r in rows(folder / "log.csv")]
    summary = json.loads((folder / "summary.json").read_text())
    summary.pop("output")
    summary["final"].pop("time_s")
    return {"last": last["model_state"], "best": best["model_state"],
            "best_forces": best_forces["model_state"], "best_epoch": best["epoch"],
            "best_forces_epoch": best_forces["epoch"], "log": log, "summary": summary}


def assert_same_training(a, b):
    assert a["best_epoch"] == b["best_epoch"] and a["log"] == b["log"]
    assert a["best_forces_epoch"] == b["best_forces_epoch"]
    assert a["summary"] == b["summary"]
    for key in ("last", "best", "best_forces"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)


def test_a_training_run_killed_at_any_write_point_resumes_to_the_same_result(
        ho2, tmp_path, monkeypatch):
    """Fault injection: crash after each write of the run folder (run.json, data_sketch.npz,
    split.npz, config.json, and per epoch last.pt, best.pt, log.csv, then summary.json), rerun, and
    compare with the uninterrupted run: the same weights, best epoch, log and summary."""
    from conftest import SimulatedCrash, crash_at_write
    cfg = dict(stage="scratch", data=str(ho2), epochs=3, seed=2, **TINY)
    train(TrainConfig(output=str(tmp_path / "ref"), **cfg))
    ref = training_result(tmp_path / "ref")
    seen = crash_at_write(monkeypatch, 0)
    train(TrainConfig(output=str(tmp_path / "count"), **cfg))
    assert seen[:4] == ["run.json", "data_sketch.npz", "split.npz", "config.json"]
    assert seen[-1] == "summary.json"
    assert seen.count("last.pt") == 3 and seen.count("log.csv") == 3
    n_points = len(seen)
    for k in range(1, n_points + 1):
        out = tmp_path / f"crash{k}"
        crash_at_write(monkeypatch, k)
        with pytest.raises(SimulatedCrash):
            train(TrainConfig(output=str(out), **cfg))
        monkeypatch.undo()
        train(TrainConfig(output=str(out), **cfg))
        assert_same_training(training_result(out), ref)


def test_a_rerun_with_changed_settings_or_data_is_refused(ho2, tmp_path):
    import re
    from ffpt_ase.runfolder import RunFolderError
    out = tmp_path / "run"
    base = dict(stage="scratch", data=str(ho2), epochs=2, output=str(out), **TINY)
    first = train(TrainConfig(**base))
    for change, message in ((dict(lr=1e-2), "settings.lr: 0.001 -> 0.01"),
                            (dict(w_forces=5.0), "settings.w_forces: 20.0 -> 5.0"),
                            (dict(batch_size=8), "settings.batch_size: 16 -> 8"),
                            (dict(seed=1), "settings.seed: 0 -> 1")):
        with pytest.raises(RunFolderError, match=re.escape(message)):
            train(TrainConfig(**{**base, **change}))
    other = tmp_path / "other.npz"
    sample_system("HO2", 240, sigma=0.1, seed=1, show_progress=False).save(other)
    with pytest.raises(RunFolderError, match=r"inputs\.data \(content changed: \S+ -> \S+\): "
                                              r"other training data: values differ by up "
                                              r"to \S+ of their size, more than rounding"):
        train(TrainConfig(**{**base, "data": str(other)}))
    # the same frames written again (another file) are the same data
    copy = tmp_path / "copy.npz"
    Frames.load(ho2).save(copy)
    assert train(TrainConfig(**{**base, "data": str(copy)}))["epochs"] == first["epochs"]
    # more epochs extend the run; rerunning a finished run changes nothing
    assert train(TrainConfig(**{**base, "epochs": 3}))["epochs"] == 3
    assert len(rows(out / "log.csv")) == 3
    assert train(TrainConfig(**{**base, "epochs": 3}))["epochs"] == 3
    # start over: the old run is moved aside, not deleted
    again = train(TrainConfig(**base), start_over=True)
    assert again["epochs"] == 2 and len(rows(tmp_path / "run.old-1" / "log.csv")) == 3


def test_data_rebuilt_equal_up_to_rounding_resume_the_run_and_other_data_do_not(
        ho2, tmp_path, caplog):
    """Training data rebuilt on another machine come back with another digest (the last
    bits of a label differ); the run's data sketch tells them from other data: rounding
    resumes (noted in the log and in run.json), a change of 1e-6 in one force component of
    one frame is refused, and so is any other change beside it."""
    import re
    from ffpt_ase.runfolder import RunFolderError
    from ffpt_ase.training.trainer import DATA_SKETCH
    out = tmp_path / "run"
    base = dict(stage="scratch", data=str(ho2), epochs=2, output=str(out), **TINY)
    train(TrainConfig(**base))
    assert (out / DATA_SKETCH).exists()
    frames = Frames.load(ho2)

    def rebuilt(name, forces_factor=1.0, energy_shift=0.0, one_force=0.0):
        f = Frames.load(ho2)
        f.forces = f.forces * forces_factor
        f.forces[7, 1, 2] += one_force
        f.energy = f.energy + energy_shift
        return str(f.save(tmp_path / name))

    rounded = rebuilt("rounded.npz", forces_factor=1 + 3e-16, energy_shift=1e-13)
    assert Frames.load(rounded).fingerprint() != frames.fingerprint()
    with caplog.at_level("WARNING"):
        assert train(TrainConfig(**{**base, "data": rounded, "epochs": 3}))["epochs"] == 3
    assert "equal the run's within" in caplog.text
    record = json.loads((out / "run.json").read_text())
    assert list(record["regenerated"]["data"]) == [Frames.load(rounded).fingerprint()]
    assert record["inputs"]["data"] == frames.fingerprint()   # the run's own data stay its
    assert train(TrainConfig(**{**base, "data": rounded, "epochs": 3}))["epochs"] == 3
    assert train(TrainConfig(**{**base, "epochs": 3}))["epochs"] == 3   # and the original
    nudged = rebuilt("nudged.npz", one_force=1e-6)
    with pytest.raises(RunFolderError, match="other training data: values differ"):
        train(TrainConfig(**{**base, "data": nudged}))
    with pytest.raises(RunFolderError, match=re.escape("settings.lr: 0.001 -> 0.01")):
        train(TrainConfig(**{**base, "data": rounded, "lr": 1e-2}))
    # a run from before sketches were kept gets one when it resumes on its own data, and
    # cannot tell rebuilt data from other data before that
    (out / DATA_SKETCH).unlink()
    with pytest.raises(RunFolderError, match=f"keeps no {DATA_SKETCH}"):
        train(TrainConfig(**{**base, "data": rebuilt("again.npz", forces_factor=1 + 4e-16)}))
    assert train(TrainConfig(**{**base, "epochs": 3}))["epochs"] == 3
    assert (out / DATA_SKETCH).exists()


def test_a_folder_that_is_not_a_run_is_never_touched(ho2, tmp_path):
    from ffpt_ase.runfolder import RunFolderError
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    for start_over in (False, True):
        with pytest.raises(RunFolderError, match="not an ffpt-ase run folder"):
            train(TrainConfig(stage="scratch", data=str(ho2), epochs=1, output=str(mine),
                              **TINY), start_over=start_over)
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    assert (mine / "thesis.tex").read_text() == "precious"


def test_finetune_refits_reference_energies_and_checks_checkpoint(ho2, tmp_path):
    pt = tmp_path / "pt"
    train(TrainConfig(stage="pretrain", data=str(ho2), output=str(pt), epochs=1, **TINY))
    ft_data = tmp_path / "ft.npz"
    _ab_initio_like(Frames.load(ho2)).save(ft_data)
    ft = tmp_path / "ft"
    train(TrainConfig(stage="finetune", data=str(ft_data), init=str(pt / "best.pt"),
                      output=str(ft), epochs=1, batch_size=16))
    before = load_checkpoint(pt / "best.pt")["model_state"]["shift"]
    after = load_checkpoint(ft / "best.pt")["model_state"]["shift"]
    # the 4106 eV offset of the new labels is absorbed by the refitted shifts (H + 2 O)
    # (up to the one-epoch pre-trained model's own energy error of a few eV)
    assert float(after[0] + 2 * after[1] - before[0] - 2 * before[1]) == pytest.approx(-4106.0,
                                                                                    abs=5.0)
    with open(ft / "log.csv") as fh:
        assert float(next(csv.DictReader(fh))["val_energy_mae"]) < 5.0
    # fine-tuning keeps the pre-trained force scale (the PES shape is not rescaled)
    assert torch.equal(load_checkpoint(ft / "best.pt")["model_state"]["scale"],
                       load_checkpoint(pt / "best.pt")["model_state"]["scale"])
    cfg = json.loads((ft / "config.json").read_text())
    assert cfg["init_stage"] == "pretrain"
    # the recorded size is the model's (from init), not the unset default of 128 features
    assert [cfg[k] for k in ("features", "interactions", "basis")] == [8, 1, 4]

    with pytest.raises(CheckpointError, match="different architecture"):
        prepare(TrainConfig.from_sources(stage="finetune", data=str(ft_data), features=16,
                                         init=str(pt / "best.pt"), output=str(tmp_path / "x")))
    carbon = Frames(positions=np.zeros((2, 2, 3)) + [[0, 0, 0], [0, 0, 1.1]], numbers=[6, 8],
                    energy=[0.0, 0.0], forces=np.zeros((2, 2, 3)))
    with pytest.raises(CheckpointError, match=r"\['C'\]"):
        prepare(TrainConfig(stage="finetune", init=str(pt / "best.pt"),
                            output=str(tmp_path / "y")), frames=carbon)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}, "hyper_parameters": {}}, foreign)
    with pytest.raises(CheckpointError, match="not an ffpt-ase NewtonNet checkpoint"):
        prepare(TrainConfig(stage="finetune", data=str(ft_data), init=str(foreign),
                            output=str(tmp_path / "z")))
    with pytest.raises(ValueError, match="--init"):
        TrainConfig(stage="finetune", data=str(ft_data))


def test_mixed_fidelities_are_refused(ho2, tmp_path):
    ff = Frames.load(ho2)
    mixed = Frames.concatenate([ff, _ab_initio_like(ff)])
    with pytest.raises(ValueError, match="mix label sources"):
        prepare(TrainConfig(stage="scratch", output=str(tmp_path / "m"), **TINY), frames=mixed)


def test_max_time_stops_and_config_file(ho2, tmp_path):
    toml = tmp_path / "train.toml"
    toml.write_text(f'[train]\nstage = "scratch"\ndata = "{ho2}"\nepochs = 50\n'
                    f'max_time_s = 0.001\nfeatures = 8\ninteractions = 1\nbasis = 4\n')
    cfg = TrainConfig.from_sources(str(toml), output=str(tmp_path / "t"))
    summary = train(cfg)
    assert summary["stop_reason"] == "max wall time" and summary["epochs"] == 1
    again = train(cfg)  # resuming a run whose budget is spent adds no epoch
    assert again["epochs"] == 1 and again["stop_reason"] == "max wall time"
    toml.write_text("[train]\nlearning_rate = 1\n")
    with pytest.raises(ValueError, match="unknown keys"):
        TrainConfig.from_sources(str(toml))


def _trajectory(n=60):
    """A short Q-Force MD trajectory of HO2 (time-ordered frames)."""
    from ase import units
    from ase.md.verlet import VelocityVerlet
    from ase.md.velocitydistribution import thermalize_momenta

    from ffpt_ase.applications.systems import get_system
    calc, ref, _ = get_system("HO2")
    atoms = ref.copy()
    atoms.calc = calc
    thermalize_momenta(atoms, temperature_K=600, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    images = []
    for _ in range(n):
        dyn.run(2)
        a = atoms.copy()
        a.calc = None
        a.info["energy"] = atoms.get_potential_energy()
        a.arrays["forces"] = atoms.get_forces()
        images.append(a)
    fr = Frames.from_atoms_list(images, metadata={"source": "md"})
    fr.time = np.arange(n, dtype=float)
    return fr


def test_temporal_pair_loss_definition():
    from ffpt_ase.data.graphs import batch_from_frames
    fr = _trajectory(6)
    batch = batch_from_frames(fr, np.arange(6), [1, 8], 5.0)
    pairs = torch.tensor([[0, 1], [1, 2], [4, 5]])
    exact = {"energy": batch.energy.clone()}
    small = temporal_pair_loss(exact, batch, pairs)
    # exact energies: first term is zero, the trapezoid term only carries O(dx^3) error
    assert small.item() < 1e-4
    shifted = {"energy": batch.energy + 7.0}  # a constant offset changes nothing
    assert temporal_pair_loss(shifted, batch, pairs).item() == pytest.approx(small.item())
    wrong = {"energy": batch.energy + torch.arange(6.0)}
    assert temporal_pair_loss(wrong, batch, pairs).item() > 0.5


def test_temporal_pairs_training_and_requirements(tmp_path):
    fr = _trajectory()
    out = train(TrainConfig(stage="scratch", output=str(tmp_path / "tp"), epochs=2,
                            temporal_pairs=True, **TINY), frames=fr)
    assert out["epochs"] == 2
    fr.time = None
    with pytest.raises(ValueError, match="time-ordered"):
        prepare(TrainConfig(stage="scratch", output=str(tmp_path / "tq"), temporal_pairs=True,
                            **TINY), frames=fr)


def test_finetune_warns_when_the_pretrained_model_is_far_from_the_new_data(ho2, tmp_path, caplog):
    pt = tmp_path / "pt"
    train(TrainConfig(stage="pretrain", data=str(ho2), output=str(pt), epochs=1, **TINY))
    far = Frames.load(ho2)
    far.forces = far.forces * 1e-4  # a "new level of theory" with far weaker forces
    far.metadata = {"teacher": "ab initio"}
    far.save(tmp_path / "far.npz")
    with caplog.at_level("WARNING", logger="ffpt_ase.training.trainer"):
        train(TrainConfig(stage="finetune", data=str(tmp_path / "far.npz"), epochs=1,
                          init=str(pt / "best.pt"), output=str(tmp_path / "ft"), batch_size=16))
    assert "did not cover these environments" in caplog.text
    check = json.loads((tmp_path / "ft" / "config.json").read_text())["normalization"][
        "start_check"]
    assert check["ratio"] > 10 and check["reference_force_rms"] > 0


def test_progress_in_a_log_is_rate_limited(ho2, tmp_path, capsys):
    # stderr is not a terminal here: one line at most every 10 s, however many epochs
    train(TrainConfig(stage="pretrain", data=str(ho2), output=str(tmp_path / "pt"), epochs=20,
                      **TINY))
    err = capsys.readouterr().err
    assert "pretrain" in err and err.count("\r") <= 4


def test_moved_aside_names_count_up(tmp_path):
    from ffpt_ase.runfolder import RunFolder, move_aside, move_aside_file
    for k in (1, 2):
        with RunFolder(tmp_path / "run", "test", {"k": 0}):
            pass
        assert move_aside(tmp_path / "run") == tmp_path / f"run.old-{k}"
    assert move_aside(tmp_path / "run") is None
    (tmp_path / "pt.partial.npz").write_text("x")
    assert move_aside_file(tmp_path / "pt.partial.npz") == tmp_path / "pt.partial.old-1.npz"


# ----------------------------------------------------------------- training options
def test_huber_and_mse_losses_and_the_validation_loss():
    from types import SimpleNamespace

    from ffpt_ase.training.losses import TrainingLoss, error_term
    x = torch.tensor([0.001, -0.004, 0.5, -2.0], dtype=torch.float64)
    delta = 0.01
    expected = torch.where(x.abs() <= delta, 0.5 * x ** 2, delta * (x.abs() - 0.5 * delta))
    assert float(error_term(x, torch.zeros(4), "huber", delta)) == pytest.approx(
        float(expected.mean()), rel=1e-12)
    assert float(error_term(x, torch.zeros(4), "mse")) == pytest.approx(float((x ** 2).mean()))
    with pytest.raises(ValueError, match="unknown loss"):
        TrainingLoss(kind="l1")
    frames = SimpleNamespace(energy=np.array([1.0, 2.0]), forces=np.zeros((2, 2, 3)),
                             numbers_per_frame=np.array([[1, 8], [1, 0]]))
    e_pred = np.array([1.1, 1.7])
    f_pred = np.full((2, 2, 3), 0.2)
    mse = TrainingLoss(w_energy=1.0, w_forces=20.0)
    # the paper's validation loss: w_E RMSE_E^2 + w_F RMSE_F^2 over real atoms
    assert mse.validation_loss(frames, e_pred, f_pred) == pytest.approx(
        np.mean([0.01, 0.09]) + 20 * 0.04)
    hub = TrainingLoss(w_energy=1.0, w_forces=20.0, kind="huber", delta=0.05)
    assert hub.validation_loss(frames, e_pred, f_pred) == pytest.approx(
        np.mean([0.05 * (0.1 - 0.025), 0.05 * (0.3 - 0.025)]) + 20 * 0.05 * (0.2 - 0.025))


def test_gradient_clipping_bounds_every_step(ho2, tmp_path, monkeypatch):
    norms = []
    original = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        grads = [p.grad for group in self.param_groups for p in group["params"]
                 if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(g) for g in grads]))))
        return original(self, *args, **kwargs)
    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    train(TrainConfig(data=str(ho2), output=str(tmp_path / "clip"), epochs=2, grad_clip=1e-3,
                      **TINY))
    assert norms and max(norms) <= 1e-3 * (1 + 1e-5)
    norms.clear()
    train(TrainConfig(data=str(ho2), output=str(tmp_path / "free"), epochs=1, **TINY))
    assert max(norms) > 1e-2   # without clipping the same steps are far larger


def test_weight_average_validates_and_saves_the_average_and_resumes(ho2, tmp_path):
    from ffpt_ase.training.trainer import WeightAverage
    model = torch.nn.Linear(2, 1)
    avg = WeightAverage(model, 0.5)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    avg.update(model)
    np.testing.assert_allclose(avg.average["weight"], start + 0.5)
    with avg.applied(model):
        np.testing.assert_allclose(model.weight.detach(), start + 0.5)
    np.testing.assert_allclose(model.weight.detach(), start + 1.0)   # restored

    cfg = dict(data=str(ho2), ema_decay=0.9, lr=3e-3, seed=1, **TINY)
    train(TrainConfig(output=str(tmp_path / "a"), epochs=3, **cfg))
    last = load_checkpoint(tmp_path / "a" / "last.pt")
    best = load_checkpoint(tmp_path / "a" / "best.pt")
    raw = dict(last["model_state"])
    assert "ema" in last and last["ema"]["decay"] == 0.9
    if best["epoch"] == 3:   # the best model is the average, not the raw weights
        for name, t in last["ema"]["average"].items():
            assert torch.equal(best["model_state"][name], t)
        assert any(not torch.equal(best["model_state"][n], raw[n]) for n in last["ema"]["average"])
    # an interrupted run extended later equals the uninterrupted one, average included
    train(TrainConfig(output=str(tmp_path / "b"), epochs=2, **cfg))
    train(TrainConfig(output=str(tmp_path / "b"), epochs=3, **cfg))
    again = load_checkpoint(tmp_path / "b" / "last.pt")
    for name, t in last["ema"]["average"].items():
        assert torch.equal(again["ema"]["average"][name], t)
    assert rows(tmp_path / "a" / "log.csv")[-1]["val_loss"] == \
        rows(tmp_path / "b" / "log.csv")[-1]["val_loss"]


def test_user_e0s_fix_the_energy_shifts(ho2, tmp_path):
    e0 = {"H": -13.6, "O": -2041.8}
    (tmp_path / "e0.json").write_text(json.dumps(e0))
    for given in ("H:-13.6, O:-2041.8", str(tmp_path / "e0.json")):
        cfg = TrainConfig(data=str(ho2), output=str(tmp_path / f"e{len(given)}"), epochs=1,
                          e0s=given, **TINY)
        assert cfg.e0_energies() == {1: -13.6, 8: -2041.8}
        train(cfg)
        ck = load_checkpoint(tmp_path / f"e{len(given)}" / "best.pt")
        assert ck["model_state"]["shift"].tolist() == [-13.6, -2041.8]
    for bad, message in (("H=-13.6", "not SYMBOL:eV"), ("Xx:1", "not an element"),
                         ("H:abc", "not a number"), ("H:nan", "not finite")):
        with pytest.raises(ValueError, match=message):
            TrainConfig(data=str(ho2), e0s=bad)
    with pytest.raises(ValueError, match=r"E0s are missing for \['O'\]"):
        train(TrainConfig(data=str(ho2), output=str(tmp_path / "miss"), epochs=1,
                          e0s="H:-13.6", **TINY))


@pytest.mark.parametrize("field,value,message", [
    ("loss", "l1", "loss must be one of"), ("huber_delta", 0.0, "huber_delta must be > 0"),
    ("grad_clip", -1.0, "grad_clip must be > 0"), ("ema_decay", 1.0, "ema_decay must be"),
    ("plateau_epochs", 0, "plateau_epochs must be >= 1"),
    ("plateau_improvement", 1.0, "plateau_improvement must be between 0 and 1")])
def test_training_option_values_are_checked(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(data="x.npz", **{field: value})


def test_a_checkpoint_keeps_the_weights_of_its_moment():
    """The trainer holds the best epoch's checkpoint while training goes on (and writes it
    into every later last.pt): its tensors must be copies, not the live parameters."""
    from ffpt_ase.model.potential import Potential
    model = Potential([1, 8], n_features=8, n_interactions=1, n_basis=4)
    ck = model.checkpoint()
    before = ck["model_state"]["net.embedding.weight"].clone()
    with torch.no_grad():
        model.net.embedding.weight.add_(1.0)
    assert torch.equal(ck["model_state"]["net.embedding.weight"], before)


def test_validation_and_test_frames_from_their_own_files(ho2, tmp_path):
    """--valid-data replaces the random split (every data frame trains); --test-data
    errors of the best model land in summary.json; other fidelities are refused."""
    from ffpt_ase.training.metrics import error_metrics, predict
    from ffpt_ase.model.potential import Potential
    val_path, test_path = tmp_path / "val.npz", tmp_path / "test.npz"
    sample_system("HO2", 30, sigma=0.1, seed=5, show_progress=False).save(val_path)
    test = sample_system("HO2", 20, sigma=0.1, seed=6, show_progress=False)
    test.save(test_path)
    out = tmp_path / "own"
    s = train(TrainConfig(data=str(ho2), valid_data=str(val_path), test_data=str(test_path),
                          output=str(out), epochs=2, **TINY))
    split = np.load(out / "split.npz")
    assert len(split["train"]) == 240 and len(split["val"]) == 0
    model = Potential.from_checkpoint(load_checkpoint(out / "best.pt"))
    e, f = predict(model, test)
    expected = error_metrics(test, e, f)
    assert s["test"]["forces_mae"] == pytest.approx(expected["forces_mae"], rel=1e-5)
    assert json.loads((out / "summary.json").read_text())["test"]["n_frames"] == 20
    # the validation loss is that of the validation file
    val = Frames.load(val_path)
    e, f = predict(model, val)
    best_epoch = load_checkpoint(out / "best.pt")["epoch"]
    assert float(rows(out / "log.csv")[best_epoch - 1]["val_forces_mae"]) == \
        pytest.approx(error_metrics(val, e, f)["forces_mae"], rel=1e-5)
    ab = tmp_path / "ab.npz"
    _ab_initio_like(Frames.load(val_path)).save(ab)
    with pytest.raises(ValueError, match="validation data are labelled by"):
        train(TrainConfig(data=str(ho2), valid_data=str(ab), output=str(tmp_path / "x"),
                          epochs=1, **TINY))
    # another validation file is another run
    other = tmp_path / "val2.npz"
    sample_system("HO2", 30, sigma=0.1, seed=7, show_progress=False).save(other)
    with pytest.raises(ValueError, match="valid_data"):
        train(TrainConfig(data=str(ho2), valid_data=str(other), test_data=str(test_path),
                          output=str(out), epochs=3, **TINY))


def test_training_reads_labels_under_the_given_keys(ho2, tmp_path):
    """A MACE-style file (labels under REF_energy/REF_forces, a decoy `energy`) trains on
    the REF labels when told so; without the keys the decoy would be read."""
    from ase.io import write

    from ffpt_ase.data import read_frames
    frames = Frames.load(ho2)[np.arange(60)]
    images = []
    for k, a in enumerate(frames.to_atoms_list()):
        a.info["REF_energy"] = float(frames.energy[k])
        a.arrays["REF_forces"] = frames.forces[k]
        a.calc = None
        a.info["energy"] = 0.0
        images.append(a)
    write(tmp_path / "mace.xyz", images)
    assert (read_frames(tmp_path / "mace.xyz").energy == 0.0).all()   # the decoy by default
    s = train(TrainConfig(data=str(tmp_path / "mace.xyz"), energy_key="REF_energy",
                          forces_key="REF_forces", output=str(tmp_path / "m"), epochs=1,
                          **TINY))
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["data_metadata"]["label_keys"] == {"energy": ["REF_energy"],
                                                     "forces": ["REF_forces"]}
    assert s["epochs"] == 1


def test_the_plateau_rule_compares_the_last_window_with_the_best_before_it():
    def hist(maes):
        return [{"val_forces_mae": m, "val_loss": 10 * m} for m in maes]
    assert plateau_reached(hist([1.0, 0.9, 0.8]), None, 0.01) is None     # rule off
    assert plateau_reached(hist([1.0, 0.9, 0.8]), 3, 0.01) is None        # too few epochs
    # best before the window 0.80; the window's best 0.795 is 0.6 % better: a plateau
    reason = plateau_reached(hist([1.0, 0.8, 0.85, 0.795, 0.9]), 3, 0.01)
    assert reason and "0.795" in reason and "0.8)" in reason and "1 %" in reason
    # 0.79 is 1.25 % better: go on; a 2 % rule calls it a plateau
    assert plateau_reached(hist([1.0, 0.8, 0.85, 0.79, 0.9]), 3, 0.01) is None
    assert plateau_reached(hist([1.0, 0.8, 0.85, 0.79, 0.9]), 3, 0.02)
    # without force errors the validation loss is judged
    no_forces = [{"val_forces_mae": None, "val_loss": v} for v in (5.0, 4.0, 3.99, 3.98)]
    assert "val_loss" in plateau_reached(no_forces, 2, 0.01)


def test_the_earliest_plateau_stop_is_where_the_rule_first_holds_without_improvement():
    def hist(maes):
        return [{"val_forces_mae": m, "val_loss": 10 * m} for m in maes]
    assert earliest_plateau_stop(hist([1.0]), None, 0.01) is None
    # the best (0.5) is the last epoch: the rule needs it out of the window, 3 epochs on
    assert earliest_plateau_stop(hist([1.0, 0.9, 0.5]), 3, 0.01) == 6
    # the last 1 %-improvement was at epoch 2 (0.8); 0.795 at epoch 4 does not count
    values = [1.0, 0.8, 0.85, 0.795]
    assert earliest_plateau_stop(hist(values), 3, 0.01) == 5
    # and the rule agrees: with two more epochs that do not improve it holds at 5, not 4
    assert plateau_reached(hist(values + [0.9]), 3, 0.01)
    assert not plateau_reached(hist([1.0, 0.8, 0.85, 0.79]), 3, 0.01)
    # never before window + 1 epochs
    assert earliest_plateau_stop(hist([1.0]), 3, 0.01) == 4


def test_training_stops_on_a_plateau_and_a_resumed_run_keeps_the_stop(ho2, tmp_path):
    out = tmp_path / "plateau"
    # lr so small that nothing improves: the rule must stop the run after window + 1 epochs
    cfg = dict(stage="scratch", data=str(ho2), output=str(out), epochs=30, lr=1e-9,
               plateau_epochs=2, **TINY)
    summary = train(TrainConfig(**cfg))
    assert summary["epochs"] == 3 and summary["stop_reason"].startswith("plateau")
    log = rows(out / "log.csv")
    maes = [float(r["val_forces_mae"]) for r in log]
    assert min(maes[1:]) > 0.99 * maes[0]
    again = train(TrainConfig(**cfg))   # resuming adds no epoch
    assert again["epochs"] == 3 and again["stop_reason"] == summary["stop_reason"]
    # the rule is a stopping rule (like --epochs): a looser one continues the same run
    longer = train(TrainConfig(**{**cfg, "plateau_epochs": 4}))
    assert longer["epochs"] == 5 and longer["stop_reason"].startswith("plateau")


def test_the_start_check_looks_at_every_kind_of_frame(tmp_path):
    """Frames sorted by species, free atoms first (zero forces): the fine-tuning start
    check must still see the molecules' forces."""
    from ffpt_ase.applications.h2combustion.workflows import (rattled_species_frames,
                                                              rattled_species_sets)
    frames = rattled_species_frames(rattled_species_sets(150, seed=0))
    assert ((frames.numbers_per_frame[:150] > 0).sum(1) == 1).all()   # free atoms first
    frames.save(tmp_path / "species.npz")
    pt = tmp_path / "pt"
    train(TrainConfig(stage="pretrain", data=str(tmp_path / "species.npz"), output=str(pt),
                      epochs=1, **TINY))
    train(TrainConfig(stage="pretrain", data=str(tmp_path / "species.npz"), epochs=1,
                      init=str(pt / "best.pt"), output=str(tmp_path / "again"), **TINY))
    check = json.loads((tmp_path / "again" / "config.json").read_text())["normalization"][
        "start_check"]
    assert check["reference_force_rms"] > 1.0 and check["predicted_force_rms"] > 0


def _poison(monkeypatch, at_calls):
    """Make the training loss non-finite at the given (1-based) loss calls."""
    from ffpt_ase.training.losses import TrainingLoss
    original = TrainingLoss.__call__
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        value = original(self, *args, **kwargs)
        calls["n"] += 1
        return value * float("nan") if calls["n"] in at_calls else value
    monkeypatch.setattr(TrainingLoss, "__call__", poisoned)
    return calls


def test_a_diverging_epoch_goes_back_to_the_best_model_at_a_lower_rate(ho2, tmp_path,
                                                                        monkeypatch):
    import torch
    # at lr 2e-2 epoch 2 validates worse than epoch 1; 15 loss calls (batches) per epoch:
    # call 35 is in epoch 3, and the run must go back to epoch 1, not to the last epoch
    cfg = dict(stage="scratch", data=str(ho2), epochs=6, lr=2e-2, seed=1, **TINY)
    ref = train(TrainConfig(output=str(tmp_path / "ref"), **cfg))
    assert ref["divergences"] == []
    ref_log = rows(tmp_path / "ref" / "log.csv")
    assert float(ref_log[1]["val_loss"]) > float(ref_log[0]["val_loss"])
    _poison(monkeypatch, {35})
    out = tmp_path / "run"
    s = train(TrainConfig(output=str(out), divergence_retries=2, **cfg))
    assert s["epochs"] == 6 and len(s["divergences"]) == 1
    event = s["divergences"][0]
    assert event["epoch"] == 3 and event["back_to_epoch"] == 1
    assert event["discarded_epochs"] == 1
    assert event["lr_before"] == pytest.approx(2e-2) and event["lr_after"] == pytest.approx(1.4e-2)
    assert "non-finite" in event["error"]
    log = rows(out / "log.csv")
    assert [r["epoch"] for r in log] == ["1", "2", "3", "4", "5", "6"]
    # epoch 1 is the undisturbed run's; epoch 2 was redone from it at the lowered rate
    assert log[0]["val_loss"] == ref_log[0]["val_loss"]
    assert log[1]["val_loss"] != ref_log[1]["val_loss"]
    assert [float(r["lr"]) for r in log[1:]] == pytest.approx([1.4e-2] * 5)
    assert all(np.isfinite(float(r["train_loss"])) for r in log)
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["divergences"] == s["divergences"]
    # best_forces.pt is of a kept epoch: the lowest validation force MAE of the log
    maes = [float(r["val_forces_mae"]) for r in log]
    assert load_checkpoint(out / "best_forces.pt")["epoch"] == 1 + int(np.argmin(maes))
    monkeypatch.undo()


def test_a_non_finite_validation_loss_is_rolled_back_too(ho2, tmp_path, monkeypatch):
    """Weights that overflow on a validation frame while the training loss is still finite
    (nothing of that epoch is saved yet) go back to the best model like a training divergence."""
    from ffpt_ase.training.losses import TrainingLoss
    original, calls = TrainingLoss.validation_loss, {"n": 0}

    def poisoned(self, *args, **kwargs):
        calls["n"] += 1
        return float("nan") if calls["n"] == 3 else original(self, *args, **kwargs)
    monkeypatch.setattr(TrainingLoss, "validation_loss", poisoned)
    cfg = dict(stage="scratch", data=str(ho2), epochs=4, lr=1e-3, seed=1, **TINY)
    s = train(TrainConfig(output=str(tmp_path / "run"), divergence_retries=1, **cfg))
    assert s["epochs"] == 4 and len(s["divergences"]) == 1
    event = s["divergences"][0]
    assert event["epoch"] == 3 and "validation" in event["error"]
    assert event["back_to_epoch"] in (1, 2)
    log = rows(tmp_path / "run" / "log.csv")
    assert [r["epoch"] for r in log] == ["1", "2", "3", "4"]
    assert all(np.isfinite(float(r["val_loss"])) for r in log)
    calls["n"] = 0   # and without a retry the run stops with the validation error
    with pytest.raises(FloatingPointError, match="non-finite validation loss"):
        train(TrainConfig(output=str(tmp_path / "none"), **cfg))
    monkeypatch.undo()


def test_without_retries_or_after_the_last_one_a_divergence_stops_the_run(ho2, tmp_path,
                                                                           monkeypatch):
    cfg = dict(stage="scratch", data=str(ho2), epochs=4, lr=1e-3, seed=1, **TINY)
    _poison(monkeypatch, {20})
    with pytest.raises(FloatingPointError, match="non-finite training loss in epoch 2"):
        train(TrainConfig(output=str(tmp_path / "none"), **cfg))   # the default: 0 retries
    # one retry, two divergences: call 20 (epoch 2: calls 16-30), then call 34 in the
    # retried epoch 2 (calls 31-45)
    _poison(monkeypatch, {20, 34})
    with pytest.raises(FloatingPointError, match="epoch 2"):
        train(TrainConfig(output=str(tmp_path / "one"), divergence_retries=1, **cfg))
    # the first epoch has no checkpoint to go back to
    _poison(monkeypatch, {3})
    with pytest.raises(FloatingPointError, match="epoch 1"):
        train(TrainConfig(output=str(tmp_path / "first"), divergence_retries=3, **cfg))
    monkeypatch.undo()
    with pytest.raises(ValueError, match="divergence_retries"):
        TrainConfig(stage="scratch", data=str(ho2), divergence_retries=-1)


def test_best_forces_pt_holds_the_lowest_validation_force_mae(ho2, tmp_path):
    """best_forces.pt is the epoch of the lowest validation force MAE (best.pt: of the lowest
    validation loss), its weights give that MAE, and a run whose last.pt predates
    best_forces.pt writes one only when an epoch beats the force MAE of its history."""
    from ffpt_ase.model.potential import Potential
    from ffpt_ase.training.metrics import error_metrics, predict
    out = tmp_path / "run"
    cfg = dict(stage="scratch", data=str(ho2), seed=3, output=str(out), **TINY)
    s = train(TrainConfig(epochs=6, **cfg))
    log = rows(out / "log.csv")
    maes = [float(r["val_forces_mae"]) for r in log]
    ck = load_checkpoint(out / "best_forces.pt")
    assert ck["epoch"] == 1 + int(np.argmin(maes)) == s["best_forces_epoch"]
    val = Frames.load(ho2)[np.load(out / "split.npz")["val"]]
    e, f = predict(Potential.from_checkpoint(ck), val)
    assert error_metrics(val, e, f)["forces_mae"] == pytest.approx(min(maes), rel=1e-5)
    # an older run's last.pt has no best_forces: the mark is its history's best
    last = load_checkpoint(out / "last.pt")
    last.pop("best_forces")
    torch.save(last, out / "last.pt")
    (out / "best_forces.pt").unlink()
    train(TrainConfig(epochs=10, **cfg))
    later = [float(r["val_forces_mae"]) for r in rows(out / "log.csv")][6:]
    if min(later) < min(maes):
        assert load_checkpoint(out / "best_forces.pt")["epoch"] == 7 + int(np.argmin(later))
    else:
        assert not (out / "best_forces.pt").exists()
