"""The GPU path end to end: graphs built on the device, the calculator, training, the
ensemble engine and the exported model on CUDA give the CPU's numbers. Marked ``gpu``:
skipped where torch sees no GPU (CI, this project's machines); run them where one is lent
with ``pytest -m gpu tests/test_gpu.py``."""

import numpy as np
import pytest
import torch
from ase.build import molecule

from ffpt_ase.calculators import FFPTCalculator
from ffpt_ase.data.graphs import build_batch
from ffpt_ase.model.potential import Potential

from conftest import perturbed_potential, water_box

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


@pytest.fixture(scope="module")
def model():
    return perturbed_potential(seed=0, noise=0.1)


def systems():
    ethanol = molecule("CH3CH2OH")
    ethanol.rattle(0.1, seed=1)
    box = water_box(6.0)
    box.rattle(0.05, seed=2)
    return [ethanol, box]


def test_graphs_on_the_gpu_equal_the_cpu_ones():
    rng = np.random.default_rng(0)
    pos = rng.uniform(size=(3, 6, 3)) * 6.0
    num = np.array([[1, 8, 8, 1, 1, 8]] * 3)
    for pbc in ([False] * 3, [True] * 3):
        kw = dict(cell=np.diag([6.0, 6.5, 7.0])[None].repeat(3, 0), pbc=pbc)
        a = build_batch(pos, num, [1, 8], 5.0, **kw)
        b = build_batch(pos, num, [1, 8], 5.0, device="cuda", **kw)
        assert b.edge_i.is_cuda
        edges = lambda g: sorted(zip(g.edge_i.tolist(), g.edge_j.tolist(),  # noqa: E731
                                     map(tuple, g.shift_frac.long().tolist())))
        assert edges(a) == edges(b)


def test_calculator_on_the_gpu_matches_the_cpu(model):
    cpu = FFPTCalculator(Potential.from_checkpoint(model.checkpoint()), dtype="float64")
    gpu = FFPTCalculator(Potential.from_checkpoint(model.checkpoint()), dtype="float64",
                         device="cuda")
    for atoms in systems():
        a, b = atoms.copy(), atoms.copy()
        a.calc, b.calc = cpu, gpu
        assert b.get_potential_energy() == pytest.approx(a.get_potential_energy(), abs=1e-8)
        np.testing.assert_allclose(b.get_forces(), a.get_forces(), atol=1e-8)
        if atoms.pbc.all():
            np.testing.assert_allclose(b.get_stress(), a.get_stress(), atol=1e-9)


def test_training_on_the_gpu_follows_the_cpu(tmp_path):
    from ffpt_ase.applications.systems import sample_system
    from ffpt_ase.training.config import TrainConfig
    from ffpt_ase.training.trainer import train
    sample_system("HO2", 64).save(tmp_path / "d.npz")
    out = {}
    for device in ("cpu", "cuda"):
        cfg = TrainConfig(data=str(tmp_path / "d.npz"), output=str(tmp_path / device),
                          epochs=2, batch_size=8, features=16, interactions=2, basis=8,
                          dtype="float64", device=device)
        out[device] = train(cfg)["final"]
    for key in ("train_loss", "val_loss", "val_forces_mae"):
        assert out["cuda"][key] == pytest.approx(out["cpu"][key], rel=1e-6), key
    ckpt = torch.load(tmp_path / "cuda" / "best.pt", weights_only=True)
    assert all(t.device.type == "cpu" for t in ckpt["model_state"].values())


def test_ensemble_on_the_gpu_matches_the_cpu(model):
    from ffpt_ase.simulate.ensemble import BatchedForces
    replicas = systems()
    out = {}
    for device in ("cpu", "cuda"):
        calc = FFPTCalculator(Potential.from_checkpoint(model.checkpoint()), dtype="float64",
                              device=device)
        forces = BatchedForces(calc, replicas)
        pos = torch.tensor(np.concatenate([a.positions for a in replicas]), device=device)
        e, f = forces(pos, np.ones(len(replicas), bool))
        out[device] = (e.cpu().numpy(), f.cpu().numpy())
    np.testing.assert_allclose(out["cuda"][0], out["cpu"][0], atol=1e-8)
    np.testing.assert_allclose(out["cuda"][1], out["cpu"][1], atol=1e-8)


def test_exported_model_runs_on_the_gpu(model, tmp_path):
    from ffpt_ase.model.export import export_potential
    path = export_potential(model, tmp_path / "m.pt")
    scripted = torch.jit.load(str(path), map_location="cuda")
    for atoms in systems():
        args = [torch.tensor(atoms.numbers), torch.tensor(atoms.positions),
                torch.tensor(atoms.cell.array), torch.tensor(atoms.pbc)]
        on_gpu = scripted(*[a.cuda() for a in args])
        atoms.calc = FFPTCalculator(Potential.from_checkpoint(model.checkpoint()),
                                    dtype="float64")
        assert float(on_gpu["energy"]) == pytest.approx(atoms.get_potential_energy(),
                                                        abs=1e-5)
        np.testing.assert_allclose(on_gpu["forces"].cpu().numpy(), atoms.get_forces(),
                                   atol=1e-7)
