"""The ensemble engine: batched BAOAB/NVE integrator, failure detection on tensors, exact
resume, and the stability command on it."""

import json

import numpy as np
import pytest
import torch
from ase import units
from scipy import stats

from conftest import SimulatedCrash, crash_at_write
from conftest import water_box as conftest_water_box
from ffpt_ase.applications.systems import get_system
from ffpt_ase.applications.systems import start_structure as load_structure
from ffpt_ase.calculators import FFPTCalculator
from ffpt_ase.model.potential import Potential
from ffpt_ase.simulate.ensemble import (BatchedForces, CalculatorForces, Ensemble,
                                        state_from_json, state_to_json)
from ffpt_ase.simulate.stability import StabilityConfig, StabilityCriteria, run_stability
from ffpt_ase.simulate.stability_batched import BatchCriteria


def small_calc(elements=(1, 6, 8), dtype="float64", seed=0, features=16):
    torch.manual_seed(seed)
    model = Potential(list(elements), n_features=features, n_interactions=2, n_basis=8)
    return FFPTCalculator(model, dtype=dtype)


def water_box():
    return conftest_water_box(6.5, (1.0, 4.0, 2.5))


def test_batched_forces_equal_single_ase_calls_for_a_mixed_batch():
    """Molecules of different sizes and a periodic box in one call: each replica's energy
    and forces are those of FFPTCalculator on that replica alone."""
    from ase.build import molecule
    calc = small_calc()
    rng = np.random.default_rng(0)
    replicas = [molecule("CH3COOH"), load_structure("HO2"), water_box(), molecule("C6H6")]
    for a in replicas:
        a.positions += 0.05 * rng.normal(size=a.positions.shape)
    forces = BatchedForces(calc, replicas)
    x = torch.from_numpy(np.concatenate([a.positions for a in replicas]))
    energy, f = forces(x, np.ones(len(replicas), bool))
    for k, a in enumerate(replicas):
        a.calc = calc
        assert float(energy[k]) == pytest.approx(a.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(f[forces.offsets[k]:forces.offsets[k + 1]].numpy(),
                                   a.get_forces(), atol=1e-10)
    # a replica left out: NaN energy, zero forces, the others unchanged
    running = np.array([True, False, True, True])
    e2, f2 = forces(x, running)
    o = forces.offsets
    assert np.isnan(float(e2[1])) and float(f2[o[1]:o[2]].abs().sum()) == 0.0
    assert float(e2[2]) == pytest.approx(float(energy[2]), abs=1e-10)


def _nve_energy_error(dt_fs, steps):
    calc = small_calc()
    atoms = load_structure("H2O2")
    ens = Ensemble([atoms], calc, dt_fs, temperature_K=300.0, friction_per_ps=0.0,
                   seeds=[[1, 0]])
    total = []
    for _ in range(steps):
        ens.step()
        total.append(float(ens.energy[0]) + ens.kinetic_energy()[0])
    total = np.array(total)
    return np.abs(total - total[0]).max()


def test_nve_conserves_energy_with_second_order_error():
    """Velocity Verlet (zero friction): the total energy of H2O2 over 100 fs stays within
    2 meV at 0.25 fs, and the error falls about 4x when the step is halved (second order)."""
    coarse = _nve_energy_error(0.25, 400)
    fine = _nve_energy_error(0.125, 800)
    assert coarse < 2e-3
    assert 2.5 < coarse / fine < 6.0


def test_langevin_kinetic_energy_follows_maxwell_boltzmann_per_replica_temperature():
    """BAOAB with a strong bath: sampled kinetic energies of 3-atom replicas follow the
    Gamma(3N/2, kT) law of Maxwell-Boltzmann velocities (Kolmogorov-Smirnov), each replica
    at its own temperature (300 K and 600 K)."""
    calc = small_calc(features=8)
    n = 64
    temps = np.where(np.arange(n) < n // 2, 300.0, 600.0)
    ens = Ensemble([load_structure("HO2")] * n, calc, 0.5, temperature_K=temps,
                   friction_per_ps=100.0, seeds=[[5, k] for k in range(n)])
    ens.run(100)
    samples = []
    for _ in range(40):
        ens.run(10)
        samples.append(ens.kinetic_energy())
    ke = np.array(samples)              # (samples, replicas)
    for group, t in ((slice(0, n // 2), 300.0), (slice(n // 2, n), 600.0)):
        reduced = ke[:, group].ravel() / (units.kB * t)
        assert stats.kstest(reduced, stats.gamma(a=4.5).cdf).pvalue > 1e-3
        mean_t = 2 * ke[:, group].mean() / (9 * units.kB)
        assert mean_t == pytest.approx(t, rel=0.05)


def test_identical_replicas_with_one_seed_give_identical_trajectories():
    calc = small_calc(features=8)
    ens = Ensemble([load_structure("HO2")] * 5, calc, 0.5, 300.0, 2.0, seeds=[[9]] * 5)
    ens.run(60)
    ref = ens.positions_of(0)
    for k in range(1, 5):
        np.testing.assert_allclose(ens.positions_of(k), ref, atol=1e-12)


def test_a_replica_in_a_batch_follows_the_trajectory_it_has_alone():
    from ase.build import molecule
    calc = small_calc()
    mixed = [load_structure("HO2"), molecule("CH3COOH"), water_box(), load_structure("H2O2")]
    seeds = [[3, k] for k in range(len(mixed))]
    together = Ensemble(mixed, calc, 0.5, 500.0, 2.0, seeds=seeds)
    together.run(80)
    for k in (1, 2):
        alone = Ensemble([mixed[k]], calc, 0.5, 500.0, 2.0, seeds=[seeds[k]])
        alone.run(80)
        np.testing.assert_allclose(alone.positions_of(0), together.positions_of(k),
                                   atol=1e-9)
        np.testing.assert_allclose(alone.atoms(0).get_velocities(),
                                   together.atoms(k).get_velocities(), atol=1e-9)
    assert np.isfinite(together.energy.numpy()).all()


def test_a_frozen_replica_stays_put_while_the_others_move():
    calc = small_calc(features=8)
    ens = Ensemble([load_structure("HO2")] * 3, calc, 0.5, 300.0, 2.0,
                   seeds=[[0, k] for k in range(3)])
    ens.run(5)
    ens.freeze(1)
    before = [ens.positions_of(k) for k in range(3)]
    ens.run(20)
    np.testing.assert_array_equal(ens.positions_of(1), before[1])
    assert not np.allclose(ens.positions_of(0), before[0])
    assert np.isnan(float(ens.energy[1])) and ens.nonfinite().tolist() == []


def test_nonfinite_replicas_are_found_on_the_tensors():
    calc = small_calc(features=8)
    ens = Ensemble([load_structure("HO2")] * 4, calc, 0.5, 300.0, 2.0)
    ens.x[4] = float("nan")        # replica 1 (atoms 3-5)
    ens.f[10, 2] = float("inf")    # replica 3
    assert ens.nonfinite().tolist() == [1, 3]


def test_ensemble_state_round_trips_and_continues_exactly():
    calc = small_calc(features=8)
    make = (lambda: Ensemble([load_structure("HO2"), load_structure("H2O2")], calc, 0.5,
                             300.0, 2.0, seeds=[[1, 0], [1, 1]]))
    a = make()
    a.run(30)
    state = state_from_json(json.loads(json.dumps(state_to_json(a.state_dict()))))
    a.run(30)
    b = make()
    b.load_state_dict(state)
    b.run(30)
    np.testing.assert_array_equal(a.x.numpy(), b.x.numpy())
    np.testing.assert_array_equal(a.v.numpy(), b.v.numpy())
    with pytest.raises(ValueError, match="other replicas"):
        Ensemble([load_structure("HO2")], calc, 0.5).load_state_dict(state)


def test_batch_criteria_agree_with_the_per_frame_criteria():
    """The tensor criteria flag the replicas, atoms and lengths that StabilityCriteria.check
    finds frame by frame, including minimum-image distances in a periodic box."""
    ho2, box = load_structure("HO2"), water_box()
    replicas = [ho2, ho2, box, box]
    crit = [StabilityCriteria(ho2), StabilityCriteria(ho2), StabilityCriteria(box),
            StabilityCriteria(box)]
    frames = [a.copy() for a in replicas]
    frames[1].positions[0] += [0.9, 0.0, 0.0]        # an O-H bond stretched by ~0.9 A
    frames[3].positions[3:6] += [6.5, 0.0, 0.0]      # a molecule moved by a lattice vector
    oh = frames[3].positions[1] - frames[3].positions[0]
    frames[3].positions[1] += 0.7 * oh / np.linalg.norm(oh)   # an O-H bond 0.7 A longer
    offsets = np.concatenate([[0], np.cumsum([len(a) for a in replicas])])
    checks = BatchCriteria(crit, replicas, offsets)
    x = torch.from_numpy(np.concatenate([f.positions for f in frames]))
    failed = checks.bond_failures(x, np.ones(4, bool))
    assert sorted(failed) == [1, 3]
    for k in failed:
        reason, details = crit[k].check(frames[k])
        assert reason == "bond_deviation" and details["atoms"] == failed[k]["atoms"]
        assert details["length_A"] == pytest.approx(failed[k]["length_A"], abs=1e-9)
    assert checks.bond_failures(x, np.array([True, False, True, True])).keys() == {3}
    squeezed = frames[0].copy()
    squeezed.positions[2] = squeezed.positions[0] + [0.0, 0.0, 0.8]   # a new O-O or H-O bond
    x2 = torch.from_numpy(np.concatenate([squeezed.positions] + [f.positions
                                                                 for f in frames[1:]]))
    new = checks.new_bonds(x2, np.ones(4, bool))
    assert set(new) >= {0} and crit[0].new_bond(squeezed)[:2] == new[0][:2]


def test_calculator_forces_loop_any_ase_calculator():
    calc, ho2, _ = get_system("HO2")
    forces = CalculatorForces(calc, [ho2, ho2])
    x = torch.from_numpy(np.concatenate([ho2.positions, ho2.positions + 0.01]))
    e, f = forces(x, np.array([True, True]))
    probe = ho2.copy()
    probe.calc = calc
    assert float(e[0]) == pytest.approx(probe.get_potential_energy())
    np.testing.assert_allclose(f[:3].numpy(), probe.get_forces())


# ------------------------------------------------------------------------- stability
def _stability(tmp_path, name, **kw):
    calc = small_calc(elements=(1, 8), features=8, seed=1)
    cfg = StabilityConfig(system="HO2", trajectories=6, time_ps=0.1, temperature_K=100.0,
                          check_interval=10, output=str(tmp_path / name), seed=2, **kw)
    return run_stability(cfg, calc=calc, start=load_structure("HO2"), show_progress=False)


def _results(summary):
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in summary["trajectories"]]


def test_batched_stability_records_failures_and_lets_the_others_run(tmp_path):
    s = _stability(tmp_path, "run", save_interval=20)
    assert s["n_trajectories"] == 6 and 0 < s["n_failed"] < 6, s["reasons"]
    for r in s["trajectories"]:
        assert r["engine"] == "batched"
        if r["failed"]:
            assert r["reason"] == "bond_deviation" and len(r["details"]["atoms"]) == 2
            assert r["time_to_failure_ps"] == pytest.approx(r["simulated_ps"])
            assert r["time_to_failure_ps"] * 1000 / 0.5 % 10 == pytest.approx(0, abs=1e-6)
        else:
            assert r["simulated_ps"] == pytest.approx(0.1)
    from ase.io import read
    frames = read(tmp_path / "run" / "traj_000.traj", ":")
    first = s["trajectories"][0]
    expected = 1 + int(round((first["simulated_ps"] * 2000))) // 20
    assert len(frames) == expected and frames[0].get_momenta().any()
    assert s["replica_steps_per_s"] > 0


def test_batch_size_does_not_change_the_results(tmp_path):
    whole = _results(_stability(tmp_path, "all"))
    parts = _results(_stability(tmp_path, "parts", batch_size=4))
    for a, b in zip(whole, parts):
        assert a["failed"] == b["failed"] and a["time_to_failure_ps"] == b["time_to_failure_ps"]


def test_batched_stability_killed_at_any_write_point_resumes_to_the_same_result(
        tmp_path, monkeypatch):
    """Crash after each write (results as they happen, frames, ensemble.pt checkpoints,
    summary), rerun: the trajectories and frames are those of an uninterrupted run."""
    kw = dict(checkpoint_interval=40, save_interval=50)
    ref = _results(_stability(tmp_path, "ref", **kw))
    seen = crash_at_write(monkeypatch, 0)
    _stability(tmp_path, "count", **kw)
    monkeypatch.undo()
    assert seen.count("ensemble.pt") >= 4 and seen.count("trajectories.jsonl") == 6
    for k in range(2, len(seen) + 1, 2):
        crash_at_write(monkeypatch, k)
        with pytest.raises(SimulatedCrash):
            _stability(tmp_path, f"crash{k}", **kw)
        monkeypatch.undo()
        again = _results(_stability(tmp_path, f"crash{k}", **kw))
        assert again == ref, f"crash after write {k} ({seen[k - 1]})"
        from ase.io import read
        for n in range(6):
            a = read(tmp_path / "ref" / f"traj_{n:03d}.traj", ":")
            b = read(tmp_path / f"crash{k}" / f"traj_{n:03d}.traj", ":")
            assert len(a) == len(b)
            np.testing.assert_array_equal(a[-1].positions, b[-1].positions)


def test_the_ase_engine_stays_available(tmp_path):
    s = _stability(tmp_path, "ase", engine="ase")
    assert s["n_trajectories"] == 6 and all("engine" not in r for r in s["trajectories"])
    with pytest.raises(ValueError, match="engine"):
        StabilityConfig(system="HO2", engine="openmm")
