"""Paired comparison of two models on the same frames: MAE differences with bootstrap
intervals and sign-flip p-values over blocks of consecutive frames."""

import json

import numpy as np
import pytest
from ase import Atoms

from ffpt_ase.analysis.error_comparison import compare_errors, difference_text
from ffpt_ase.analysis.statistics import paired_difference
from ffpt_ase.data.frames import Frames
from ffpt_ase.training.metrics import error_metrics, frame_errors


def test_a_known_difference_is_recovered_with_an_interval_around_it():
    rng = np.random.default_rng(0)
    a = rng.gamma(2.0, 0.05, 2000)
    b = a + 0.01 + rng.normal(0, 0.02, 2000)
    r = paired_difference(a, b, block=10)
    assert r["difference"] == pytest.approx(np.mean(b - a))
    assert r["ci_low"] < 0.01 < r["ci_high"] and r["ci_low"] > 0
    assert r["p_value"] <= r["p_resolution"] == pytest.approx(2 / 10000)
    assert (r["n"], r["n_blocks"], r["block"]) == (2000, 200, 10)
    swapped = paired_difference(b, a, block=10)          # the sign follows B - A
    assert swapped["difference"] == pytest.approx(-r["difference"])
    assert swapped["ci_high"] < 0


def test_no_difference_gives_a_high_p_and_identical_models_a_zero_interval():
    a = np.linspace(0.1, 1.0, 100)
    b = a + np.where(np.arange(100) % 2, 0.05, -0.05)    # +-0.05 in turn: mean 0
    r = paired_difference(a, b)
    assert r["difference"] == pytest.approx(0, abs=1e-15)
    assert r["p_value"] > 0.9          # (a rounding-level observed mean, not exactly 0)
    assert r["ci_low"] < 0 < r["ci_high"]
    same = paired_difference(a, a.copy(), block=5)
    assert (same["difference"], same["ci_low"], same["ci_high"], same["p_value"]) == (0, 0, 0, 1)


def test_correlated_frames_in_blocks_widen_the_interval_and_raise_p():
    """Differences shared by runs of 25 consecutive frames (one trajectory's frames): taken
    one by one they look like 25 times the evidence they are."""
    rng = np.random.default_rng(3)
    shared = np.repeat(rng.normal(0.004, 0.02, 40), 25)   # 40 independent runs of 25
    a = np.full(1000, 0.1)
    one_by_one = paired_difference(a, a + shared, block=1)
    blocks = paired_difference(a, a + shared, block=25)
    assert one_by_one["difference"] == pytest.approx(blocks["difference"])
    width = [r["ci_high"] - r["ci_low"] for r in (one_by_one, blocks)]
    assert width[1] > 3.5 * width[0]                      # about sqrt(25) = 5
    assert one_by_one["p_value"] < 0.01 < 0.1 < blocks["p_value"]


def test_ten_blocks_are_enumerated_exactly_and_the_floor_is_rounded_up():
    a = np.zeros(100)
    b = np.repeat(np.linspace(0.1, 1.0, 10), 10)        # ten blocks, all positive
    r = paired_difference(a, b, block=10, n_resamples=2000)
    assert r["p_resolution"] == pytest.approx(2 / 2 ** 10)
    assert r["p_value"] == pytest.approx(2 / 2 ** 10)     # the most extreme of 1,024 patterns
    assert difference_text(r).endswith("p <= 0.002")     # 0.00195 rounded up, never down
    assert difference_text({**r, "p_resolution": 0.0625}).endswith("p <= 0.063")
    assert difference_text(None) == "-"


def test_the_sign_flip_p_value_keeps_each_blocks_weight():
    """Against a brute-force count over all 2**8 sign patterns of 8 very uneven blocks."""
    import itertools

    from ffpt_ase.analysis import statistics
    rng = np.random.default_rng(7)
    d, w = rng.normal(0.3, 1.0, 8), np.array([1, 50, 2, 30, 1, 5, 80, 3], float)
    observed = np.sum(w * d) / w.sum()
    null = np.array([np.sum(w * d * np.array(s)) / w.sum()
                     for s in itertools.product((1, -1), repeat=8)])
    expect = min(1.0, 2 * min(np.mean(null >= observed - 1e-12),
                              np.mean(null <= observed + 1e-12)))
    old = statistics.MIN_BLOCKS
    statistics.MIN_BLOCKS = 8
    try:
        r = paired_difference(np.zeros(8), d, weights=w)
    finally:
        statistics.MIN_BLOCKS = old
    assert r["p_value"] == pytest.approx(expect)
    assert r["difference"] == pytest.approx(observed)


def test_p_values_are_calibrated_when_there_is_no_difference():
    rng = np.random.default_rng(11)
    p = [paired_difference(np.zeros(200), rng.normal(0, 1, 200), block=10, n_resamples=499,
                           seed=k)["p_value"] for k in range(120)]
    assert 0.01 <= np.mean(np.array(p) < 0.05) <= 0.12    # about 5 %
    assert 0.35 <= np.mean(p) <= 0.65                      # about uniform


def test_more_than_a_thousand_blocks():
    rng = np.random.default_rng(4)
    a = rng.uniform(0, 1, 1500)
    r = paired_difference(a, a + rng.normal(0.02, 0.1, 1500))    # block 1: 1,500 blocks
    assert r["n_blocks"] == 1500 and r["p_resolution"] == pytest.approx(2 / 10000)
    assert r["ci_low"] < r["difference"] < r["ci_high"]


def test_the_weighted_difference_is_that_of_the_weighted_means():
    rng = np.random.default_rng(1)
    a, b, w = rng.uniform(0, 1, 57), rng.uniform(0, 1, 57), rng.integers(6, 19, 57)
    r = paired_difference(a, b, weights=w, block=6)       # a last, shorter block
    assert r["n_blocks"] == 10
    assert r["difference"] == pytest.approx(np.sum(w * b) / w.sum() - np.sum(w * a) / w.sum())


@pytest.mark.parametrize("kwargs, match", [
    ({"b": np.zeros(9)}, "two 1-d arrays of one length"),
    ({"weights": np.ones(9)}, "one weight per pair"),
    ({"weights": np.r_[np.ones(9), 0.0]}, "weights must be positive"),
    ({"b": np.r_[np.zeros(9), np.nan]}, "not all finite"),
    ({"block": 0}, "block length"),
    ({"block": 2.5}, "block length"),
    ({"block": 2}, "10 pairs in blocks of 2 make 5 blocks.*needs 10"),
    ({"confidence": 1.5}, "confidence level"),
])
def test_bad_input_is_refused(kwargs, match):
    args = {"a": np.zeros(10), "b": np.ones(10), **kwargs}
    with pytest.raises(ValueError, match=match):
        paired_difference(args.pop("a"), args.pop("b"), **args)


def _frames(n=90):
    """Frames of 2, 3 and 4 atoms in turn (padded), with labels: 2/3 of them "09", the rest
    "10"."""
    rng = np.random.default_rng(0)
    images = []
    for k in range(n):
        a = Atoms("H" * (2 + k % 3), positions=rng.normal(size=(2 + k % 3, 3)) * 2)
        a.info["energy"] = float(rng.normal())
        a.arrays["forces"] = rng.normal(size=(len(a), 3))
        images.append(a)
    frames = Frames.from_atoms_list(images)
    frames.extras["reaction"] = np.where(np.arange(n) < 2 * n // 3, "09", "10")
    return frames


def _predictions(frames, seed, scale):
    rng = np.random.default_rng(seed)
    return (frames.energy + scale * rng.normal(size=len(frames)),
            frames.forces + scale * rng.normal(size=frames.forces.shape))


def test_compare_errors_gives_each_models_own_maes_and_their_difference():
    frames = _frames(300)
    pa, pb = _predictions(frames, 1, 0.1), _predictions(frames, 2, 0.3)
    res = compare_errors(frames, pa, pb, group_key="reaction", block=10, n_resamples=999)
    ma, mb = error_metrics(frames, *pa), error_metrics(frames, *pb)
    every = res["all"]
    for key, m in (("a", ma), ("b", mb)):
        assert every[key]["energy_mae"] == pytest.approx(m["energy_mae"])
        assert every[key]["forces_mae"] == pytest.approx(m["forces_mae"])
    # the padding rows (0 reference, noisy prediction) count nowhere
    d = every["forces_mae_difference"]
    assert d["difference"] == pytest.approx(mb["forces_mae"] - ma["forces_mae"])
    assert 0 < d["ci_low"] < d["difference"] < d["ci_high"]    # B is 3x noisier
    assert d["p_value"] <= d["p_resolution"] and d["n_blocks"] == 30
    assert every["energy_mae_difference"]["difference"] == pytest.approx(
        mb["energy_mae"] - ma["energy_mae"])
    assert list(res["groups"]) == ["09", "10"]
    assert [res["groups"][g]["n_frames"] for g in ("09", "10")] == [200, 100]
    sel = np.flatnonzero(frames.extras["reaction"] == "10")
    m10 = error_metrics(frames[sel], pa[0][sel], pa[1][sel])
    assert res["groups"]["10"]["a"]["forces_mae"] == pytest.approx(m10["forces_mae"])
    assert res["groups"]["10"]["forces_mae_difference"]["n_blocks"] == 10


def test_a_group_too_small_for_ten_blocks_keeps_its_maes_and_says_why():
    frames = _frames(300)
    frames.extras["reaction"] = np.where(np.arange(300) < 210, "09", "10")
    res = compare_errors(frames, _predictions(frames, 1, 0.1), _predictions(frames, 2, 0.2),
                         group_key="reaction", block=10, n_resamples=999)
    small = res["groups"]["10"]
    assert small["n_frames"] == 90 and small["b"]["forces_mae"] > small["a"]["forces_mae"]
    assert "forces_mae_difference" not in small
    assert small["note"] == "90 frames make 9 blocks of 10: no statistics below 10 blocks"
    assert "forces_mae_difference" in res["groups"]["09"]


def test_frame_errors_sum_to_the_set_maes():
    frames = _frames()
    e, f = _predictions(frames, 4, 0.2)
    err, m = frame_errors(frames, e, f), error_metrics(frames, e, f)
    assert err["energy_abs"].mean() == pytest.approx(m["energy_mae"])
    assert err["forces_abs_sum"].sum() / err["force_components"].sum() == pytest.approx(
        m["forces_mae"])
    assert list(err["force_components"][:3]) == [6, 9, 12]
    f[1, 0, 0] = np.nan
    with pytest.raises(FloatingPointError, match="1 of 90 frames"):
        frame_errors(frames, e, f)


def test_compare_command(tmp_path, capsys, tiny_model):
    import torch

    from ffpt_ase.cli.main import main
    from ffpt_ase.model.potential import Potential
    data = tmp_path / "ho2.npz"
    assert main(["sample", "--system", "HO2", "--n", "100", "-o", str(data), "--quiet"]) == 0
    torch.manual_seed(5)
    other = tmp_path / "other.pt"
    torch.save(Potential([1, 8], n_features=8, n_interactions=1, n_basis=6).checkpoint(
        stage="test"), other)
    capsys.readouterr()
    assert main(["compare", str(tiny_model), str(tiny_model), str(data), "--json",
                 "--block", "5", "--resamples", "999"]) == 0
    same = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert same["all"]["forces_mae_difference"]["difference"] == 0
    assert same["all"]["forces_mae_difference"]["p_value"] == 1
    assert main(["compare", str(tiny_model), str(other), str(data), "--json", "--block",
                 "10"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    outputs = []
    for model in (tiny_model, other):
        assert main(["evaluate", str(model), str(data), "--json"]) == 0
        outputs.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    d = res["all"]["forces_mae_difference"]
    assert res["all"]["b"]["forces_mae"] == pytest.approx(outputs[1]["forces_mae"])
    assert d["difference"] == pytest.approx(outputs[1]["forces_mae"] - outputs[0]["forces_mae"])
    assert d["ci_low"] <= d["difference"] <= d["ci_high"] and 0 < d["p_value"] <= 1
    assert d["n_blocks"] == 10
    assert main(["compare", str(tiny_model), str(other), str(data)]) == 0   # 5 blocks of 20
    text = capsys.readouterr().out
    assert "negative: B more accurate" in text and "no statistics below 10 blocks" in text
    assert main(["compare", str(tiny_model), str(other), str(data), "--block", "0"]) == 2
    assert "--block must be >= 1" in capsys.readouterr().err


def test_two_independent_samples_difference_interval_and_exact_p():
    from ffpt_ase.analysis.statistics import two_sample_difference
    rng = np.random.default_rng(2)
    a, b = rng.normal(0.0, 1.0, 40), rng.normal(1.5, 1.0, 40)
    r = two_sample_difference(a, b)
    assert r["difference"] == pytest.approx(b.mean() - a.mean())
    assert 0 < r["ci_low"] < 1.5 < r["ci_high"]
    assert r["p_value"] <= r["p_resolution"] == pytest.approx(2 / 10000)
    assert (r["n_a"], r["n_b"]) == (40, 40)
    # three walkers each, every one of A below every one of B: the most extreme of the
    # C(6, 3) = 20 splits, either way; too few runs for an interval
    small = two_sample_difference([0.0, 0.1, 0.2], [1.0, 1.1, 1.3])
    assert small["p_value"] == pytest.approx(0.1) == small["p_resolution"]
    assert small["ci_low"] is None and small["ci_high"] is None
    assert difference_text(small, scale=1.0) == "+1.0, p <= 0.1"
    same = two_sample_difference(np.zeros(8), np.zeros(8))
    assert (same["difference"], same["ci_low"], same["ci_high"], same["p_value"]) == (0, 0, 0, 1)
    one_sided = two_sample_difference(np.zeros(8), [0, 0, 0, 0, 0, 0, 0.1, 0.3])
    assert one_sided["ci_low"] == 0 and one_sided["ci_high"] > 0.05 and np.isfinite(
        one_sided["p_value"])
    with pytest.raises(ValueError, match="two values at least"):
        two_sample_difference([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="not all finite"):
        two_sample_difference([1.0, np.inf], [1.0, 2.0])


def _walker_set(fractions, delta_f, failed=0):
    walkers = [{"walker": k, "unphysical_fraction": f, "delta_f_kJ_per_mol": d,
                "checked_frames": 100, "failed_at_step": 10 if k < failed else None}
               for k, (f, d) in enumerate(zip(fractions, delta_f))]
    return {"walkers": walkers, "n_failed": failed}


def test_walker_sets_compared_by_failures_fractions_and_delta_f():
    from ffpt_ase.applications.h2combustion.workflows import compare_walker_sets
    scratch = _walker_set([0.3, 0.5, 0.4, 0.6, 0.2, 0.5, 0.4, 0.45],
                          [-110, -95, None, -120, -100, None, -105, -90], failed=6)
    ffpt = _walker_set([0.0] * 8, [210, 220, 215, 225, 205, 218, 212, 222])
    c = compare_walker_sets(scratch, ffpt)
    assert c["failed"]["a"] == [6, 8] and c["failed"]["b"] == [0, 8]
    assert c["failed"]["fisher_p"] == pytest.approx(0.006993, rel=1e-3)   # 6/8 vs 0/8
    assert c["unphysical_fraction"]["difference"] == pytest.approx(-0.41875)
    assert c["unphysical_fraction"]["ci_high"] < 0 and c["unphysical_fraction"]["p_value"] < 0.01
    assert (c["delta_f_kJ_per_mol"]["n_a"], c["delta_f_kJ_per_mol"]["n_b"]) == (6, 8)
    assert c["delta_f_kJ_per_mol"]["difference"] == pytest.approx(215.875 - (-620 / 6))
    refused = {"walkers": [], "error": "non-finite energy at the start", "n_failed": None}
    assert compare_walker_sets(refused, ffpt) == {
        "failed": None, "unphysical_fraction": None, "delta_f_kJ_per_mol": None}
    few = compare_walker_sets(_walker_set([0.1, 0.2], [None, 5.0]), ffpt)
    assert few["delta_f_kJ_per_mol"] is None and few["unphysical_fraction"] is not None
    # a walker that failed before its first check has no fraction to count (not a 0)
    early = _walker_set([0.3, 0.5, 0.0, 0.4, 0.6, 0.2], [None] * 6, failed=1)
    early["walkers"][2]["checked_frames"] = 0
    assert compare_walker_sets(early, ffpt)["unphysical_fraction"]["n_a"] == 5
