from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from downpour.core.errors import DownpourError
from downpour.metrics.accumulator import VerificationAccumulator
from downpour.metrics.extremes import (
    QuantileHistogram,
    compare_gpd_tails,
    daily_domain_max,
    gpd_tail_fit,
)


def gpd_series(n: int, shape: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 5.0 + stats.genpareto.rvs(shape, scale=4.0, size=n, random_state=rng)


def test_fit_matches_scipy_on_p99_exceedances():
    series = gpd_series(3000, 0.2, 0)
    series[:100] = 0.0  # dry days are not part of the quantile
    fit = gpd_tail_fit(series)
    wet = series[series > 0.1]
    u = np.quantile(wet, 0.99)
    c, loc, scale = stats.genpareto.fit(wet[wet > u] - u, floc=0.0)
    assert fit.quantile == 0.99 and fit.n_wet_days == 2900
    assert fit.threshold == pytest.approx(u)
    assert fit.n_exceedances == 29  # 2900 wet days: ranks 2872..2900 lie above P99
    assert fit.shape == pytest.approx(c, rel=1e-12)
    assert fit.scale == pytest.approx(scale, rel=1e-12)


def test_fit_recovers_known_tail_shape():
    fit = gpd_tail_fit(gpd_series(20000, 0.25, 1))
    assert fit.n_exceedances == 200
    assert fit.shape == pytest.approx(0.25, abs=0.2)  # ξ is threshold-stable for a GPD


def test_fallback_to_p95_with_few_wet_days():
    series = np.zeros(300)
    series[:40] = gpd_series(40, 0.1, 2)  # 40 wet days < 50
    fit = gpd_tail_fit(series)
    assert fit.quantile == 0.95 and fit.n_wet_days == 40
    assert fit.threshold == pytest.approx(np.quantile(series[:40], 0.95))
    assert fit.n_exceedances == 2  # below min_exceedances=3: no fit
    assert np.isnan(fit.shape) and np.isnan(fit.scale)
    none = gpd_tail_fit(np.zeros(10))
    assert none.n_wet_days == 0 and np.isnan(none.threshold)


def test_daily_domain_max_masks_and_nan():
    f = np.arange(2 * 2 * 3, dtype=float).reshape(2, 2, 3)
    f[0, 1, 2] = np.nan
    mask = np.array([[True, True, False], [True, True, True]])
    # day 0: valid 0,1,3,4 (2 masked, 5 NaN) -> 4; day 1: 6..11 without 8 -> 11
    assert daily_domain_max(f, mask).tolist() == [4.0, 11.0]
    f[1] = np.nan
    out = daily_domain_max(f, mask)
    assert out[0] == 4.0 and np.isnan(out[1])
    with pytest.raises(DownpourError, match="days, y, x"):
        daily_domain_max(f[0])


def test_compare_reports_pred_minus_truth():
    truth, pred = gpd_series(3000, 0.2, 3), gpd_series(3000, 0.0, 4)
    res = compare_gpd_tails(pred, truth)
    t, p = gpd_tail_fit(truth), gpd_tail_fit(pred)
    assert res["truth"]["shape"] == t.shape and res["pred"]["scale"] == p.scale
    assert res["shape_diff"] == pytest.approx(p.shape - t.shape)
    assert res["scale_diff"] == pytest.approx(p.scale - t.scale)
    assert res["threshold_diff"] == pytest.approx(p.threshold - t.threshold)


def test_accumulator_tail_fit_uses_daily_domain_maxima():
    rng = np.random.default_rng(5)
    truth = rng.gamma(0.6, 8.0, (400, 6, 5))
    pred = truth * rng.uniform(0.7, 1.2, truth.shape)
    mask = rng.random((6, 5)) > 0.3
    acc = VerificationAccumulator({"10mm": 10.0}, scales=(1,), mask=mask)
    for i in range(0, 400, 128):
        acc.update(pred[i : i + 128], truth[i : i + 128])
    got = acc.compute()["gpd"]
    ref = compare_gpd_tails(daily_domain_max(pred, mask), daily_domain_max(truth, mask))
    assert got["truth"]["n_exceedances"] == ref["truth"]["n_exceedances"] == 4
    assert got["shape_diff"] == pytest.approx(ref["shape_diff"], rel=1e-12)


def test_quantile_histogram_precision_and_dry_values():
    rng = np.random.default_rng(4)
    values = np.concatenate([np.zeros(5000), rng.lognormal(0.0, 2.0, 100_000)])
    h = QuantileHistogram()
    h.update(values[:40_000])
    h2 = QuantileHistogram()
    h2.update(values[40_000:])
    merged = h.merge(h2)
    for q in (0.5, 0.9, 0.95, 0.99, 0.999):
        assert merged.quantile(q) == pytest.approx(np.quantile(values, q), rel=2e-3)
    assert merged.quantile(0.01) == 0.0  # falls among the dry zeros: exact
    assert merged.quantile(1.0) == pytest.approx(values.max(), rel=2e-3)
