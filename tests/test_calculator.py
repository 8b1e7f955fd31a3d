"""FFPTCalculator: a drop-in ASE calculator (MD, optimizers, PLUMED), errors, committee."""

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.calculators.calculator import PropertyNotImplementedError

from conftest import finite_difference_forces
from ffpt_ase import FFPTCalculator
from ffpt_ase.model.potential import CheckpointError, Potential
from ffpt_ase.applications.systems import get_system


def _checkpoint(path, elements=(1, 8), seed=0, cutoff=4.0):
    torch.manual_seed(seed)
    m = Potential(list(elements), n_features=16, n_interactions=2, n_basis=8, cutoff=cutoff)
    m.shift.copy_(torch.tensor([-0.5, -1.5], dtype=torch.float64)[:len(m.elements)])
    torch.save(m.checkpoint(stage="test"), path)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("m") / "model.pt")


def ho2():
    calc, ref, _ = get_system("HO2")
    return ref


def test_forces_are_energy_gradient_float64(ckpt):
    atoms = ho2()
    atoms.rattle(0.05, seed=1)
    atoms.calc = FFPTCalculator(ckpt, dtype="float64")
    f = atoms.get_forces()

    def energy(p):
        a = atoms.copy()
        a.positions = p
        a.calc = FFPTCalculator(ckpt, dtype="float64")
        return a.get_potential_energy()

    np.testing.assert_allclose(f, finite_difference_forces(energy, atoms.positions), atol=1e-7)
    assert atoms.get_potential_energy() == atoms.calc.results["free_energy"]


def test_float32_close_to_float64(ckpt):
    a32, a64 = ho2(), ho2()
    a32.calc = FFPTCalculator(ckpt)
    a64.calc = FFPTCalculator(ckpt, dtype="float64")
    assert a32.get_potential_energy() == pytest.approx(a64.get_potential_energy(), abs=1e-4)


def test_stress_for_periodic_cells_only(ckpt):
    rng = np.random.default_rng(0)
    water = Atoms("OH2OH2", positions=rng.uniform(0, 5, (6, 3)), cell=np.eye(3) * 5.0, pbc=True)
    water.calc = FFPTCalculator(ckpt, dtype="float64")
    s = water.get_stress()
    assert s.shape == (6,) and np.isfinite(s).all()
    # pressure-like check: uniform scaling derivative
    h = 1e-5
    e = []
    for eps in (h, -h):
        a = water.copy()
        a.set_cell(water.cell * (1 + eps), scale_atoms=True)
        a.calc = FFPTCalculator(ckpt, dtype="float64")
        e.append(a.get_potential_energy())
    trace_fd = (e[0] - e[1]) / (2 * h) / water.get_volume()
    assert s[:3].sum() == pytest.approx(trace_fd, rel=1e-5, abs=1e-9)
    mol = ho2()
    mol.calc = FFPTCalculator(ckpt)
    with pytest.raises(PropertyNotImplementedError):
        mol.get_stress()


def test_errors(ckpt, tmp_path):
    bad = Atoms("CO", positions=[[0, 0, 0], [0, 0, 1.1]])
    bad.calc = FFPTCalculator(ckpt)
    with pytest.raises(ValueError, match=r"\['C'\] not known"):
        bad.get_potential_energy()
    nan = ho2()
    nan.positions[0, 0] = np.nan
    nan.calc = FFPTCalculator(ckpt)
    with pytest.raises(ValueError, match="non-finite"):
        nan.get_forces()
    torch.save({"model": "something else"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an ffpt-ase"):
        FFPTCalculator(tmp_path / "other.pt")
    (tmp_path / "garbage.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="could not be read"):
        FFPTCalculator(tmp_path / "garbage.pt")
    with pytest.raises(FileNotFoundError):
        FFPTCalculator(tmp_path / "missing.pt")


def test_committee_reports_disagreement(ckpt, tmp_path):
    other = _checkpoint(tmp_path / "b.pt", seed=1)
    atoms = ho2()
    atoms.calc = FFPTCalculator([ckpt, other])
    atoms.get_forces()
    r = atoms.calc.results
    assert r["force_disagreement"] > 0 and r["forces_std"].shape == (3, 3)
    single = [FFPTCalculator(p).get_potential_energy(ho2()) for p in (ckpt, other)]
    assert r["energy"] == pytest.approx(np.mean(single), abs=1e-5)


def test_langevin_md_and_optimizer(ckpt):
    from ase.md.langevin import Langevin
    from ase.optimize import BFGS
    atoms = ho2()
    atoms.calc = FFPTCalculator(ckpt, dtype="float64")
    BFGS(atoms, logfile=None).run(fmax=0.05, steps=50)
    dyn = Langevin(atoms, timestep=0.5 * units.fs, temperature_K=300,
                   friction=2.0 / (1000 * units.fs), fixcm=False, rng=np.random.default_rng(0))
    dyn.run(20)
    assert np.isfinite(atoms.positions).all() and dyn.nsteps == 20


def test_works_inside_ase_plumed(ckpt, tmp_path, monkeypatch):
    pytest.importorskip("plumed", reason="PLUMED kernel (hillclimber) not installed")
    from ase.calculators.plumed import Plumed
    from ase.md.verlet import VelocityVerlet
    monkeypatch.chdir(tmp_path)
    atoms = ho2()
    ts = 0.5 * units.fs
    setup = ["UNITS LENGTH=A TIME=fs ENERGY=kj/mol",
             "d: DISTANCE ATOMS=1,3",
             "restraint: RESTRAINT ARG=d AT=1.0 KAPPA=100.0",
             "PRINT ARG=d,restraint.bias STRIDE=1 FILE=COLVAR"]
    with Plumed(FFPTCalculator(ckpt), setup, ts, atoms=atoms, kT=0.0259, log="plumed.log") as calc:
        atoms.calc = calc
        VelocityVerlet(atoms, timestep=ts).run(10)
    data = np.loadtxt(tmp_path / "COLVAR")
    assert data.shape[0] >= 10
    np.testing.assert_allclose(data[-1, 1], atoms.get_distance(0, 2, mic=False), atol=0.05)


def test_built_from_model_objects_with_parameters_and_atomic_energies(ckpt):
    """NequIP's pattern: the calculator takes a model in memory; from_checkpoints reads
    files; both give the same numbers, parameters record what it is, and the per-atom
    energies sum to the energy."""
    from ffpt_ase.model.potential import load_potential
    model = load_potential(ckpt)
    assert model.source == str(ckpt)
    a, b = ho2(), ho2()
    a.calc = FFPTCalculator(model, dtype="float64")
    b.calc = FFPTCalculator.from_checkpoints(ckpt, dtype="float64")
    assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-10)
    np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-10)
    params = b.calc.todict()
    assert params["model"] == [str(ckpt)] and params["dtype"] == "float64"
    assert params["device"] == "cpu" and params["compile"] is False
    e_atoms = b.get_potential_energies()
    assert e_atoms.shape == (3,)
    assert e_atoms.sum() == pytest.approx(b.get_potential_energy(), abs=1e-9)
    fresh = FFPTCalculator(Potential([1, 8], 8, 1, 4, 4.0))
    assert fresh.todict()["model"] == ["in-memory model"]
    with pytest.raises(TypeError, match="Potential models or checkpoint paths"):
        FFPTCalculator([object()])


def test_compiled_network_gives_the_eager_numbers(ckpt):
    """``compile=True`` (torch.compile, dynamic shapes; what the benchmarks' metadynamics
    walkers use) gives the eager energies and forces, also after the atom and edge counts
    change (a second system in the same calculator)."""
    rng = np.random.default_rng(3)
    systems = [ho2(), Atoms("OH2OH2", positions=rng.uniform(0, 4, (6, 3)))]
    compiled = FFPTCalculator(ckpt, dtype="float64", compile=True)
    assert compiled.todict()["compile"] is True
    # the same weights: a run folder started eagerly resumes compiled, and back
    assert compiled.fingerprint() == FFPTCalculator(ckpt, dtype="float64").fingerprint()
    for atoms in systems:
        a, b = atoms.copy(), atoms.copy()
        a.calc = FFPTCalculator(ckpt, dtype="float64")
        b.calc = compiled
        assert b.get_potential_energy() == pytest.approx(a.get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(b.get_forces(), a.get_forces(), atol=1e-9)
