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


#: fewest independent units (blocks of a paired comparison, runs of each sample of a two-sample
#: one) for a bootstrap interval: with fewer, 95 % intervals cover the true value far less
#: often than 95 % (BCa's coverage falls well below its nominal level for small samples)
MIN_BLOCKS = 10
MIN_RUNS_PER_SAMPLE = 5


def block_count(n: int, block: int) -> int:
    """How many blocks of ``block`` consecutive items ``n`` items make (the last may be
    shorter)."""
    return -(-int(n) // int(block))


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"the confidence level must be between 0 and 1, got {confidence}")


def _bootstrap_interval(data, statistic, paired: bool, confidence: float, n_resamples: int,
                        rng):
    """scipy's BCa bootstrap interval, or its percentile interval where BCa's acceleration is
    undefined (near-equal values: a 0 / 0 inside scipy, then NaN)."""
    from scipy import stats
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        ci = stats.bootstrap(data, statistic, paired=paired, vectorized=True,
                             confidence_level=confidence, n_resamples=n_resamples,
                             method="BCa", batch=1000, rng=rng).confidence_interval
    if not (np.isfinite(ci.low) and np.isfinite(ci.high)):
        ci = stats.bootstrap(data, statistic, paired=paired, vectorized=True,
                             confidence_level=confidence, n_resamples=n_resamples,
                             method="percentile", batch=1000, rng=rng).confidence_interval
    return float(ci.low), float(ci.high)


def paired_difference(a, b, weights=None, block: int = 1, confidence: float = 0.95,
                      n_resamples: int = 9999, seed: int = 0) -> dict:
    """The weighted mean of ``b - a`` over paired values (two models' errors on the same
    frames, in the units of ``a``), with a bootstrap confidence interval and a two-sided
    p-value. Positive: ``b`` larger.

    Consecutive items are taken together in blocks of ``block``: items next to each other
    (frames of one trajectory, in their order) are correlated, and treating them as
    independent would make the interval too narrow and the p-value too small. Each block
    contributes its weighted mean difference with its summed weight (``weights``: for
    example the number of force components of a frame, which makes the difference exactly
    that of the two models' force MAEs). The interval is the BCa bootstrap over blocks
    (``scipy.stats.bootstrap``; the percentile bootstrap where the blocks are too alike for
    BCa's correction); the p-value is a sign-flip permutation test over blocks
    (``scipy.stats.permutation_test``). Its hypothesis is that each block's difference is
    as likely to have either sign (distributed symmetrically about 0), a little more than
    "equal mean errors". ``n_resamples`` for both; ``seed`` makes them reproducible. At
    least :data:`MIN_BLOCKS` blocks are needed (a ValueError otherwise): with fewer, the
    intervals under-cover and the p-value cannot be small.

    Returns ``difference``, ``ci_low``, ``ci_high``, ``confidence``, ``p_value``,
    ``p_resolution`` (the smallest p-value the test can give: 2 / 2**n_blocks when every
    sign pattern is enumerated, else 2 / (n_resamples + 1)), ``n_blocks``, ``block`` and
    ``n`` (pairs)."""
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
    _check_confidence(confidence)
    n_blocks = block_count(len(a), block)
    if n_blocks < MIN_BLOCKS:
        raise ValueError(f"{len(a)} pairs in blocks of {block} make {n_blocks} blocks: a "
                         f"paired comparison needs {MIN_BLOCKS} at least")
    starts = np.arange(0, len(a), int(block))
    wb = np.add.reduceat(w, starts)
    db = np.add.reduceat(w * (b - a), starts) / wb
    difference = float(np.sum(wb * db) / np.sum(wb))
    exact = (1 << n_blocks) <= n_resamples   # scipy then enumerates every sign pattern
    out = {"difference": difference, "confidence": confidence, "n_blocks": n_blocks,
           "block": int(block), "n": len(a),
           "p_resolution": 2.0 ** (1 - n_blocks) if exact else 2 / (n_resamples + 1)}
    if np.ptp(db) == 0:   # every block the same: no spread to resample
        # (the test's answer: 1 for no difference, its most extreme p-value otherwise)
        p = 1.0 if difference == 0 else out["p_resolution"]
        return {**out, "ci_low": difference, "ci_high": difference, "p_value": p}

    def weighted_mean(d, weight, axis=-1):
        return np.sum(d * weight, axis=axis) / np.sum(weight, axis=axis)

    rng = np.random.default_rng(seed)
    low, high = _bootstrap_interval((db, wb), weighted_mean, True, confidence, n_resamples,
                                    rng)
    test = stats.permutation_test((db,), lambda d, axis=-1: weighted_mean(d, wb, axis),
                                  permutation_type="samples", vectorized=True,
                                  n_resamples=n_resamples, alternative="two-sided",
                                  batch=1000, rng=rng)
    return {**out, "ci_low": low, "ci_high": high, "p_value": float(test.pvalue)}


def two_sample_difference(a, b, confidence: float = 0.95, n_resamples: int = 9999,
                          seed: int = 0) -> dict:
    """``mean(b) - mean(a)`` of two independent samples (one value per run: a walker's
    unphysical fraction under each of two models; in the samples' units), with a two-sided
    permutation p-value (the runs' model labels exchanged, ``scipy.stats.permutation_test``;
    two values per sample at least) and, where each sample has
    :data:`MIN_RUNS_PER_SAMPLE` values or more, a bootstrap confidence interval (BCa over
    each sample separately, ``scipy.stats.bootstrap``; the percentile bootstrap where BCa is
    undefined). Two samples that are each constant give an interval of zero width.

    Returns ``difference``, ``ci_low`` and ``ci_high`` (None for smaller samples),
    ``confidence``, ``p_value``, ``p_resolution`` (the smallest p-value the test can give),
    ``n_a`` and ``n_b``."""
    from math import comb

    from scipy import stats
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"two 1-d samples are needed, got shapes {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"each sample needs two values at least, got {len(a)} and {len(b)}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("the samples are not all finite")
    _check_confidence(confidence)
    difference = float(b.mean() - a.mean())
    splits = comb(len(a) + len(b), len(a))
    exact = splits <= n_resamples
    out = {"difference": difference, "confidence": confidence, "n_a": len(a), "n_b": len(b),
           "p_resolution": min(1.0, 2 / splits) if exact else 2 / (n_resamples + 1)}
    with_interval = min(len(a), len(b)) >= MIN_RUNS_PER_SAMPLE
    if np.ptp(np.concatenate([a, b])) == 0:   # every run the same value: nothing to test
        ci = (difference, difference) if with_interval else (None, None)
        return {**out, "ci_low": ci[0], "ci_high": ci[1], "p_value": 1.0}

    def mean_difference(x, y, axis=-1):
        return np.mean(y, axis=axis) - np.mean(x, axis=axis)

    rng = np.random.default_rng(seed)
    low = high = None
    if with_interval:
        low, high = _bootstrap_interval((a, b), mean_difference, False, confidence,
                                        n_resamples, rng)
    test = stats.permutation_test((a, b), mean_difference, permutation_type="independent",
                                  vectorized=True, n_resamples=n_resamples,
                                  alternative="two-sided", rng=rng)
    return {**out, "ci_low": low, "ci_high": high, "p_value": float(test.pvalue)}
