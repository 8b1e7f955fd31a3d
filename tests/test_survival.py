"""Survival statistics (analysis.survival) against hand-computed values."""

import math

import numpy as np
import pytest

from ffpt_ase.analysis.survival import (compare_ensembles, fisher_failures, kaplan_meier,
                                        logrank, median_survival)


def test_kaplan_meier_matches_the_product_limit_by_hand():
    # failures at 1, 3, 4 ps; censored at 2 and 5 ps
    km = kaplan_meier([1, 2, 3, 4, 5], [1, 0, 1, 1, 0])
    s = dict(zip(km["time_ps"], km["surviving"]))
    assert s[0.0] == 1.0 and s[1.0] == pytest.approx(4 / 5)
    assert s[3.0] == pytest.approx(4 / 5 * 2 / 3) and s[4.0] == pytest.approx(4 / 5 * 2 / 3 / 2)
    assert km["n"] == 5 and km["failed"] == 3
    lo, hi = np.array(km["low"]), np.array(km["high"])
    assert np.all(lo <= np.array(km["surviving"]) + 1e-12) and np.all(hi >= lo)
    # Greenwood on the log-log scale at t = 1: var(log S) = 1 / (5 * 4)
    S, v = 0.8, 1 / 20
    se = math.sqrt(v) / abs(math.log(S))
    z = 1.959963984540054
    expected_low = S ** math.exp(z * se)
    assert km["low"][1] == pytest.approx(expected_low, rel=1e-6)


def test_median_survival_counts_the_survivors():
    # the curve above: S = 0.8 from 1 ps, 0.533 from 3 ps, 0.267 from 4 ps
    assert median_survival(kaplan_meier([1, 2, 3, 4, 5], [1, 0, 1, 1, 0])) == 4.0
    # S reaches exactly 0.5 at 2 ps
    assert median_survival(kaplan_meier([1, 2, 3, 4], [1, 1, 1, 1])) == 2.0
    # one of 32 failed early: the median over the failed would be 3 ps, the survivors' is
    # beyond the run
    assert median_survival(kaplan_meier([3.0] + [50.0] * 31, [True] + [False] * 31)) is None
    assert median_survival(kaplan_meier([50.0] * 4, [False] * 4)) is None


def test_without_failures_the_band_is_the_exact_binomial_bound():
    km = kaplan_meier([50.0] * 32, [False] * 32)
    assert km["surviving"] == [1.0] and km["failed"] == 0
    assert km["low"][0] == pytest.approx(0.025 ** (1 / 32))      # 0.891
    km = kaplan_meier([10.0, 50.0, 50.0, 50.0], [False] * 4)      # one cut short at 10 ps
    assert km["time_ps"] == [0.0, 10.0]
    assert km["low"] == pytest.approx([0.025 ** (1 / 4), 0.025 ** (1 / 3)])


def test_fisher_and_logrank():
    # 6 of 32 failed against 0 of 32: the hypergeometric tail, doubled (symmetric margins)
    p_one = math.comb(32, 6) * math.comb(32, 0) / math.comb(64, 6)
    assert fisher_failures(6, 32, 0, 32) == pytest.approx(2 * p_one)
    assert fisher_failures(1, 16, 0, 16) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="between 0 and the ensemble size"):
        fisher_failures(5, 4, 0, 4)
    # log-rank by hand: a fails at 1 and 2 ps (3 more censored at 5), b never (5 at 5)
    a = ([1, 2, 5, 5, 5], [1, 1, 0, 0, 0])
    b = ([5] * 5, [0] * 5)
    # t=1: 10 at risk, 5 in a, 1 death: E_a = 0.5, V = 5*5*1*9/(100*9) = 0.25
    # t=2: 9 at risk, 4 in a: E_a = 4/9, V = 4*5*1*8/(81*8) = 20/81
    e, v = 0.5 + 4 / 9, 0.25 + 20 / 81
    z = (2 - e) / math.sqrt(v)
    res = logrank(a, b)
    assert res["z"] == pytest.approx(z) and res["p"] == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert logrank(b, b) == {"z": 0.0, "p": 1.0}
    both = compare_ensembles({"scratch": a, "FFPT-FT": b})
    t = both["tests"]["scratch vs FFPT-FT"]
    assert t["logrank"]["p"] == pytest.approx(res["p"]) and t["fisher_p"] == pytest.approx(
        fisher_failures(2, 5, 0, 5))
    with pytest.raises(ValueError, match="finite"):
        kaplan_meier([1.0, np.nan], [1, 0])


def test_survival_plot_with_bands_is_written(tmp_path):
    from ffpt_ase.analysis.plots import plot_survival
    from ffpt_ase.analysis.survival import from_trajectories
    runs = [{"failed": True, "time_to_failure_ps": 1.8, "simulated_ps": 1.8},
            {"failed": False, "time_to_failure_ps": None, "simulated_ps": 10.0}]
    times, failed = from_trajectories(runs)
    assert times.tolist() == [1.8, 10.0] and failed.tolist() == [True, False]
    both = compare_ensembles({"scratch": (times, failed), "FFPT-FT": ([10.0, 10.0], [0, 0])})
    path = plot_survival(both["curves"], tmp_path / "s.png", until_ps=10.0)
    assert path.stat().st_size > 5000


def test_standard_error_over_runs():
    from ffpt_ase.analysis.statistics import standard_error
    assert standard_error([1.0, 2.0, 3.0, 6.0]) == pytest.approx(np.std([1, 2, 3, 6], ddof=1) / 2)
    per_bin = standard_error([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]])   # one curve per run
    np.testing.assert_allclose(per_bin, [2.0 / np.sqrt(3), 0.0])
    assert standard_error([5.0]) is None and standard_error([]) is None
