"""Metadynamics walkers on the ensemble engine: per-walker PLUMED, shared hills (PLUMED's
multiple walkers), exact resume, the command line."""

import json
import re

import numpy as np
import pytest
from ase import units
from ase.calculators.calculator import Calculator, all_changes
from conftest import SimulatedCrash, crash_at_write

from ffpt_ase.applications.h2combustion.channels import reactant_complex
from ffpt_ase.applications.h2combustion.decks import shipped_deck
from ffpt_ase.applications.h2combustion.metad import ChannelMetadConfig
from ffpt_ase.applications.h2combustion.metad import run_channel_metadynamics
from ffpt_ase.calculators import FFPTCalculator
from ffpt_ase.simulate.ensemble import Ensemble
from ffpt_ase.simulate.metad import deck_lines, require_plumed
from ffpt_ase.simulate.walkers import PlumedBias, walker_deck

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _colvar(path):
    return np.loadtxt(path, comments="#")


def test_a_walker_matches_ase_plumed_calculator_step_by_step(tiny_model, tmp_path):
    """Zero friction makes BAOAB velocity Verlet: one walker fed through PlumedBias and the
    same system under ASE's VelocityVerlet with ase.calculators.plumed.Plumed write the same
    COLVAR and HILLS (units, step numbers and bias forces agree)."""
    from ase.calculators.plumed import Plumed
    from ase.md.verlet import VelocityVerlet
    require_plumed()
    calc = FFPTCalculator(tiny_model, dtype="float64")
    atoms = reactant_complex("09")
    rng = np.random.default_rng(4)
    atoms.set_momenta(rng.normal(scale=0.3, size=(3, 3)))
    steps = 300
    (tmp_path / "ase").mkdir()
    (tmp_path / "engine").mkdir()
    lines_a = deck_lines(shipped_deck("09"), tmp_path / "ase")
    lines_b = deck_lines(shipped_deck("09"), tmp_path / "engine")
    a = atoms.copy()
    with Plumed(calc, lines_a, 0.2 * units.fs, atoms=a, kT=units.kB * 300.0,
                log=str(tmp_path / "ase" / "plumed.log")) as pcalc:
        a.calc = pcalc
        VelocityVerlet(a, timestep=0.2 * units.fs).run(steps)
    with PlumedBias([lines_b], [atoms], 0.2, 300.0, [tmp_path / "engine" / "plumed.log"]) as b:
        ens = Ensemble([atoms], calc, 0.2, 300.0, 0.0, thermalize=False, bias=b)
        ens.run(steps)
    np.testing.assert_allclose(_colvar(tmp_path / "engine" / "COLVAR"),
                               _colvar(tmp_path / "ase" / "COLVAR"), rtol=0, atol=1e-8)
    np.testing.assert_allclose(_colvar(tmp_path / "engine" / "HILLS")[:, :-1],
                               _colvar(tmp_path / "ase" / "HILLS")[:, :-1], atol=1e-8)
    np.testing.assert_allclose(ens.positions_of(0), a.positions, atol=1e-8)


def _walkers(model, out, share, steps=300, **kw):
    cfg = ChannelMetadConfig(reaction="09", model=model, steps=steps, seed=3, walkers=3,
                             share_bias=share, output=str(out), traj_interval=100,
                             check_interval=20, **kw)
    return run_channel_metadynamics(cfg, show_progress=False)


def test_shared_walkers_build_one_bias_and_fes_reads_it(tiny_model, tmp_path):
    from ffpt_ase.analysis.metad_report import fes_report
    shared = _walkers(tiny_model, tmp_path / "shared", True)
    _walkers(tiny_model, tmp_path / "alone", False)
    hills = [_colvar(tmp_path / "shared" / f"HILLS.{k}") for k in range(3)]
    assert all(len(h) == 3 for h in hills)          # steps 100, 200, 300 (PACE=100)
    assert "3 multiple walkers active" in (tmp_path / "shared" / "walker_00" /
                                           "plumed.log").read_text()
    # walker 0 starts as in the independent run, then feels the others' hills
    a = _colvar(tmp_path / "shared" / "walker_00" / "COLVAR")
    b = _colvar(tmp_path / "alone" / "walker_00" / "COLVAR")
    assert np.allclose(a[:10], b[:10]) and not np.allclose(a[-5:], b[-5:])
    assert all((tmp_path / "alone" / f"walker_{k:02d}" / "HILLS").exists() for k in range(3))
    assert shared["walkers"] == 3 and shared["simulated_ps_all_walkers"] == pytest.approx(0.18)
    assert len(shared["per_walker"]) == 3 and "unphysical_fraction" in shared
    report = fes_report(tmp_path / "shared", tmp_path / "fes")
    assert report["n_hills"] == 9 and report["walkers"] == 3
    assert report["colvar"].count("COLVAR") == 3


def test_independent_walkers_killed_at_write_points_resume_exactly(tiny_model, tmp_path,
                                                                  monkeypatch):
    def result(out):
        from ase.io import read
        return {"colvar": [_colvar(out / f"walker_{k:02d}" / "COLVAR") for k in range(3)],
                "hills": [_colvar(out / f"walker_{k:02d}" / "HILLS") for k in range(3)],
                "frames": [np.array([a.positions for a in read(out / f"walker_{k:02d}" /
                                                               "trajectory.traj", ":")])
                           for k in range(3)]}
    _walkers(tiny_model, tmp_path / "ref", False)
    ref = result(tmp_path / "ref")
    seen = crash_at_write(monkeypatch, 0)
    _walkers(tiny_model, tmp_path / "count", False)
    monkeypatch.undo()
    assert seen.count("state.json") == 4
    for k in range(1, len(seen) + 1, 3):
        out = tmp_path / f"crash{k}"
        crash_at_write(monkeypatch, k)
        with pytest.raises(SimulatedCrash):
            _walkers(tiny_model, out, False)
        monkeypatch.undo()
        _walkers(tiny_model, out, False)
        got = result(out)
        for key in ref:
            for x, y in zip(got[key], ref[key]):
                assert x.shape == y.shape, (k, seen[k - 1], key)
                np.testing.assert_allclose(x, y, atol=1e-7, err_msg=f"{k} {seen[k - 1]}")


def test_shared_walkers_resume_with_all_hills(tiny_model, tmp_path, monkeypatch):
    seen = crash_at_write(monkeypatch, 0)
    _walkers(tiny_model, tmp_path / "count", True)
    monkeypatch.undo()
    k = [i for i, name in enumerate(seen, 1) if name == "state.json"][2]   # after step 200
    crash_at_write(monkeypatch, k)
    with pytest.raises(SimulatedCrash):
        _walkers(tiny_model, tmp_path / "run", True)
    monkeypatch.undo()
    s = _walkers(tiny_model, tmp_path / "run", True)
    assert s["steps"] == 300
    for w in range(3):
        h = _colvar(tmp_path / "run" / f"HILLS.{w}")
        assert h[:, 0].tolist() == pytest.approx([20.0, 40.0, 60.0])   # fs, no duplicates


def test_walker_decks():
    lines = ["UNITS LENGTH=A", "d: DISTANCE ATOMS=1,2",
             "metad: METAD ARG=d SIGMA=0.1 HEIGHT=1 PACE=50 FILE=/x/HILLS"]
    out = walker_deck(lines, 2, 4, "/run/HILLS")
    assert out[2].split()[-4:] == ["FILE=/run/HILLS", "WALKERS_N=4", "WALKERS_ID=2",
                                   "WALKERS_RSTRIDE=50"]
    assert "FILE=/x/HILLS" not in out[2]
    assert walker_deck(lines, 0, 4, None) == lines
    with pytest.raises(ValueError, match="sets up multiple walkers itself"):
        walker_deck([lines[2] + " WALKERS_N=2"], 0, 4, "/run/HILLS")
    with pytest.raises(ValueError, match="no METAD"):
        walker_deck(lines[:2], 0, 4, "/run/HILLS")


def test_metad_walkers_from_the_command_line(tiny_model, tmp_path):
    from ffpt_ase.cli.main import main
    out = tmp_path / "w"
    assert main(["metad", "--reaction", "09", "--model", str(tiny_model), "--steps", "200",
                 "--walkers", "2", "-o", str(out), "--quiet"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["walkers"] == 2 and s["steps"] == 200 and s["ns_per_day"] > 0
    assert main(["fes", str(out), "-o", str(tmp_path / "fes")]) == 0
    assert (tmp_path / "fes" / "fes.png").exists()
    assert main(["metad", "--reaction", "09", "--model", str(tiny_model), "--steps", "100",
                 "--walkers", "2", "--no-share-bias", "-o", str(tmp_path / "alone"),
                 "--quiet"]) == 0
    assert (tmp_path / "alone" / "walker_01" / "HILLS").exists()
    assert not list((tmp_path / "alone").glob("HILLS*"))
    assert main(["metad", "--reaction", "09", "--model", str(tiny_model), "--steps", "10",
                 "--walkers", "0", "-o", str(tmp_path / "bad"), "--quiet"]) == 2


def test_walkers_in_separate_processes_share_hills_through_walkers_dir(tiny_model, tmp_path):
    """A deck that sets up PLUMED's multiple walkers itself (WALKERS_N, WALKERS_ID,
    WALKERS_DIR) runs as one single-walker command per walker: its hills go to WALKERS_DIR
    (not redirected into the run folder), and walker 1, started after walker 0 finished,
    reads walker 0's hills."""
    from ffpt_ase.simulate.metad import MetadConfig, run_metadynamics
    shared = tmp_path / "shared"
    shared.mkdir()
    deck = shipped_deck("09").read_text()
    for k in range(2):
        text = deck.replace("FILE=HILLS", f"FILE=HILLS WALKERS_N=2 WALKERS_ID={k} "
                                          f"WALKERS_DIR={shared} WALKERS_RSTRIDE=100")
        (tmp_path / f"w{k}.dat").write_text(text)
        reactant_complex("09").write(tmp_path / "start.xyz")
        cfg = MetadConfig(deck=str(tmp_path / f"w{k}.dat"), start=str(tmp_path / "start.xyz"),
                          model=str(tiny_model), steps=300, seed=k,
                          output=str(tmp_path / f"run{k}"))
        run_metadynamics(cfg, show_progress=False)
    assert (shared / "HILLS.0").exists() and (shared / "HILLS.1").exists()
    # walker 1 reads the three hills walker 0 deposited (steps 100, 200, 300)
    log = (tmp_path / "run1" / "plumed.log").read_text()
    assert "2 multiple walkers active" in log
    assert re.search(r"Reading hills from \S*shared/HILLS\.0:\s+3 Gaussians read", log)


class _FailsOnce(Calculator):
    """An ASE calculator (the tiny model through the per-replica path) whose ``fail_at``-th
    call fails: the engine sees a non-finite force for the replica being evaluated."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, model, fail_at):
        super().__init__()
        self.inner = FFPTCalculator.from_checkpoints(model, dtype="float64")
        self.fail_at, self.calls = fail_at, 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        if self.calls == self.fail_at:
            raise FloatingPointError("simulated blow-up")
        a = self.atoms.copy()
        a.calc = self.inner
        self.results = {"energy": a.get_potential_energy(), "forces": a.get_forces()}


def test_a_failing_walker_leaves_the_run_and_the_others_go_on(tiny_model, tmp_path):
    out = tmp_path / "run"

    def run(steps, calc):
        cfg = ChannelMetadConfig(reaction="09", model=str(tiny_model), steps=steps, seed=3,
                                 walkers=3, share_bias=False, output=str(out),
                                 traj_interval=100, check_interval=20)
        return run_channel_metadynamics(cfg, calc=calc, show_progress=False)

    calc = _FailsOnce(tiny_model, fail_at=400)   # a call during step ~132
    s = run(300, calc)
    failed = {int(k): v for k, v in s["failed_at_step"].items()}
    assert len(failed) == 1
    (k, step), = failed.items()
    assert 100 < step < 200 and s["steps"] == 300
    assert s["per_walker"][k]["failed_at_step"] == step
    others = [w for w in range(3) if w != k]
    assert all(s["per_walker"][w]["failed_at_step"] is None for w in others)
    # its observers stopped at the failure: checked every 20 steps from step 0
    checked = [s["per_walker"][w]["unphysical"]["checked_frames"] for w in range(3)]
    assert checked[k] == step // 20 + 1 and all(checked[w] == 16 for w in others)
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert [e for e in events if e["type"] == "non_finite"] == [
        {"step": step, "walker": k, "type": "non_finite",
         "detail": "non-finite energy, force or position: the walker left the run"}]
    # its PLUMED files end before the failed step (0.2 fs steps, COLVAR in fs), its
    # trajectory at its last good checkpoint (steps 0 and 100)
    from ase.io import read
    colvar = _colvar(out / f"walker_{k:02d}" / "COLVAR")
    assert np.isfinite(colvar).all() and colvar[-1, 0] < step * 0.2
    assert len(read(out / f"walker_{k:02d}" / "trajectory.traj", ":")) == 2
    assert all(len(read(out / f"walker_{w:02d}" / "trajectory.traj", ":")) == 4
               for w in others)
    # resumed for more steps: the failed walker stays out, the others continue
    s2 = run(400, _FailsOnce(tiny_model, fail_at=10 ** 9))
    assert s2["failed_at_step"] == {str(k): step} and s2["steps"] == 400
    assert s2["per_walker"][k]["unphysical"]["checked_frames"] == checked[k]
    assert all(s2["per_walker"][w]["unphysical"]["checked_frames"] == 21 for w in others)


def test_channel_walkers_workflow_reports_each_walker_and_their_statistics(tiny_model,
                                                                           tmp_path):
    from ffpt_ase.applications.h2combustion.workflows import run_walkers
    from ffpt_ase.cli.main import main
    out = tmp_path / "w"
    r = run_walkers("09", tiny_model, 3, 1000, out, show_progress=False, traj_interval=100,
                    check_interval=20)
    assert r["steps"] == 1000 and r["n_failed"] == 0 and len(r["walkers"]) == 3
    assert [w["seed"] for w in r["walkers"]] == [[0, 0], [0, 1], [0, 2]]
    fractions = [w["unphysical_fraction"] for w in r["walkers"]]
    assert all(w["checked_frames"] == 51 for w in r["walkers"])
    assert r["unphysical_fraction_mean"] == pytest.approx(np.mean(fractions))
    assert r["unphysical_fraction_sem"] == pytest.approx(np.std(fractions, ddof=1) / 3 ** 0.5)
    # pooled over frames: equal frame counts make it the mean
    assert r["checked_frames"] == 153
    assert r["unphysical_fraction_pooled"] == pytest.approx(np.mean(fractions))
    # the flagged frames by species: one count per flagged frame, pooled over walkers
    flagged = [round(w["unphysical_fraction"] * w["checked_frames"]) for w in r["walkers"]]
    assert [sum(w["unphysical_species"].values()) for w in r["walkers"]] == flagged
    assert sum(r["unphysical_species_pooled"].values()) == sum(flagged)
    reached = [w for w in r["walkers"] if w.get("delta_f_kJ_per_mol") is not None]
    assert r["n_delta_f"] == len(reached)
    assert len(r["delta_f_lower_bounds_kJ_per_mol"]) <= 3 - len(reached)
    for k in range(3):   # each walker's own FES, from its own hills (PACE 100: 10 hills)
        fes = json.loads((out / f"walker_{k:02d}" / "fes" / "fes_summary.json").read_text())
        assert fes["n_hills"] == 10 and fes["walkers"] == 1
    assert json.loads((out / "walkers.json").read_text())["walkers"] == r["walkers"]
    # a walker's folder reads the run's settings (its temperature) for `ffpt-ase fes`
    assert main(["fes", str(out / "walker_01"), "-o", str(tmp_path / "fes1")]) == 0
    assert (tmp_path / "fes1" / "fes.png").exists()
    # finished: running again reads the walkers back without new steps
    again = run_walkers("09", tiny_model, 3, 1000, out, show_progress=False,
                        traj_interval=100, check_interval=20)
    assert again["walkers"] == r["walkers"]


def test_one_channel_walker_reports_like_many(tiny_model, tmp_path):
    """One walker runs on the single-walker driver, in the folder itself; its record has the
    same fields as an ensemble walker's, and a mean without a standard error."""
    from ffpt_ase.applications.h2combustion.workflows import run_walkers
    out = tmp_path / "one"
    r = run_walkers("09", tiny_model, 1, 400, out, show_progress=False, traj_interval=100,
                    check_interval=20)
    assert r["steps"] == 400 and r["n_failed"] == 0 and len(r["walkers"]) == 1
    w = r["walkers"][0]
    assert w["seed"] == [0, 0] and w["failed_at_step"] is None and w["checked_frames"] == 21
    assert w["simulated_ps"] == pytest.approx(400 * 0.2e-3)
    assert r["unphysical_fraction_mean"] == pytest.approx(w["unphysical_fraction"])
    assert r["unphysical_fraction_sem"] is None
    fes = json.loads((out / "fes" / "fes_summary.json").read_text())
    assert fes["n_hills"] == 4 and fes["walkers"] == 1
    assert not (out / "walker_00").exists()
    # the folder holds a one-walker run: another walker count is refused, not a result
    from ffpt_ase.runfolder import RunFolderError
    with pytest.raises(RunFolderError):
        run_walkers("09", tiny_model, 2, 400, out, show_progress=False, traj_interval=100,
                    check_interval=20)


def test_a_refused_start_is_a_result_and_other_errors_are_raised(tiny_model, tmp_path):
    """A model with a non-finite energy at the start structure is reported (``error``, no
    statistics); a set-up error is not turned into "not run"."""
    import torch

    from ffpt_ase.applications.h2combustion.workflows import run_walkers
    ckpt = torch.load(tiny_model, weights_only=True)
    ckpt["model_state"]["shift"][:] = float("nan")
    broken = tmp_path / "nan.pt"
    torch.save(ckpt, broken)
    r = run_walkers("09", broken, 2, 200, tmp_path / "nan", show_progress=False)
    assert "non-finite energy" in r["error"] and r["n_failed"] is None
    assert r["walkers"] == [] and r["unphysical_fraction_pooled"] is None
    # a start structure of the wrong atoms is refused inside the run: raised, not a result
    from ase.build import molecule
    wrong = tmp_path / "h2o.xyz"
    molecule("H2O").write(wrong)
    with pytest.raises(ValueError, match="has atoms"):
        run_walkers("09", tiny_model, 2, 200, tmp_path / "bad", show_progress=False,
                    start=str(wrong))
