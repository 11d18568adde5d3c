from __future__ import annotations

import numpy as np
import pytest

from downpour.core.errors import DownpourError
from downpour.metrics.bootstrap import bootstrap_days, bootstrap_sums, day_weights


def mean_score(s):
    return s["sum"] / s["n"]


def test_day_weights_are_resampling_counts():
    w = day_weights(30, 700, seed=1)
    assert w.shape == (700, 30)
    assert np.all(w.sum(axis=1) == 30) and np.all(w == np.round(w)) and w.min() >= 0
    # each day is drawn 30 × 1/30 = 1 time per resample on average
    assert w.mean() == pytest.approx(1.0)
    np.testing.assert_array_equal(w, day_weights(30, 700, seed=1))


def test_bootstrap_days_uses_day_weights():
    x = np.random.default_rng(0).normal(size=25)
    res = bootstrap_days(lambda w: (w @ x) / w.sum(axis=1), 25, n_boot=300, seed=7)
    means = day_weights(25, 300, seed=7) @ x / 25
    assert res.estimate == pytest.approx(x.mean())
    assert res.low == pytest.approx(np.quantile(means, 0.025))
    assert res.high == pytest.approx(np.quantile(means, 0.975))


def test_identical_days_collapse_to_the_estimate():
    res = bootstrap_sums({"sum": np.full(40, 3.0), "n": np.full(40, 2.0)}, mean_score, n_boot=100)
    assert res.estimate == res.low == res.high == pytest.approx(1.5)


def test_interval_width_of_a_normal_mean():
    x = np.random.default_rng(2).normal(size=400)
    res = bootstrap_sums({"sum": x, "n": np.ones(400)}, mean_score, n_boot=2000, seed=0)
    # width ≈ 2 · 1.96 · σ/√n = 2 · 1.96 / 20 = 0.196
    assert res.high - res.low == pytest.approx(2 * 1.96 / 20, rel=0.15)
    assert res.low < res.estimate < res.high


def test_coverage_of_the_true_mean():
    rng = np.random.default_rng(3)
    hits = 0
    for trial in range(200):
        x = rng.normal(size=60)
        r = bootstrap_sums({"sum": x, "n": np.ones(60)}, mean_score, n_boot=400, seed=trial)
        hits += r.low <= 0.0 <= r.high
    assert 0.88 <= hits / 200 <= 0.99  # nominal 0.95 (percentile bootstrap runs a bit low)


def test_seeded_reproducibility_and_vector_scores():
    rng = np.random.default_rng(4)
    stats = {"a": rng.integers(0, 5, (50, 3)), "b": rng.integers(0, 5, (50, 3))}

    def ratio(s):
        return {"share": s["a"] / (s["a"] + s["b"]), "total": s["a"] + s["b"]}

    r1 = bootstrap_sums(stats, ratio, n_boot=300, seed=11)
    r2 = bootstrap_sums(stats, ratio, n_boot=300, seed=11)
    r3 = bootstrap_sums(stats, ratio, n_boot=300, seed=12)
    assert r1["share"].estimate.shape == (3,)
    np.testing.assert_array_equal(r1["share"].low, r2["share"].low)
    assert not np.array_equal(r1["share"].low, r3["share"].low)
    a, b = stats["a"].sum(0), stats["b"].sum(0)
    np.testing.assert_allclose(r1["share"].estimate, a / (a + b))
    np.testing.assert_array_equal(r1["total"].estimate, a + b)


def test_nan_resamples_are_ignored_and_nan_estimates_stay_nan():
    # one event day among 30: resamples without it give 0/0 = NaN, the rest 1.0
    a = np.zeros(30)
    a[0] = 1
    r = bootstrap_sums({"a": a, "n": a}, lambda s: s["a"] / s["n"], n_boot=200)
    assert r.estimate == r.low == r.high == 1.0
    r = bootstrap_sums({"a": np.zeros(30)}, lambda s: s["a"] / s["a"], n_boot=50)
    assert np.isnan(r.estimate) and np.isnan(r.low) and np.isnan(r.high)


def test_bad_input():
    with pytest.raises(DownpourError, match="no days"):
        bootstrap_sums({"a": np.zeros(0)}, lambda s: s["a"])
    with pytest.raises(DownpourError, match="different numbers of days"):
        bootstrap_sums({"a": np.zeros(3), "b": np.zeros(4)}, lambda s: s["a"])
    with pytest.raises(DownpourError, match="level"):
        bootstrap_days(lambda w: w.sum(1), 5, level=95)
