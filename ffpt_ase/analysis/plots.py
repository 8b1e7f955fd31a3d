"""Plots people look at: label statistics of frame sets and teacher energy scans.

All functions write a PNG (matplotlib, non-interactive Agg backend) and return its path.
Energies are shown in eV, forces in eV/A, distances in Angstrom.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_frame_statistics(sets: dict, path: str | Path) -> Path:
    """Histograms of energy (relative to each set's minimum) and of per-atom |force|."""
    plt = _pyplot()
    fig, (ax_e, ax_f) = plt.subplots(1, 2, figsize=(10, 4))
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
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_energy_scan(curves: dict, path: str | Path, xlabel: str, title: str = "") -> Path:
    """Line plot of ``curves[name] = (x, energy_eV)``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (x, e) in curves.items():
        ax.plot(x, e, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("energy [eV]")
    ax.axhline(0.0, color="grey", lw=0.5)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
