"""Quantile forecasts: pinball score, reliability with ties, derived event probabilities."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from _shared import assert_same_result
from downpour.core.errors import DownpourError
from downpour.metrics import quantiles as quantiles_module
from downpour.metrics.exceedance import exceedance_probability
from downpour.metrics.probability import ProbabilityAccumulator
from downpour.metrics.quantiles import QuantileAccumulator

TAUS = np.array([0.5, 0.95, 0.99])


def zero_inflated_quantiles(taus, p0, scale, shape=0.7):
    """True quantiles of ``p0`` zeros and gamma(shape, scale) otherwise; broadcasts over cells."""
    taus = np.asarray(taus, dtype=float).reshape(-1, *([1] * np.ndim(p0)))
    wet = np.clip((taus - p0) / (1 - p0), 0, 1)
    return np.where(taus <= p0, 0.0, stats.gamma.ppf(wet, shape, scale=scale))


def draw(p0, scale, size, rng, shape=0.7):
    y = rng.gamma(shape, 1.0, size=size) * scale
    return np.where(rng.random(size) < p0, 0.0, y)


def random_case(days=10, ny=7, nx=6, seed=0):
    rng = np.random.default_rng(seed)
    truth = draw(0.5, 5.0, (days, ny, nx), rng)
    q = np.sort(draw(0.4, 6.0, (days, 3, ny, nx), rng), axis=1)
    q[:, 0][rng.random((days, ny, nx)) < 0.5] = 0.0  # many ties at 0 with the truth
    q[2, :, 1, 1] = q[2, ::-1, 1, 1] + [5.0, 0.0, 0.0]  # one crossing cell
    truth[0, 0, 0] = np.nan
    q[1, 2, 3, 3] = np.inf
    mask = np.ones((ny, nx), dtype=bool)
    mask[0, -2:] = False
    return q, truth, mask


def test_pinball_and_fractions_match_brute_force():
    q, truth, mask = random_case()
    acc = QuantileAccumulator(TAUS, mask=mask)
    acc.update(q, truth)
    res = acc.compute()
    valid = mask & np.isfinite(truth) & np.isfinite(q).all(axis=1)
    assert res["n_valid"] == valid.sum()
    assert res["excluded"] == {"missing_truth": 1, "nonfinite_prediction": 1}
    assert res["crossings"] == 1
    y = truth[valid]
    for j, tau in enumerate(TAUS):
        qj = q[:, j][valid]
        r = res["quantiles"][repr(float(tau))]
        pin = np.mean(np.maximum(tau * (y - qj), (tau - 1) * (y - qj)))
        assert r["pinball"] == pytest.approx(pin, rel=1e-12)
        below, at = np.mean(y < qj), np.mean(y <= qj)
        assert (r["below"], r["at_or_below"]) == pytest.approx((below, at), rel=1e-12)
        assert r["exceedance"] == pytest.approx(np.mean(y > qj), rel=1e-12)
        assert r["tie_fraction"] == pytest.approx(np.mean(y == qj), rel=1e-12)
        assert r["reliability"] == pytest.approx(min(max(tau, below), at), rel=1e-12)
    assert res["quantiles"]["0.5"]["tie_fraction"] > 0.2  # the tie rule matters here


def test_pinball_matches_scoringrules():
    sr = pytest.importorskip("scoringrules")
    q, truth, mask = random_case(seed=3)
    acc = QuantileAccumulator(TAUS, mask=mask)
    acc.update(q, truth)
    res = acc.compute()["quantiles"]
    valid = mask & np.isfinite(truth) & np.isfinite(q).all(axis=1)
    for j, tau in enumerate(TAUS):
        ref = float(np.mean(sr.quantile_score(truth[valid], q[:, j][valid], tau)))
        assert res[repr(float(tau))]["pinball"] == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("heterogeneous", [False, True])
def test_true_quantiles_of_a_zero_inflated_variable_are_reliable(heterogeneous):
    """60 % zeros, gamma otherwise: the median head is 0 and ties with 60 % of the truth."""
    rng = np.random.default_rng(11)
    days, ny, nx = 120, 20, 20
    if heterogeneous:  # per-cell zero fraction 0.3…0.8 and scale: the median head is 0 or wet
        p0 = rng.uniform(0.3, 0.8, size=(ny, nx))
        scale = rng.uniform(2.0, 12.0, size=(ny, nx))
    else:
        p0, scale = np.full((ny, nx), 0.6), np.full((ny, nx), 8.0)
    truth = draw(p0, scale, (days, ny, nx), rng)
    q = np.broadcast_to(zero_inflated_quantiles(TAUS, p0, scale), (days, 3, ny, nx))
    acc = QuantileAccumulator(TAUS)
    acc.update(q, truth)
    res = acc.compute_with_intervals(n_boot=300, seed=0)
    n = days * ny * nx
    for tau in TAUS:
        key = repr(float(tau))
        r, iv = res["quantiles"][key], res["intervals"]["quantiles"][key]["reliability"]
        assert abs(r["reliability"] - tau) < 4 * np.sqrt(tau * (1 - tau) / n)
        assert iv["low"] <= tau <= iv["high"]
    med = res["quantiles"]["0.5"]
    if not heterogeneous:  # without the tie rule the median head would look miscalibrated
        assert med["below"] == 0.0 and med["at_or_below"] == pytest.approx(0.6, abs=0.01)


def test_miscalibrated_heads_are_caught():
    rng = np.random.default_rng(12)
    days, ny, nx = 80, 15, 15
    truth = draw(0.3, 8.0, (days, ny, nx), rng)  # 30 % zeros
    q = zero_inflated_quantiles(TAUS, 0.7, 4.0)  # heads of a far drier, lighter climate
    acc = QuantileAccumulator(TAUS)
    acc.update(np.broadcast_to(q[None, :, None, None], (days, 3, ny, nx)), truth)
    res = acc.compute_with_intervals(n_boot=200)
    for tau in TAUS:  # every head too low: truth at or below it too rarely
        iv = res["intervals"]["quantiles"][repr(float(tau))]["reliability"]
        assert iv["high"] < tau
    assert res["quantiles"]["0.5"]["reliability"] == pytest.approx(0.3, abs=0.02)


def test_event_probabilities_are_derived_from_the_heads():
    q, truth, mask = random_case(seed=5)
    thr, clim = {"P95": 6.0, "10mm": 10.0}, {"P95": 0.1}
    acc = QuantileAccumulator(TAUS, thresholds=thr, climatology=clim, mask=mask)
    acc.update(q, truth)
    ref = ProbabilityAccumulator(thr, climatology=clim, mask=mask)
    ref.update({k: exceedance_probability(q, TAUS, v, axis=1) for k, v in thr.items()}, truth)
    assert_same_result(acc.compute()["events"], ref.compute()["events"], rel=0.0)
    out = acc.compute_with_intervals(n_boot=50, seed=2)
    assert_same_result(out["intervals"]["events"], ref.intervals(50, 2)["events"], rel=0.0)
    assert set(out["intervals"]["quantiles"]["0.99"]) == {
        "pinball",
        "reliability",
        "below",
        "at_or_below",
        "exceedance",
    }


def test_batches_and_blocks_do_not_change_the_sums(monkeypatch):
    q, truth, mask = random_case(days=9, seed=7)
    one = QuantileAccumulator(TAUS, thresholds={"e": 5.0}, mask=mask)
    one.update(q, truth)
    monkeypatch.setattr(quantiles_module, "BLOCK_CELLS", 100)  # two days per block
    many = QuantileAccumulator(TAUS, thresholds={"e": 5.0}, mask=mask)
    for i in range(0, 9, 4):
        many.update(q[i : i + 4], truth[i : i + 4])
    for k, v in one.per_day.items():
        np.testing.assert_array_equal(many.per_day[k], v)
    for k, v in one.probabilities.per_day.items():
        np.testing.assert_array_equal(many.probabilities.per_day[k], v)


def test_float32_ties_and_inputs():
    q, truth, mask = random_case(seed=9)
    a, b = QuantileAccumulator(TAUS, mask=mask), QuantileAccumulator(TAUS, mask=mask)
    a.update(q.astype(np.float32), truth.astype(np.float32))
    b.update(q.astype(np.float32).astype(np.float64), truth.astype(np.float32).astype(np.float64))
    for k, v in a.per_day.items():
        np.testing.assert_array_equal(b.per_day[k], v)
    with pytest.raises(DownpourError, match="3 levels"):
        a.update(q[:, :2], truth)
    with pytest.raises(DownpourError, match="at least 2"):
        QuantileAccumulator([0.5], thresholds={"e": 1.0})
    with pytest.raises(DownpourError, match="no valid cell"):
        c = QuantileAccumulator(TAUS)
        c.update(np.full((1, 3, 2, 2), np.nan), np.zeros((1, 2, 2)))
        c.compute()
