"""The benchmarks' run-folder bookkeeping (benchmarks/bench_common.py): committed run
folders restore the furthest run, keeping copies one arm at a time, final models only for
runs whose stopping rule holds."""

import json
import sys
from pathlib import Path

import pytest

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
    (work / "scratch" / "run.json").write_text(json.dumps({"kind": "train", "lr": 0.5}))
    _run(models / "exp" / "runs" / "scratch", 60)
    bench.restore_runs(work, "exp", ["scratch"])
    assert (work / "scratch" / "last.pt").read_bytes() == b"state after 50 epochs"
    assert "holds another run" in capsys.readouterr().out


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
