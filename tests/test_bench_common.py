"""The benchmarks' run-folder bookkeeping (benchmarks/bench_common.py): committed run
folders restore the furthest run, keeping copies one arm at a time, final models only for
runs whose stopping rule holds."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_common as bench  # noqa: E402


def _run(folder: Path, epochs: int, stop_reason: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps({"kind": "train"}))
    (folder / "log.csv").write_text("epoch,val_loss\n"
                                    + "".join(f"{k},1.0\n" for k in range(1, epochs + 1)))
    (folder / "last.pt").write_bytes(b"state after %d epochs" % epochs)
    (folder / "best.pt").write_bytes(b"best of %d epochs" % epochs)
    if stop_reason:
        (folder / "summary.json").write_text(json.dumps({"stop_reason": stop_reason}))
    return folder


@pytest.fixture
def models(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "MODELS", tmp_path / "models")
    return tmp_path / "models"


def test_restore_takes_the_furthest_run(tmp_path, models, capsys):
    work = tmp_path / "work"
    _run(models / "exp" / "runs" / "scratch", 30)
    bench.restore_runs(work, "exp", ["scratch", "finetune"])        # none in work: restored
    assert (work / "scratch" / "last.pt").read_bytes() == b"state after 30 epochs"
    assert not (work / "finetune").exists()
    _run(work / "scratch", 40)                                        # work went further
    bench.restore_runs(work, "exp", ["scratch"])
    assert (work / "scratch" / "last.pt").read_bytes() == b"state after 40 epochs"
    _run(models / "exp" / "runs" / "scratch", 50)                     # committed went further
    bench.restore_runs(work, "exp", ["scratch"])
    assert (work / "scratch" / "last.pt").read_bytes() == b"state after 50 epochs"
    assert "50 epochs, ahead of the work folder's" in capsys.readouterr().out
    assert not list((work / "scratch").glob("*.tmp"))
    # a work folder holding another run (other settings) is never overwritten
    (work / "scratch" / "run.json").write_text(json.dumps({"kind": "train",
                                                           "settings": {"lr": 0.5}}))
    _run(models / "exp" / "runs" / "scratch", 60)
    bench.restore_runs(work, "exp", ["scratch"])
    assert (work / "scratch" / "last.pt").read_bytes() == b"state after 50 epochs"
    assert "holds another run" in capsys.readouterr().out
    # what a resume adds to run.json (digests of data rebuilt equal) is the same run
    record = {"kind": "train", "regenerated": {"data": {"sha256:ab": "rebuilt"}}}
    (work / "scratch" / "run.json").write_text(json.dumps(record))
    bench.restore_runs(work, "exp", ["scratch"])
    assert (work / "scratch" / "last.pt").read_bytes() == b"state after 60 epochs"


def test_keep_runs_one_arm_and_final_models_only_when_finished(tmp_path, models):
    work = tmp_path / "work"
    _run(work / "scratch", 12, "plateau: best val_forces_mae of the last 100 epochs ...")
    _run(work / "finetune", 7)
    _run(work / "pretrain", 3)
    status = bench.keep_runs(work, "exp", ["pretrain", "scratch", "finetune"], only="finetune")
    assert status == {"pretrain": "in progress", "finetune": "in progress"}
    assert not (models / "exp" / "runs" / "scratch").exists()
    assert not (models / "exp" / "finetune.pt").exists()
    assert (models / "exp" / "runs" / "finetune" / "log.csv").exists()
    status = bench.keep_runs(work, "exp", ["scratch", "finetune"])
    assert status["scratch"].startswith("plateau") and status["finetune"] == "in progress"
    # a run from before the trainer kept best_forces.pt: its best.pt stands in
    assert (models / "exp" / "scratch.pt").read_bytes() == b"best of 12 epochs"
    assert not (models / "exp" / "runs" / "scratch" / "best.pt").exists()   # rebuilt, not kept
    # the final model is the lowest validation force MAE's
    (work / "scratch" / "best_forces.pt").write_bytes(b"lowest force MAE of 12 epochs")
    bench.keep_runs(work, "exp", ["scratch"])
    assert (models / "exp" / "scratch.pt").read_bytes() == b"lowest force MAE of 12 epochs"
    assert not (models / "exp" / "runs" / "scratch" / "best_forces.pt").exists()


def test_a_shipped_pretraining_counts_every_stage_it_was_continued_from():
    first = {"epochs": 23, "stop_reason": "max wall time", "training": {"time_s": 2700.0},
             "frames": "100000 rattled frames", "command": "first"}
    second = {"epochs": 116, "stop_reason": "plateau: ...", "training": {"time_s": 13800.0},
              "frames": "100000 rattled frames", "command": "second",
              "continued_from": {"checkpoint": "pretrained:small", "provenance": first}}
    r = bench.pretrain_record({"shipped": "pretrained:big", "provenance": second}, "unused")
    assert r["epochs"] == 139 and r["train_minutes"] == pytest.approx(275.0)
    assert [s["command"] for s in r["stages"]] == ["first", "second"]
    assert r["frames"] == "100000 rattled frames" and r["stop_reason"] == "plateau: ..."
    scratch_made = {**second, "continued_from": None}   # pretrain_shipped without --init
    r = bench.pretrain_record({"shipped": "pretrained:x", "provenance": scratch_made}, "-")
    assert r["epochs"] == 116 and len(r["stages"]) == 1
    trained_here = {"epochs": 5, "stop_reason": "plateau", "final": {"time_s": 600.0}}
    assert bench.pretrain_record(trained_here, "500 frames") == {
        "epochs": 5, "stop_reason": "plateau", "train_minutes": 10.0, "frames": "500 frames"}


def test_walker_length_is_what_the_run_holds():
    run = {"walkers": [{}] * 8, "steps": 250000}
    assert bench.walker_length(run, 0.2) == "8 x 50 ps"
    assert bench.walker_length({"walkers": [], "error": "refused"}, 0.2) == "-"


def test_walker_comparison_cells_read_as_the_tables_print_them():
    from ffpt_ase.applications.h2combustion.workflows import compare_walker_sets

    def walkers(fractions, delta_f, failed):
        return {"n_failed": failed, "walkers": [
            {"unphysical_fraction": f, "delta_f_kJ_per_mol": d, "checked_frames": 50}
            for f, d in zip(fractions, delta_f)]}
    a = walkers([0.2, 0.4, 0.3, 0.1, 0.5], [-100.0, -120.0, -110.0, None, None], 2)
    b = walkers([0.0] * 5, [210.0, 220.0, 230.0, 215.0, 225.0], 0)
    failed, fraction, delta_f = bench.walker_comparison_cells(compare_walker_sets(a, b))
    assert failed == "0 / 5 vs 2 / 5, Fisher p = 0.44"
    assert fraction.startswith("-0.300 [") and fraction.endswith("p <= 0.008")  # 2 / 252
    # three of A's walkers have a Delta F: no interval, and the counts said
    assert delta_f == "+330, p <= 0.036 (5 and 3 walkers with an estimate)"     # 2 / 56
    assert bench.walker_comparison_cells(compare_walker_sets({"walkers": []}, b)) == (
        "-", "-", "-")


def test_walker_cells_count_estimates_and_bounds_apart():
    m = {"walkers": [{}] * 8, "n_failed": 1, "unphysical_fraction_mean": 0.02,
         "unphysical_fraction_sem": 0.01, "unphysical_fraction_pooled": 0.015,
         "delta_f_mean_kJ_per_mol": 210.0, "delta_f_sem_kJ_per_mol": 5.0, "n_delta_f": 3,
         "delta_f_lower_bounds_kJ_per_mol": [230.0, 205.0]}
    failed, unphysical, delta_f = bench.walker_cells(m)
    assert failed == "1 / 8" and "pooled 0.015" in unphysical
    # 3 estimates, 2 bounds: the other 3 walkers have neither (a basin seen only early)
    assert delta_f.endswith("(3 of 8 with an estimate); 2 never reached the product: > 205")
    assert bench.walker_cells({"error": "non-finite energy at the start"})[0].startswith(
        "not run")


def test_unphysical_species_cell_gives_shares_of_the_flagged_frames():
    m = {"unphysical_species_pooled": {"H + HO2": 3659, "H + HO + O": 355, "O + O + H2": 6,
                                       "atoms too close": 2}}
    assert bench.unphysical_species_cell(m) == \
        "H + HO2 91 %, H + HO + O 8.8 %, O + O + H2 0.15 %, 1 more"
    assert bench.unphysical_species_cell(m, top=4).endswith("atoms too close 0.05 %")
    assert bench.unphysical_species_cell({"unphysical_species_pooled": {}}) == "none"
    # kept before the species were counted: none if nothing was flagged, else unknown
    assert bench.unphysical_species_cell({"unphysical_fraction_pooled": 0.0}) == "none"
    assert bench.unphysical_species_cell({"unphysical_fraction_pooled": 0.1}) == \
        "not recorded"
    assert bench.unphysical_species_cell({"error": "non-finite energy"}) == "-"


def test_test_errors_scores_the_callers_predictions_as_its_own(tiny_model, tmp_path,
                                                               monkeypatch):
    """``test_errors(predictions=...)`` (the combustion report predicts each arm's test
    frames once) gives the numbers it computes itself, and a supplied prediction is what
    it scores, not ignored."""
    from ase import Atoms

    from ffpt_ase.data.frames import Frames
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    rng = np.random.default_rng(0)
    images = [Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]),
              Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.97]])]
    for a in images:
        a.positions += 0.05 * rng.normal(size=a.positions.shape)
        a.info["energy"] = float(rng.normal())
        a.arrays["forces"] = rng.normal(size=(len(a), 3))
    frames = Frames.from_atoms_list(images)
    own = bench.test_errors(tiny_model, frames, "own", "own")
    model = bench.load_potential(tiny_model, dtype=torch.float64)
    given = bench.predict(model, frames, dtype=torch.float64)
    supplied = bench.test_errors(tiny_model, frames, "given", "given", predictions=given)
    for key in ("energy_mae_meV", "forces_mae_meV_per_A", "forces_rmse_meV_per_A"):
        assert supplied[key] == pytest.approx(own[key], rel=1e-12)
    assert (tmp_path / "given_parity.png").stat().st_size > 0
    e, f = given
    shifted = bench.test_errors(tiny_model, frames, "shifted", "shifted",
                                predictions=(e + 1.0, f))
    assert shifted["energy_mae_meV"] != pytest.approx(own["energy_mae_meV"])


def test_channel_walkers_are_kept_and_read_back_only_for_the_same_run(tiny_model, tmp_path,
                                                                      monkeypatch):
    """A walker run's summary, convergence and FES figure are kept in results/; without its
    folder (a fresh clone) the same run is read back from them, and a run with other
    settings or another model is simulated again."""
    import shutil

    import ffpt_ase.applications.h2combustion.workflows as workflows
    monkeypatch.setattr(bench, "RESULTS", tmp_path / "results")
    calls = []

    def fake_run_walkers(reaction, checkpoint, walkers, steps, folder, seed=0, **settings):
        calls.append((reaction, steps))
        for k in range(walkers):
            fes = folder / f"walker_{k:02d}" / "fes"
            fes.mkdir(parents=True, exist_ok=True)
            (fes / "convergence.json").write_text(json.dumps({"time": [1.0],
                                                              "delta_f": [float(k)]}))
            (fes / "fes.png").write_bytes(b"png of walker %d" % k)
        result = {"walkers": [{"walker": k} for k in range(walkers)], "steps": steps}
        (folder / "walkers.json").write_text(json.dumps(result))
        return result

    monkeypatch.setattr(workflows, "run_walkers", fake_run_walkers)
    folder = tmp_path / "work" / "metad_09_x"
    first = bench.channel_walkers("09", tiny_model, 2, 100, folder, "exp_09_x")
    kept = json.loads((tmp_path / "results" / "exp_09_x_walkers.json").read_text())
    assert kept["convergence"]["walker_01"]["delta_f"] == [1.0]
    assert kept["run"]["steps"] == 100 and kept["run"]["model"].startswith("sha256:")
    assert (tmp_path / "results" / "exp_09_x_fes.png").read_bytes() == b"png of walker 0"
    assert first["convergence"] == kept["convergence"] and len(calls) == 1

    shutil.rmtree(folder)                                     # a fresh clone: read back
    again = bench.channel_walkers("09", tiny_model, 2, 100, folder, "exp_09_x")
    assert len(calls) == 1 and again == kept
    bench.channel_walkers("09", tiny_model, 2, 200, folder, "exp_09_x")    # longer: runs
    assert calls[-1] == ("09", 200)
    shutil.rmtree(folder)
    other = perturbed_copy(tiny_model, tmp_path / "other.pt")
    bench.channel_walkers("09", other, 2, 200, folder, "exp_09_x")         # another model
    assert len(calls) == 3
    bench.metad_figures({"x": again}, "09", "exp_09")
    assert (tmp_path / "results" / "exp_09_convergence.png").stat().st_size > 0


def perturbed_copy(checkpoint: Path, path: Path) -> Path:
    """``checkpoint`` with one weight changed, saved at ``path``."""
    ckpt = torch.load(checkpoint, weights_only=True)
    name = next(k for k, v in ckpt["model_state"].items() if v.is_floating_point())
    ckpt["model_state"][name] = ckpt["model_state"][name] + 0.01
    torch.save(ckpt, path)
    return path


def test_a_final_model_saved_again_unchanged_is_the_same_checkpoint(tiny_model, tmp_path):
    """keep_runs leaves a committed final model alone when the run folder's copy holds the
    same checkpoint saved again (other bytes), and replaces it when a weight differs."""
    ckpt = torch.load(tiny_model, weights_only=True)
    resaved = tmp_path / "resaved.pt"
    torch.save(dict(reversed(list(ckpt.items()))), resaved)       # same contents, new bytes
    assert resaved.read_bytes() != tiny_model.read_bytes()
    assert bench._same_checkpoint(tiny_model, resaved)
    assert not bench._same_checkpoint(tiny_model, perturbed_copy(tiny_model, tmp_path / "p.pt"))
    assert not bench._same_checkpoint(tiny_model, tmp_path / "absent.pt")
