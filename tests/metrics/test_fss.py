"""Exact FSS window counts, float32 thresholds and the bit-pattern quantile histogram."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from downpour.metrics.contingency import fss_sums
from downpour.metrics.day_stats import threshold_for
from downpour.metrics.extremes import QuantileHistogram
from downpour.metrics.fss import window_counts, window_extent
from downpour.metrics.verification import verify_arrays


def brute_counts(f: np.ndarray, s: int) -> np.ndarray:
    """Window counts by explicit loops: cells i - s//2 .. i - s//2 + s - 1, clipped."""
    days, ny, nx = f.shape
    out = np.zeros(f.shape, dtype=np.int64)
    h = s // 2
    for d in range(days):
        for i in range(ny):
            for j in range(nx):
                out[d, i, j] = f[d, max(i - h, 0) : i - h + s, max(j - h, 0) : j - h + s].sum()
    return out


def test_window_extent_is_that_of_uniform_filter():
    expected = [(0, 0), (1, 0), (1, 1), (2, 1), (13, 13)]  # cells before, after
    assert [window_extent(s) for s in (1, 2, 3, 4, 27)] == expected


@pytest.mark.parametrize("shape", [(2, 13, 9), (1, 1, 7), (3, 6, 30)])
def test_window_counts_match_brute_force_and_uniform_filter(shape):
    rng = np.random.default_rng(sum(shape))
    fields = [rng.random(shape) < p for p in (0.1, 0.3, 0.5, 0.7, 0.9)]  # two packed words
    for s in (1, 2, 3, 4, 5, 8, 9, 27, 40):  # odd, even, and wider than the grid
        got = window_counts(fields, s)
        for f, g in zip(fields, got, strict=True):
            assert np.array_equal(g, brute_counts(f, s)), s
            ref = uniform_filter(f.astype(float), size=(1, s, s), mode="constant") * s * s
            assert np.array_equal(g, np.rint(ref).astype(np.int64)), s


def sat_counts(f: np.ndarray, s: int) -> np.ndarray:
    """Window counts of one 2-D field from an int64 summed-area table (independent reference)."""
    ny, nx = f.shape
    table = np.pad(f.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    i, j = np.arange(ny)[:, None], np.arange(nx)[None, :]
    h = s // 2
    y0, y1 = np.clip(i - h, 0, ny), np.clip(i - h + s, 0, ny)
    x0, x1 = np.clip(j - h, 0, nx), np.clip(j - h + s, 0, nx)
    return table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]


def test_windows_of_65536_cells_or_more_use_32_bit_lanes():
    rng = np.random.default_rng(1)
    f = rng.random((1, 300, 260)) > 0.002  # central windows hold more than 65,535 events
    s = 257  # 257² = 66,049 cells: more than a 16-bit lane holds
    expected = sat_counts(f[0], s)
    (got,) = window_counts([f], s)
    assert expected.max() > 2**16
    assert np.array_equal(got[0], expected)
    assert np.array_equal(sat_counts(f[0, :40, :30], 5), brute_counts(f[:, :40, :30], 5)[0])


def brute_fss_sums(pred, truth, mask, thr, s):
    """Per-day (Σ(Pf−Po)², ΣPf², ΣPo²) over valid cells, events at valid cells only."""
    valid = mask & np.isfinite(pred) & np.isfinite(truth)
    pe = valid & (np.nan_to_num(pred, nan=-1.0) > thr)
    te = valid & (np.nan_to_num(truth, nan=-1.0) > thr)
    bf, bo = brute_counts(pe, s) / s**2, brute_counts(te, s) / s**2
    bf, bo = np.where(valid, bf, 0.0), np.where(valid, bo, 0.0)
    return np.stack([((bf - bo) ** 2).sum((1, 2)), (bf**2).sum((1, 2)), (bo**2).sum((1, 2))], -1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fss_sums_match_brute_force_with_mask_and_nan(dtype):
    rng = np.random.default_rng(3)
    shape = (3, 11, 14)
    truth = np.where(rng.random(shape) < 0.5, rng.gamma(0.8, 6.0, shape), 0.0).astype(dtype)
    pred = np.maximum(truth + rng.normal(0, 3, shape), 0).astype(dtype)
    truth[1, 4, 4] = np.nan
    pred[2, 0, 13] = np.inf
    mask = rng.random(shape[1:]) > 0.3
    scales = (1, 2, 3, 4, 9, 27)
    got = fss_sums(pred, truth, 6.0, scales, mask)
    for k, s in enumerate(scales):
        expected = brute_fss_sums(pred.astype(float), truth.astype(float), mask, 6.0, s)
        np.testing.assert_allclose(got[:, k], expected, rtol=1e-13, atol=0)


def test_float32_thresholds_decide_exactly_as_float64():
    rng = np.random.default_rng(5)
    for u in np.concatenate([rng.gamma(1.0, 10.0, 200), [10.05, 0.1, 1e-3, 0.0, -2.5, 1e38]]):
        cut = threshold_for(float(u), np.dtype(np.float32))
        near = np.float32(u) + np.arange(-3, 4, dtype=np.float32) * np.spacing(np.float32(u))
        x = np.concatenate([near, np.nextafter(near, np.float32(np.inf))]).astype(np.float32)
        assert np.array_equal(x > cut, x.astype(np.float64) > u), u
    # 10.05 is not a float32: the float32 just above it is an event, float32(10.05) is one too
    assert np.float32(10.05) > threshold_for(10.05, np.dtype(np.float32))
    assert float(np.float32(10.05)) > 10.05


def test_float32_fields_give_the_float64_results():
    rng = np.random.default_rng(6)
    shape = (20, 24, 18)
    truth = np.where(rng.random(shape) < 0.4, rng.gamma(0.7, 6.0, shape), 0.0).astype(np.float32)
    pred = np.maximum(truth + rng.normal(0, 3, shape).astype(np.float32), np.float32(0))
    pred[3, :, :4] = np.nan
    mask = rng.random(shape[1:]) > 0.4
    thr = {"P95": float(truth[truth > 0][0]), "10mm": 10.05}  # one threshold equals a value
    kw = {"scales": (1, 3, 9), "tail_fit": False}
    r32 = verify_arrays(pred, truth, mask, thr, **kw)
    r64 = verify_arrays(pred.astype(np.float64), truth.astype(np.float64), mask, thr, **kw)
    for name in thr:
        assert [r32["categorical"][name][k] for k in "abcd"] == [
            r64["categorical"][name][k] for k in "abcd"
        ]
        for s in (1, 3, 9):
            assert r32["fss"][name][s] == pytest.approx(r64["fss"][name][s], rel=1e-13)
    for k in ("mae", "rmse", "correlation", "mae_tail", "p99_pred", "p99_truth"):
        assert r32["continuous"][k] == pytest.approx(r64["continuous"][k], rel=1e-12), k


def test_quantile_histogram_bins_are_float32_bit_patterns():
    h = QuantileHistogram()
    one = 2 + 10 * 1024  # 1.0 = 2^0 is ten octaves above LOW = 2^-10
    values = [0.0, -3.0, 1e-5, 1.0, 1.0 + 2**-10 - 2**-20, 1.0 + 2**-10, 2.0**17, np.nan, np.inf]
    h.update(np.array(values, dtype=np.float64))
    expected = {0: 2, 1: 1, one: 2, one + 1: 1, h.TOP: 1}
    got = {int(i): int(h.counts[i]) for i in np.flatnonzero(h.counts)}
    assert got == expected
    assert (h.n, h.vmin, h.vmax) == (7, -3.0, 2.0**17)
    assert h._bin(one) == (1.0, 1.0 + 2**-10)
    back = QuantileHistogram.from_state(h.state())
    assert np.array_equal(back.counts, h.counts) and (back.vmin, back.vmax) == (h.vmin, h.vmax)


def test_fss_sums_of_three_thresholds_and_of_windows_beyond_16_bits():
    rng = np.random.default_rng(8)
    shape = (5, 17, 12)
    truth = np.where(rng.random(shape) < 0.5, rng.gamma(0.8, 6.0, shape), 0.0)
    pred = np.maximum(truth + rng.normal(0, 3, shape), 0)
    mask = rng.random(shape[1:]) > 0.2
    thr = {"a": 2.0, "b": 6.0, "c": 12.0}  # an odd number of fields per packed word
    res = verify_arrays(pred, truth, mask, thr, scales=(1, 3, 5), tail_fit=False)
    for name, u in thr.items():
        sums = fss_sums(pred, truth, u, (1, 3, 5), mask).sum(axis=0)
        expected = 1 - sums[:, 0] / (sums[:, 1] + sums[:, 2])
        assert [res["fss"][name][s] for s in (1, 3, 5)] == pytest.approx(expected, abs=1e-15)
    # windows of 257² cells need 32-bit lanes: sums from exact int64 counts
    f = rng.random((1, 300, 260)) > 0.002
    g = rng.random((1, 300, 260)) > 0.01
    got = fss_sums(f * 2.0, g * 2.0, 1.0, (257,))[0, 0]
    cf, cg = (sat_counts(x[0], 257).astype(np.float64) for x in (f, g))
    s4 = 257.0**4
    expected = [((cf - cg) ** 2).sum() / s4, (cf**2).sum() / s4, (cg**2).sum() / s4]
    assert got == pytest.approx(expected, rel=1e-14)
