"""Is one model more accurate than another on the same frames? The difference of their
energy and force MAEs, with a confidence interval and a p-value, over a whole set and per
group of frames (the combustion data's channels).

Both models are scored on the same frames, so the comparison is paired: each frame's error
under model B minus its error under model A (:func:`~.statistics.paired_difference`).
Frames next to each other in a set (an MD trajectory's) are correlated, so they are taken
together in blocks of consecutive frames, within each group. A negative difference means
model B is the more accurate. Energies in eV, forces in eV/A.
"""

from __future__ import annotations

import numpy as np

from ..training.metrics import frame_errors, group_labels
from .statistics import paired_difference


def _compare(err_a: dict, err_b: dict, **stats) -> dict:
    """Energy and force MAEs of A and B and the paired statistics of B - A."""
    comps = err_a["force_components"]
    fa, fb = err_a["forces_abs_sum"] / comps, err_b["forces_abs_sum"] / comps
    out = {"n_frames": len(comps),
           "energy_mae": (float(err_a["energy_abs"].mean()), float(err_b["energy_abs"].mean())),
           "forces_mae": (float(err_a["forces_abs_sum"].sum() / comps.sum()),
                          float(err_b["forces_abs_sum"].sum() / comps.sum()))}
    try:
        out["energy_mae_difference"] = paired_difference(err_a["energy_abs"],
                                                         err_b["energy_abs"], **stats)
        out["forces_mae_difference"] = paired_difference(fa, fb, weights=comps, **stats)
    except ValueError as err:   # too few frames for two blocks: the MAEs alone
        out["note"] = str(err)
    return out


def compare_errors(frames, pred_a, pred_b, group_key: str | None = None, block: int = 20,
                   confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0) -> dict:
    """Paired comparison of two models' errors on ``frames``. ``pred_a``, ``pred_b``: each
    model's ``(energy (frames,), forces (frames, atoms, 3))`` predictions, in eV and eV/A.

    Returns ``{"all": ..., "groups": {label: ...}}`` (groups only with ``group_key``, a
    per-frame extra of the frames, sorted by label). Each entry holds ``n_frames``,
    ``energy_mae`` and ``forces_mae`` as (A, B) pairs, and ``energy_mae_difference`` and
    ``forces_mae_difference`` (B - A, :func:`~.statistics.paired_difference` over blocks of
    ``block`` consecutive frames: ``difference``, ``ci_low``, ``ci_high``, ``p_value``...);
    a group too small for two blocks has its MAEs and a ``note`` instead. The force
    difference weights each frame by its number of force components, so it is exactly the
    difference of the two force MAEs."""
    err_a, err_b = frame_errors(frames, *pred_a), frame_errors(frames, *pred_b)
    stats = {"block": block, "confidence": confidence, "n_resamples": n_resamples,
             "seed": seed}
    out = {"block": block, "all": _compare(err_a, err_b, **stats)}
    if group_key is not None:
        labels = group_labels(frames, group_key)
        out["groups"] = {}
        for value in sorted(set(labels.tolist())):
            sel = np.flatnonzero(labels == value)
            out["groups"][value] = _compare({k: v[sel] for k, v in err_a.items()},
                                            {k: v[sel] for k, v in err_b.items()}, **stats)
    return out


def difference_text(d: dict | None, scale: float = 1e3, digits: int = 1) -> str:
    """``"+2.3 [+1.1, +3.4], p = 0.0004"`` of a :func:`~.statistics.paired_difference`
    result, the values times ``scale`` (default: eV to meV), the interval at its confidence
    level; ``p <= ...`` where the test cannot resolve a smaller p-value; ``"-"`` for None."""
    if d is None:
        return "-"
    v = [scale * d[k] for k in ("difference", "ci_low", "ci_high")]
    p = (f"p <= {d['p_resolution']:.2g}" if d["p_value"] <= d["p_resolution"]
         else f"p = {d['p_value']:.2g}")
    return f"{v[0]:+.{digits}f} [{v[1]:+.{digits}f}, {v[2]:+.{digits}f}], {p}"
