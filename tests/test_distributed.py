"""Data-parallel training with torchrun: two CPU processes (gloo) train exactly as one process
on the same global batch, write one run folder, and a run resumes with another number of
processes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from ffpt_ase.applications.systems import sample_system
from ffpt_ase.data.frames import Frames
from ffpt_ase.data.graphs import batch_from_frames
from ffpt_ase.training.distributed import Distributed
from ffpt_ase.training.losses import TrainingLoss

TRAIN = ["--features", "8", "--interactions", "1", "--basis", "6", "--batch-size", "6",
         "--dtype", "float64", "--seed", "3"]


@pytest.fixture(scope="module")
def mixed_frames(tmp_path_factory):
    """HO2 and H2O2 frames in one file (3 and 4 atoms: shares of a batch hold different
    numbers of force components)."""
    parts = [sample_system(name, 30, seed=k) for k, name in enumerate(("HO2", "H2O2"))]
    frames = Frames.concatenate(parts)
    path = tmp_path_factory.mktemp("dist") / "mixed.npz"
    frames.save(path)
    return path


def torchrun(nproc, *args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "ffpt_ase.cli.main", *args]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


def one_process(*args, cwd):
    from ffpt_ase.cli.main import main
    old = os.getcwd()
    os.chdir(cwd)
    try:
        assert main(list(args)) == 0
    finally:
        os.chdir(old)


def log_rows(folder):
    import csv
    with open(folder / "log.csv") as fh:
        return list(csv.DictReader(fh))


def weights(folder, name="last.pt"):
    return torch.load(folder / name, weights_only=True)["model_state"]


def assert_same_training(a, b, rtol=1e-10):
    ra, rb = log_rows(a), log_rows(b)
    assert len(ra) == len(rb)
    for x, y in zip(ra, rb):
        for key in ("train_loss", "val_loss", "val_energy_mae", "val_forces_mae", "lr"):
            assert float(x[key]) == pytest.approx(float(y[key]), rel=rtol), key
    wa, wb = weights(a), weights(b)
    for key in wa:
        np.testing.assert_allclose(wa[key].numpy(), wb[key].numpy(), rtol=rtol, atol=1e-12,
                                   err_msg=key)


def test_two_processes_train_as_one_on_the_same_global_batch(mixed_frames, tmp_path):
    torchrun(2, "train", "--data", str(mixed_frames), "-o", "two", "--epochs", "1", *TRAIN,
             cwd=tmp_path)
    one_process("train", "--data", str(mixed_frames), "-o", "one", "--epochs", "1", *TRAIN,
                cwd=tmp_path)
    assert_same_training(tmp_path / "two", tmp_path / "one")
    config = json.loads((tmp_path / "two" / "config.json").read_text())
    assert config["world_size"] == 2
    assert json.loads((tmp_path / "one" / "config.json").read_text())["world_size"] == 1
    # one writer: the same files as a plain run, none of them twice
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == \
        sorted(p.name for p in (tmp_path / "one").iterdir())


def test_a_distributed_run_resumes_with_one_process(mixed_frames, tmp_path):
    torchrun(2, "train", "--data", str(mixed_frames), "-o", "run", "--epochs", "1", *TRAIN,
             cwd=tmp_path)
    one_process("train", "--data", str(mixed_frames), "-o", "run", "--epochs", "2", *TRAIN,
                cwd=tmp_path)
    one_process("train", "--data", str(mixed_frames), "-o", "ref", "--epochs", "2", *TRAIN,
                cwd=tmp_path)
    assert_same_training(tmp_path / "run", tmp_path / "ref")


def test_shares_of_a_batch_add_up_to_the_whole_batch_loss(mixed_frames):
    """The arithmetic behind the equivalence: each share divides its errors by the whole
    batch's counts, so the shares' losses (and gradients) sum to the batch's; with the
    temporal-pair term and the Huber loss too."""
    from ffpt_ase.data import read_frames
    from ffpt_ase.model.potential import Potential
    frames = read_frames(mixed_frames)
    torch.manual_seed(0)
    model = Potential([1, 8], 8, 1, 6).double()
    model.fit_normalization(frames)
    idx = np.array([0, 1, 2, 3, 35, 36, 40])        # 3- and 4-atom frames
    pairs_all = torch.tensor([[0, 1], [2, 3]])
    for kind in ("mse", "huber"):
        loss = TrainingLoss(1.0, 20.0, 0.5, kind=kind, delta=0.05)

        def value(sel, pairs=None, counts=None):
            batch = batch_from_frames(frames, idx[sel], model.elements, model.cutoff
                                      ).to(dtype=torch.float64)
            return loss(model(batch), batch, pairs, counts)

        whole = value(np.arange(7), pairs_all)
        counts = {"frames": 7, "components": 3 * int(frames.n_atoms[idx].sum()), "pairs": 2}
        # share 1 holds frames 0-3 (both pairs), share 2 frames 35, 36, 40
        parts = value(np.arange(4), pairs_all, counts) + value(np.arange(4, 7), None, counts)
        assert float(parts.detach()) == pytest.approx(float(whole.detach()), rel=1e-12)

        def grads(loss_value):
            params = list(model.parameters())
            g = torch.autograd.grad(loss_value, params, allow_unused=True)
            return [torch.zeros_like(p) if x is None else x for p, x in zip(params, g)]

        g_whole = grads(whole)
        g_parts = [a + b for a, b in zip(grads(value(np.arange(4), pairs_all, counts)),
                                         grads(value(np.arange(4, 7), None, counts)))]
        assert max(float(g.abs().max()) for g in g_whole) > 0
        for a, b in zip(g_whole, g_parts):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-12)


def test_shares_cover_every_frame_once():
    items = np.arange(11)
    shares = [Distributed(rank=r, world_size=3).share(items) for r in range(3)]
    assert np.array_equal(np.concatenate(shares), items)
    assert [len(s) for s in shares] == [4, 4, 3]
    assert np.array_equal(Distributed().share(items), items)


def test_a_world_size_without_torchrun_variables_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="start distributed training with torchrun"):
        Distributed.from_environment("cpu")
    assert Distributed(rank=1, world_size=2, local_rank=1).device_name("cuda") == "cuda:1"
    assert Distributed().device_name("cuda") == "cuda"
