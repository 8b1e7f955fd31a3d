"""Where the trained-out runs stand (issue 13): for each kept run folder
(``benchmarks/models/<experiment>/runs/``) the epochs done, the learning rate, the best
validation errors and the stop reason (or "in progress", with the earliest epoch at which
the run's plateau rule can stop it if no later epoch improves), and the figure of the validation
force MAE per epoch of the combustion scratch arm in float32 without and with gradient
clipping (both diverged) and in float64 with clipping (the protocol now), from the logs kept
in ``benchmarks/results/h2combustion_scratch_logs/``.

    .venv/bin/python benchmarks/training_status.py

Writes ``benchmarks/results/training_status.{json,md}`` and
``h2combustion_scratch_divergence.png``.
"""

from __future__ import annotations

import csv
import json

import bench_common as bench

from ffpt_ase.analysis.plots import label_and_save, subplots
from ffpt_ase.training.trainer import earliest_plateau_stop

LOGS = bench.RESULTS / "h2combustion_scratch_logs"
VARIANTS = {"float32, no clipping (diverged, epoch 55)": "float32_unclipped.csv",
            "float32, gradient norm clipped at 10 (diverged, epoch 19)": "float32_clip10.csv",
            "float64, clipped at 10 (the protocol)": "float64_clip10.csv"}


def rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def main():
    command = bench.announce()
    status = {}
    for run in sorted(bench.MODELS.glob("*/runs/**/run.json")):
        folder = run.parent
        log = rows(folder / "log.csv") if (folder / "log.csv").exists() else []
        if not log:
            continue
        summary = json.loads((folder / "summary.json").read_text()) \
            if (folder / "summary.json").exists() else {}
        reason = summary.get("stop_reason", "")
        done = reason.startswith(("learning rate", "plateau"))
        f = [float(r["val_forces_mae"]) for r in log]
        e = [float(r["val_energy_mae"]) for r in log]
        best = min(range(len(f)), key=f.__getitem__)
        settings = json.loads(run.read_text())["settings"]
        config = json.loads((folder / "config.json").read_text()) \
            if (folder / "config.json").exists() else {}   # the run's latest free settings
        earliest = None if done else earliest_plateau_stop(
            [{"val_forces_mae": v} for v in f], config.get("plateau_epochs"),
            config.get("plateau_improvement"))
        status[str(folder.relative_to(bench.MODELS))] = {
            "epochs": len(log), "hours": round(float(log[-1]["time_s"]) / 3600, 2),
            "lr": float(log[-1]["lr"]), "best_epoch": best + 1,
            "best_val_forces_mae_meV_per_A": 1e3 * f[best],
            "val_energy_mae_meV_at_best": 1e3 * e[best],
            "dtype": settings["dtype"], "grad_clip": settings["grad_clip"],
            "status": reason if done else "in progress",
            "earliest_plateau_stop_epoch": earliest}
    lines = ["| run | epochs | hours | lr now | best val force MAE (meV/A) @ epoch | "
             "val energy MAE there (meV) | precision, clip | status |",
             "|---|---|---|---|---|---|---|---|"]
    for name, s in status.items():
        state = s["status"] if s["status"] != "in progress" or s[
            "earliest_plateau_stop_epoch"] is None else \
            f"in progress (earliest plateau stop: epoch {s['earliest_plateau_stop_epoch']})"
        lines.append(f"| {name} | {s['epochs']} | {s['hours']} | {s['lr']:.2g} | "
                     f"{s['best_val_forces_mae_meV_per_A']:.1f} @ {s['best_epoch']} | "
                     f"{s['val_energy_mae_meV_at_best']:.1f} | {s['dtype']}, "
                     f"{s['grad_clip']} | {state} |")
    fig, ax = subplots(figsize=(6.5, 4.2))
    curves = {}
    for label, name in VARIANTS.items():
        if (LOGS / name).exists():
            log = rows(LOGS / name)
            x = [int(r["epoch"]) for r in log]
            y = [1e3 * float(r["val_forces_mae"]) for r in log]
            ax.plot(x, y, label=label)
            curves[label] = {"epochs": len(x), "best_meV_per_A": min(y),
                             "first_15": y[:15]}
    ax.set_yscale("log")
    label_and_save(fig, ax, bench.RESULTS / "h2combustion_scratch_divergence.png", "epoch",
                   "validation force MAE [meV/A]",
                   "combustion scratch arm, lr 1e-3, 64 features", legend=True)
    bench.write_results("training_status", {"command": command, "runs": status,
                                            "scratch_variants": curves},
                        "\n".join(lines), command)


if __name__ == "__main__":
    main()
