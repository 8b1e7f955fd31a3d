"""Liquid water (the FFPT paper's bulk-water experiment): the flexible TIP3P monomer's
bending scan for any set of models, and the liquid's structure and transport from the saved
trajectories of a stability run (O-O g(r), self-diffusion coefficient with standard errors
over trajectories). Distances in Angstrom, energies in eV, D in A^2/ps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..analysis.liquid import diffusion_coefficient, rdf, unwrap
from ..analysis.scans import angle_scan
from ..calculators import FFPTCalculator
from ..sampling import relax
from .systems import get_system

#: DeePMD folders of the bulk-water data set used for training and for testing
TRAIN_FOLDERS = ("data_0", "data_1", "data_2")
TEST_FOLDER = "data_3"


def monomer_angle_scan(models: dict, angles) -> tuple:
    """``(theta0, curves)``: energy (eV) along the H-O-H angle (degrees) with both O-H bonds
    at the flexible-TIP3P minimum length, for the teacher and each model (name ->
    checkpoint), each relative to its own energy at the TIP3P angle ``theta0``."""
    calc, ref, _ = get_system("water")
    mono = relax(ref, calc)
    o = int(np.nonzero(mono.numbers == 8)[0][0])
    h1, h2 = (int(i) for i in np.nonzero(mono.numbers == 1)[0])
    theta0 = float(mono.get_angle(h1, o, h2))
    calcs = {"flexible TIP3P": calc}
    calcs.update({name: FFPTCalculator.from_checkpoints(ckpt, dtype="float64")
                  for name, ckpt in models.items()})
    curves = {name: angle_scan(c, mono, h1, o, h2, angles)
              - angle_scan(c, mono, h1, o, h2, [theta0])[0] for name, c in calcs.items()}
    return theta0, curves


def _sem(x: np.ndarray) -> np.ndarray:
    """Standard error of the mean over the first axis (NaN for one sample)."""
    if len(x) < 2:
        return np.full_like(x[0], np.nan, dtype=float)
    return x.std(axis=0, ddof=1) / np.sqrt(len(x))


def liquid_properties(folder: str | Path, summary: dict, skip_ps: float, save_fs: float,
                      element: int = 8) -> dict | None:
    """O-O g(r) and the self-diffusion coefficient D of each trajectory that did not fail in
    a stability run (its ``traj_NNN.traj`` files, frames every ``save_fs`` fs, the first
    ``skip_ps`` ps left out as equilibration); per-trajectory values, their mean and standard
    error. None when no trajectory has at least 10 frames left."""
    from ase.io import Trajectory

    if not save_fs > 0 or skip_ps < 0:
        raise ValueError(f"need save_fs > 0 and skip_ps >= 0, got {save_fs}, {skip_ps}")
    gs, ds, r, msd_curves = [], [], None, []
    for t in summary["trajectories"]:
        if t["failed"]:
            continue
        with Trajectory(str(Path(folder) / f"traj_{t['trajectory']:03d}.traj")) as tr:
            images = list(tr)
        images = images[round(skip_ps * 1000.0 / save_fs):]
        if len(images) < 10:
            continue
        r, g = rdf(images[::4], element, element, r_max=6.0, n_bins=120)
        gs.append(g)
        sel = images[0].numbers == element
        pos = unwrap(np.array([a.positions[sel] for a in images]), images[0].cell)
        d = diffusion_coefficient(pos, save_fs)
        ds.append(d["D_A2_per_ps"])
        msd_curves.append((d["t_ps"], d["msd_A2"]))
    if not gs:
        return None
    gs, ds = np.array(gs), np.array(ds)
    peak = int(np.argmax(gs.mean(axis=0)))
    return {"n_trajectories": len(gs), "r_A": r.tolist(),
            "g_OO_mean": gs.mean(axis=0).tolist(), "g_OO_sem": _sem(gs).tolist(),
            "first_peak_r_A": float(r[peak]),
            "first_peak_height": float(gs.mean(axis=0)[peak]),
            "first_peak_height_sem": float(_sem(gs)[peak]),
            "D_A2_per_ps_each": ds.tolist(), "D_A2_per_ps_mean": float(ds.mean()),
            "D_A2_per_ps_sem": float(_sem(ds[:, None])[0]),
            "msd": [(t.tolist(), m.tolist()) for t, m in msd_curves]}
