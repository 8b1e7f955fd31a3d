"""Structure and transport of periodic liquids: radial distribution functions and the
self-diffusion coefficient from the mean squared displacement (Angstrom, fs in; A^2/ps out).
"""

from __future__ import annotations

import numpy as np
from ase.geometry import find_mic

from ..simulate.observables import rdf  # noqa: F401  (part of this module's interface)


def unwrap(positions: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Continuous trajectories from wrapped positions (frames, atoms, 3): consecutive
    displacements are taken with the minimum-image convention and accumulated."""
    pos = np.asarray(positions, float)
    disp = np.diff(pos, axis=0).reshape(-1, 3)
    disp, _ = find_mic(disp, cell, True)
    disp = disp.reshape(pos.shape[0] - 1, pos.shape[1], 3)
    return np.concatenate([pos[:1], pos[:1] + np.cumsum(disp, axis=0)])


def mean_squared_displacement(positions: np.ndarray, max_lag: int | None = None):
    """MSD(lag) in A^2 averaged over atoms and time origins; positions unwrapped."""
    pos = np.asarray(positions, float)
    n = len(pos)
    max_lag = max_lag or n // 2
    lags = np.arange(1, max_lag + 1)
    msd = np.array([np.mean(np.sum((pos[k:] - pos[:-k]) ** 2, axis=-1)) for k in lags])
    return lags, msd


def diffusion_coefficient(positions: np.ndarray, dt_fs: float, fit_range=(0.2, 0.8),
                          max_lag: int | None = None) -> dict:
    """Self-diffusion coefficient D = slope(MSD)/6 from a linear fit over the given fraction
    of lags (A^2/ps; 1 A^2/ps = 1e-8 m^2/s). Returns D, the fit and the MSD curve."""
    lags, msd = mean_squared_displacement(positions, max_lag)
    t_ps = lags * dt_fs * 1e-3
    lo, hi = int(fit_range[0] * len(lags)), max(int(fit_range[1] * len(lags)), 2)
    slope, intercept = np.polyfit(t_ps[lo:hi], msd[lo:hi], 1)
    return {"D_A2_per_ps": slope / 6.0, "D_m2_per_s": slope / 6.0 * 1e-8,
            "fit_intercept_A2": intercept, "t_ps": t_ps, "msd_A2": msd}
