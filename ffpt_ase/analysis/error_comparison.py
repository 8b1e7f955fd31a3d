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

import math

from ..training.metrics import frame_errors, group_indices
from .statistics import MIN_BLOCKS, block_count, paired_difference


def _compare(err_a: dict, err_b: dict, block: int, **stats) -> dict:
    """Energy and force MAEs of A and B and the paired statistics of B - A."""
    comps = err_a["force_components"]
    out = {"n_frames": len(comps)}
    for key, err in (("a", err_a), ("b", err_b)):
        out[key] = {"energy_mae": float(err["energy_abs"].mean()),
                    "forces_mae": float(err["forces_abs_sum"].sum() / comps.sum())}
    n_blocks = block_count(len(comps), block)
    if n_blocks < MIN_BLOCKS:   # the MAEs alone
        out["note"] = (f"{len(comps)} frames make {n_blocks} blocks of {block}: no statistics "
                       f"below {MIN_BLOCKS} blocks")
        return out
    out["energy_mae_difference"] = paired_difference(err_a["energy_abs"], err_b["energy_abs"],
                                                     block=block, **stats)
    out["forces_mae_difference"] = paired_difference(
        err_a["forces_abs_sum"] / comps, err_b["forces_abs_sum"] / comps, weights=comps,
        block=block, **stats)
    return out


def compare_errors(frames, pred_a, pred_b, group_key: str | None = None, block: int = 20,
                   confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0) -> dict:
    """Paired comparison of two models' errors on ``frames``. ``pred_a``, ``pred_b``: each
    model's ``(energy (frames,), forces (frames, atoms, 3))`` predictions, in eV and eV/A.
    The frames should be in their files' order (an MD trajectory's time order), so that a
    block of consecutive frames holds correlated ones.

    Returns ``{"block": ..., "all": ..., "groups": {label: ...}}`` (groups only with
    ``group_key``, a per-frame extra of the frames, sorted by label; each group's frames in
    their order in the set). Each entry holds ``n_frames``, ``a`` and ``b`` (each model's
    ``energy_mae`` in eV and ``forces_mae`` in eV/A), and ``energy_mae_difference`` and
    ``forces_mae_difference`` (B - A, negative where B is the more accurate:
    :func:`~.statistics.paired_difference` over blocks of ``block`` consecutive frames:
    ``difference``, ``ci_low``, ``ci_high``, ``p_value``...); an entry with fewer than
    :data:`~.statistics.MIN_BLOCKS` blocks has its MAEs and a ``note`` instead. The force
    difference weights each frame by its number of force components, so it is exactly the
    difference of the two force MAEs."""
    err_a, err_b = frame_errors(frames, *pred_a), frame_errors(frames, *pred_b)
    stats = {"confidence": confidence, "n_resamples": n_resamples, "seed": seed}
    out = {"block": block, "all": _compare(err_a, err_b, block, **stats)}
    if group_key is not None:
        out["groups"] = {
            value: _compare({k: v[sel] for k, v in err_a.items()},
                            {k: v[sel] for k, v in err_b.items()}, block, **stats)
            for value, sel in group_indices(frames, group_key).items()}
    return out


def _ceil_2g(x: float) -> str:
    """``x`` rounded up to two significant digits, as text (a bound must not shrink)."""
    if x <= 0:
        return f"{x:.2g}"
    scale = 10.0 ** (math.floor(math.log10(x)) - 1)
    return f"{math.ceil(round(x / scale, 9)) * scale:.2g}"


def difference_text(d: dict | None, scale: float = 1e3, digits: int = 1) -> str:
    """``"+2.3 [+1.1, +3.4], p = 0.0004"`` of a :func:`~.statistics.paired_difference` or
    :func:`~.statistics.two_sample_difference` result, the values times ``scale`` (default:
    eV to meV), the interval at its confidence level (left out where there is none);
    ``p <= ...`` (rounded up) where the test cannot resolve a smaller p-value; ``"-"`` for
    None."""
    if d is None:
        return "-"
    text = f"{scale * d['difference']:+.{digits}f}"
    if d.get("ci_low") is not None:
        text += f" [{scale * d['ci_low']:+.{digits}f}, {scale * d['ci_high']:+.{digits}f}]"
    p = (f"p <= {_ceil_2g(d['p_resolution'])}" if d["p_value"] <= d["p_resolution"]
         else f"p = {d['p_value']:.2g}")
    return f"{text}, {p}"
