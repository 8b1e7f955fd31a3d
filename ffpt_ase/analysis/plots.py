"""Plots people look at: label statistics of frame sets and teacher energy scans.

All functions write a PNG (matplotlib, non-interactive Agg backend) and return its path.
Energies are shown in eV, forces in eV/A, distances in Angstrom.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def subplots(*args, **kwargs):
    """``(figure, axes)`` as ``pyplot.subplots`` gives them, without pyplot: a bare
    matplotlib ``Figure`` saves through the Agg canvas, needs no closing and spares every
    command the half second of importing pyplot."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=kwargs.pop("figsize", None))
    return fig, fig.subplots(*args, **kwargs)


def label_and_save(fig, ax, path, xlabel=None, ylabel=None, title="", legend=False,
                   dpi=120) -> Path:
    """Label, lay out, save as PNG and close a figure; returns the path."""
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if legend:
        ax.legend(fontsize=8)
    return save_figure(fig, path, dpi)


def save_figure(fig, path, dpi=120) -> Path:
    """Lay out, save as PNG and close a figure; returns the path."""
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    return path


def plot_frame_statistics(sets: dict, path: str | Path) -> Path:
    """Histograms of energy (relative to each set's minimum) and of per-atom |force|."""
    fig, (ax_e, ax_f) = subplots(1, 2, figsize=(10, 4))
    for name, frames in sets.items():
        if frames.energy is None:
            continue
        e = frames.energy - frames.energy.min()
        ax_e.hist(e, bins=80, histtype="step", label=name, log=True)
        if frames.forces is not None:
            real = frames.numbers_per_frame > 0
            fn = np.linalg.norm(frames.forces, axis=-1)[real]
            if fn.max() > 0:
                ax_f.hist(fn, bins=80, histtype="step", label=name, log=True)
    ax_e.set_xlabel("E - min(E) [eV]")
    ax_e.set_ylabel("frames")
    ax_f.set_xlabel("|F| per atom [eV/A]")
    ax_f.set_ylabel("atoms")
    ax_e.legend(fontsize=8)
    ax_e.set_title("teacher energies of rattled frames")
    ax_f.set_title("teacher forces")
    return save_figure(fig, path)


def plot_energy_scan(curves: dict, path: str | Path, xlabel: str, title: str = "") -> Path:
    """Line plot of ``curves[name] = (x, energy_eV)``."""
    fig, ax = subplots(figsize=(6, 4))
    for name, (x, e) in curves.items():
        ax.plot(x, e, label=name)
    ax.axhline(0.0, color="grey", lw=0.5)
    return label_and_save(fig, ax, path, xlabel, "energy [eV]", title, legend=True)


def plot_learning_curve(log_csv: str | Path, path: str | Path) -> Path:
    """Training/validation loss, validation force MAE and learning rate per epoch."""
    import csv
    with open(log_csv) as fh:
        rows = list(csv.DictReader(fh))
    ep = [int(r["epoch"]) for r in rows]
    col = lambda k: [float(r[k]) if r[k] not in ("", "None") else np.nan for r in rows]  # noqa: E731
    fig, axes = subplots(1, 3, figsize=(13, 3.8))
    axes[0].semilogy(ep, col("train_loss"), label="train")
    axes[0].semilogy(ep, col("val_loss"), label="validation")
    axes[0].set_ylabel("loss (w_E MSE_E + w_F MSE_F)")
    axes[0].legend()
    axes[1].semilogy(ep, col("val_forces_mae"), label="forces [eV/A]")
    axes[1].semilogy(ep, col("val_energy_mae"), label="energy [eV]")
    axes[1].set_ylabel("validation MAE")
    axes[1].legend()
    axes[2].semilogy(ep, col("lr"))
    axes[2].set_ylabel("learning rate")
    for ax in axes:
        ax.set_xlabel("epoch")
    return save_figure(fig, path, dpi=110)


def plot_parity(ref_e, pred_e, ref_f, pred_f, path: str | Path, title: str = "") -> Path:
    """Parity plots of energies (eV) and force components (eV/A)."""
    fig, (a1, a2) = subplots(1, 2, figsize=(9, 4.2))
    for ax, x, y, unit in ((a1, ref_e, pred_e, "energy [eV]"), (a2, ref_f, pred_f, "force [eV/A]")):
        if x is None:
            ax.set_visible(False)
            continue
        x, y = np.ravel(x), np.ravel(y)
        lo, hi = min(x.min(), y.min()), max(x.max(), y.max())
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
        ax.scatter(x, y, s=2, alpha=0.4)
        mae = np.mean(np.abs(y - x))
        ax.set_xlabel(f"reference {unit}")
        ax.set_ylabel(f"predicted {unit}")
        ax.set_title(f"MAE {mae:.4g}")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path, dpi=110)


def plot_fes_2d(fes, path: str | Path, basins: dict | None = None, title: str = "",
                vmax: float | None = None) -> Path:
    """Filled contours of a 2D FES (kJ/mol) with optional labelled basin points
    ``basins[name] = (s1, s2)``."""
    fig, ax = subplots(figsize=(6, 5))
    f = fes.free_energy.T  # (cv2, cv1) for contourf
    vmax = vmax if vmax is not None else float(np.percentile(fes.free_energy, 95))
    levels = np.linspace(0.0, max(vmax, 1e-6), 25)
    cs = ax.contourf(fes.axes[0], fes.axes[1], np.clip(f, 0, vmax), levels=levels,
                     cmap="viridis")
    ax.contour(fes.axes[0], fes.axes[1], f, levels=levels[::3], colors="k", linewidths=0.4)
    fig.colorbar(cs, ax=ax, label="free energy [kJ/mol]")
    for name, (x, y) in (basins or {}).items():
        ax.plot([x], [y], "w*", ms=10)
        ax.annotate(name, (x, y), color="w", xytext=(4, 4), textcoords="offset points")
    return label_and_save(fig, ax, path, fes.cv_names[0], fes.cv_names[1], title)


def plot_fes_1d(curves: dict, path: str | Path, xlabel: str, title: str = "") -> Path:
    """``curves[name] = (s, F)`` in kJ/mol."""
    fig, ax = subplots(figsize=(6, 4))
    for name, (x, f) in curves.items():
        ax.plot(x, f, label=name)
    return label_and_save(fig, ax, path, xlabel, "free energy [kJ/mol]", title, legend=True)


def _none_as_nan(values) -> np.ndarray:
    """A float array of JSON values, None (not estimable) as NaN (not drawn)."""
    return np.array([np.nan if x is None else x for x in values], float)


def plot_convergence(conv: dict, path: str | Path, time_unit: str = "ps",
                     title: str = "") -> Path:
    """Delta F (kJ/mol) between basins versus simulation time with block error bars."""
    fig, ax = subplots(figsize=(6, 4))
    ax.errorbar(conv["time"], _none_as_nan(conv["delta_f"]), yerr=_none_as_nan(conv["error"]),
                marker="o", capsize=3)
    return label_and_save(fig, ax, path, f"simulation time [{time_unit}]",
                          "Delta F (product - reactant) [kJ/mol]", title)


def plot_convergence_runs(runs: dict, path: str | Path, title: str = "") -> Path:
    """Side by side, one panel per model: Delta F (kJ/mol) versus time (ps) of each of its
    runs; ``runs[model][run] = convergence dict`` (``time``, ``delta_f``)."""
    fig, axes = subplots(1, len(runs), figsize=(5.5 * len(runs), 4), squeeze=False)
    for ax, (model, curves) in zip(axes[0], runs.items()):
        for run, conv in curves.items():
            ax.plot(conv["time"], _none_as_nan(conv["delta_f"]), label=run)
        ax.set_xlabel("simulation time [ps]")
        ax.set_ylabel("F(product) - F(reactant) [kJ/mol]")
        ax.set_title(f"{title}, {model}" if title else model)
        if curves:
            ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_survival(curves: dict, path: str | Path, title: str = "", until_ps=None) -> Path:
    """Survival curves: ``curves[name]`` is ``(t_ps, fraction_surviving)`` or a
    :func:`~ffpt_ase.analysis.survival.kaplan_meier` result, drawn with its confidence band;
    steps are extended to ``until_ps`` when given."""
    fig, ax = subplots(figsize=(6, 4))
    for name, curve in curves.items():
        if isinstance(curve, dict):
            t, s = list(curve["time_ps"]), list(curve["surviving"])
            lo, hi = list(curve["low"]), list(curve["high"])
            if until_ps is not None and until_ps > t[-1]:
                t, s, lo, hi = t + [until_ps], s + s[-1:], lo + lo[-1:], hi + hi[-1:]
            line, = ax.step(t, s, where="post",
                            label=f"{name} ({curve['failed']}/{curve['n']} failed)")
            ax.fill_between(t, lo, hi, step="post", alpha=0.2, color=line.get_color())
        else:
            ax.step(*curve, where="post", label=name)
    ax.set_ylim(-0.02, 1.02)
    return label_and_save(fig, ax, path, "time [ps]", "fraction of stable trajectories", title,
                          legend=True)
