"""Statistics over independent runs (walkers, trajectories) and paired comparisons of two
models on the same frames."""

from __future__ import annotations

import warnings

import numpy as np


def standard_error(x):
    """Standard error of the mean over the first axis of ``x`` (sample standard deviation,
    ddof 1, over sqrt(n)): a float for one value per run, an array for arrays (an RDF per
    trajectory); None for fewer than two runs, where no error can be estimated."""
    x = np.asarray(x, float)
    if len(x) < 2:
        return None
    sem = x.std(axis=0, ddof=1) / np.sqrt(len(x))
    return float(sem) if sem.ndim == 0 else sem


def paired_difference(a, b, weights=None, block: int = 1, confidence: float = 0.95,
                      n_resamples: int = 9999, seed: int = 0) -> dict:
    """The weighted mean of ``b - a`` over paired values (two models' errors on the same
    frames), with a bootstrap confidence interval and a two-sided p-value.

    Consecutive items are taken together in blocks of ``block``: items next to each other
    (frames of one trajectory) are correlated, and treating them as independent would make
    the interval too narrow and the p-value too small. Each block contributes its weighted
    mean difference with its summed weight (``weights``: for example the number of force
    components of a frame, which makes the difference exactly that of the two models' force
    MAEs). The interval is the BCa bootstrap over blocks (``scipy.stats.bootstrap``; the
    percentile bootstrap where the blocks are too alike for BCa's correction); the
    p-value is a sign-flip permutation test over blocks (``scipy.stats.permutation_test``):
    under the hypothesis that neither model is better, each block's difference is as likely
    to have either sign. ``n_resamples`` for both; ``seed`` makes them reproducible.

    Returns ``difference`` (in the units of ``a``), ``ci_low``, ``ci_high``, ``confidence``,
    ``p_value``, ``p_resolution`` (the smallest p-value the test can give: 2 / 2**n_blocks
    when every sign pattern is enumerated, else 2 / (n_resamples + 1)), ``n_blocks``,
    ``block`` and ``n``."""
    from scipy import stats
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"paired values need two 1-d arrays of one length, got shapes "
                         f"{a.shape} and {b.shape}")
    w = np.ones_like(a) if weights is None else np.asarray(weights, float)
    if w.shape != a.shape:
        raise ValueError(f"one weight per pair is needed, got {w.shape} for {a.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and np.all(np.isfinite(w))):
        raise ValueError("the paired values or weights are not all finite")
    if np.any(w <= 0):
        raise ValueError("the weights must be positive")
    if int(block) != block or block < 1:
        raise ValueError(f"the block length must be a whole number >= 1, got {block}")
    if not 0 < confidence < 1:
        raise ValueError(f"the confidence level must be between 0 and 1, got {confidence}")
    starts = np.arange(0, len(a), int(block))
    if len(starts) < 2:
        raise ValueError(f"{len(a)} pairs in blocks of {block} make {len(starts)} block: a "
                         f"paired comparison needs two at least")
    wb = np.add.reduceat(w, starts)
    db = np.add.reduceat(w * (b - a), starts) / wb
    difference = float(np.sum(wb * db) / np.sum(wb))
    exact = 2.0 ** len(db) <= n_resamples   # (scipy then enumerates every sign pattern)
    out = {"difference": difference, "confidence": confidence, "n_blocks": len(db),
           "block": int(block), "n": len(a),
           "p_resolution": 2.0 ** (1 - len(db)) if exact else 2 / (n_resamples + 1)}
    if np.ptp(db) == 0:   # every block the same: no spread to resample
        p = 1.0 if difference == 0 else out["p_resolution"]
        return {**out, "ci_low": difference, "ci_high": difference, "p_value": p}

    def weighted_mean(d, weight, axis=-1):
        return np.sum(d * weight, axis=axis) / np.sum(weight, axis=axis)

    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():   # BCa's acceleration is undefined for near-equal blocks
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)     # (its 0 / 0, then NaN)
        ci = stats.bootstrap((db, wb), weighted_mean, paired=True, vectorized=True,
                             confidence_level=confidence, n_resamples=n_resamples,
                             method="BCa", batch=1000, rng=rng).confidence_interval
    if not (np.isfinite(ci.low) and np.isfinite(ci.high)):   # then the percentile interval
        ci = stats.bootstrap((db, wb), weighted_mean, paired=True, vectorized=True,
                             confidence_level=confidence, n_resamples=n_resamples,
                             method="percentile", batch=1000, rng=rng).confidence_interval
    test = stats.permutation_test((db,), lambda d, axis=-1: weighted_mean(d, wb, axis),
                                  permutation_type="samples", vectorized=True,
                                  n_resamples=n_resamples, alternative="two-sided",
                                  batch=1000, rng=rng)
    return {**out, "ci_low": float(ci.low), "ci_high": float(ci.high),
            "p_value": float(test.pvalue)}


def two_sample_difference(a, b, confidence: float = 0.95, n_resamples: int = 9999,
                          seed: int = 0) -> dict:
    """``mean(b) - mean(a)`` of two independent samples (one value per run: a walker's
    unphysical fraction under each of two models), with a bootstrap confidence interval (BCa
    over each sample separately, ``scipy.stats.bootstrap``; the percentile bootstrap where
    BCa is undefined) and a two-sided permutation p-value (the runs' model labels exchanged,
    ``scipy.stats.permutation_test``). Each sample needs two values at least.

    Returns ``difference``, ``ci_low``, ``ci_high``, ``confidence``, ``p_value``,
    ``p_resolution`` (the smallest p-value the test can give) and ``n`` (the two sizes)."""
    from math import comb

    from scipy import stats
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"two 1-d samples are needed, got shapes {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"each sample needs two values at least, got {len(a)} and {len(b)}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("the samples are not all finite")
    if not 0 < confidence < 1:
        raise ValueError(f"the confidence level must be between 0 and 1, got {confidence}")
    difference = float(b.mean() - a.mean())
    splits = comb(len(a) + len(b), len(a))
    exact = splits <= n_resamples
    out = {"difference": difference, "confidence": confidence, "n": [len(a), len(b)],
           "p_resolution": min(1.0, 2 / splits) if exact else 2 / (n_resamples + 1)}
    if np.ptp(np.concatenate([a, b])) == 0:   # every run the same value: nothing to test
        return {**out, "ci_low": difference, "ci_high": difference, "p_value": 1.0}

    def mean_difference(x, y, axis=-1):
        return np.mean(y, axis=axis) - np.mean(x, axis=axis)

    rng = np.random.default_rng(seed)
    ci = None
    if np.ptp(a) > 0 and np.ptp(b) > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", stats.DegenerateDataWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            ci = stats.bootstrap((a, b), mean_difference, vectorized=True,
                                 confidence_level=confidence, n_resamples=n_resamples,
                                 method="BCa", rng=rng).confidence_interval
    if ci is None or not (np.isfinite(ci.low) and np.isfinite(ci.high)):
        ci = stats.bootstrap((a, b), mean_difference, vectorized=True,
                             confidence_level=confidence, n_resamples=n_resamples,
                             method="percentile", rng=rng).confidence_interval
    test = stats.permutation_test((a, b), mean_difference, permutation_type="independent",
                                  vectorized=True, n_resamples=n_resamples,
                                  alternative="two-sided", rng=rng)
    return {**out, "ci_low": float(ci.low), "ci_high": float(ci.high),
            "p_value": float(test.pvalue)}
