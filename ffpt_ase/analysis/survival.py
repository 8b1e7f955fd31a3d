"""Survival statistics of MD stability ensembles: Kaplan-Meier curves with confidence
bands, Fisher's exact test on failure counts and the log-rank test on times to failure.

A trajectory is ``(time_ps, failed)``: the time it failed, or the time it was simulated to
without failing (right-censored: a trajectory cut short by the budget, or one that reached
the full length). Times are in ps. SciPy does the statistics (``scipy.stats.ecdf`` with
``CensoredData``, ``logrank``, ``fisher_exact``): well-tested implementations of the
textbook estimators, with their conventions (log-log Greenwood bands, two-sided tests).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats


def _censored(times, failed) -> stats.CensoredData:
    times = np.asarray(times, float)
    failed = np.asarray(failed, bool)
    if times.shape != failed.shape or times.ndim != 1 or len(times) == 0:
        raise ValueError("times and failed flags must be two equally long, non-empty lists")
    if not np.all(np.isfinite(times)) or np.any(times < 0):
        raise ValueError("times must be finite and >= 0 ps")
    return stats.CensoredData(uncensored=times[failed], right=times[~failed])


def from_trajectories(results: list) -> tuple:
    """``(times_ps, failed)`` of a stability run's trajectory records (each with ``failed``,
    ``time_to_failure_ps`` and ``simulated_ps``)."""
    failed = np.array([bool(r["failed"]) for r in results])
    times = np.array([r["time_to_failure_ps"] if r["failed"] else r["simulated_ps"]
                      for r in results], float)
    return times, failed


def kaplan_meier(times, failed, confidence: float = 0.95) -> dict:
    """The Kaplan-Meier survival curve of one ensemble as steps: ``{"time_ps": [0, t1, ...],
    "surviving": [1, S(t1), ...], "low": [...], "high": [...], "n": n, "failed": k}``, each
    value holding from its time to the next. The band is the pointwise ``confidence``
    interval (Greenwood's variance on the log-log scale). Without any failure the curve is
    1 and the lower bound is the exact binomial one for no failure among the trajectories
    still at risk, (1 - confidence)/2 to the power 1/n."""
    data = _censored(times, failed)
    t = np.asarray(times, float)
    f = np.asarray(failed, bool)
    alpha = 1.0 - confidence
    if not f.any():   # steps where the number at risk drops (censoring times)
        starts = np.concatenate([[0.0], np.unique(t)[:-1]])
        at_risk = np.maximum([(t > x).sum() for x in starts], 1)
        return {"time_ps": starts.tolist(), "surviving": [1.0] * len(starts),
                "low": ((alpha / 2) ** (1.0 / at_risk)).tolist(),
                "high": [1.0] * len(starts), "n": int(len(t)), "failed": 0}
    sf = stats.ecdf(data).sf
    with warnings.catch_warnings():   # where S = 0 or 1 the band is undefined: filled below
        warnings.filterwarnings("ignore", "The confidence interval is undefined",
                                RuntimeWarning)
        band = sf.confidence_interval(confidence, method="log-log")
    low = np.nan_to_num(band.low.probabilities, nan=0.0)
    high = np.nan_to_num(band.high.probabilities, nan=1.0)
    return {"time_ps": [0.0] + sf.quantiles.tolist(),
            "surviving": [1.0] + sf.probabilities.tolist(),
            "low": [1.0] + low.tolist(), "high": [1.0] + high.tolist(),
            "n": int(len(t)), "failed": int(f.sum())}


def median_survival(curve: dict):
    """The Kaplan-Meier median survival time (ps) of a :func:`kaplan_meier` curve: the first
    time at which the surviving fraction is 0.5 or less. ``None`` when it never falls that
    far: more than half the trajectories survived everything observed, so the median is
    only known to exceed the longest time. Unlike the median over failed trajectories, it
    counts the survivors."""
    for t, s in zip(curve["time_ps"], curve["surviving"]):
        if s <= 0.5:
            return float(t)
    return None


def fisher_failures(failed_a: int, n_a: int, failed_b: int, n_b: int) -> float:
    """Two-sided p-value of Fisher's exact test that two ensembles fail equally often."""
    for k, n in ((failed_a, n_a), (failed_b, n_b)):
        if not 0 <= k <= n or n < 1:
            raise ValueError(f"failure counts must be between 0 and the ensemble size, got "
                             f"{k} of {n}")
    return float(stats.fisher_exact([[failed_a, n_a - failed_a],
                                     [failed_b, n_b - failed_b]]).pvalue)


def logrank(a: tuple, b: tuple) -> dict:
    """The log-rank test of ``a = (times, failed)`` against ``b``: ``{"z": statistic,
    "p": two-sided p}``; z > 0 when ``a`` fails more than expected. With no failure in
    either ensemble there is nothing to test: z 0, p 1."""
    if not (np.any(a[1]) or np.any(b[1])):
        return {"z": 0.0, "p": 1.0}
    res = stats.logrank(_censored(*a), _censored(*b))
    return {"z": float(res.statistic), "p": float(res.pvalue)}


def compare_ensembles(ensembles: dict, confidence: float = 0.95) -> dict:
    """Kaplan-Meier curves of each ensemble ``{name: (times, failed)}`` and, for every pair
    of names, Fisher's exact test on the failure counts and the log-rank test on the
    times."""
    curves = {name: kaplan_meier(*e, confidence=confidence) for name, e in ensembles.items()}
    names = list(ensembles)
    tests = {}
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            cx, cy = curves[x], curves[y]
            tests[f"{x} vs {y}"] = {
                "fisher_p": fisher_failures(cx["failed"], cx["n"], cy["failed"], cy["n"]),
                "logrank": logrank(ensembles[x], ensembles[y])}
    return {"curves": curves, "tests": tests, "confidence": confidence}
