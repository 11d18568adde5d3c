"""Streaming ensemble verification: brute-force CRPS, calibration, merging, state, pairs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from scipy import stats

from _shared import assert_same_result
from downpour.core.errors import DownpourError
from downpour.metrics.accumulator import VerificationAccumulator
from downpour.metrics.ensemble_verification import ENSEMBLE_SCORES, EnsembleAccumulator
from downpour.metrics.probabilistic_pairs import paired_crps_difference

THR, CLIM = {"P90": 6.0, "P99": 14.0}, {"P90": 0.1, "P99": 0.01}


def times_of(days):
    return np.datetime64("2001-01-01", "ns") + np.arange(days) * np.timedelta64(1, "D")


def rain_case(days=20, k=5, ny=6, nx=7, seed=0):
    """Gamma rain with exact zeros, a NaN member and a NaN truth inside a partial mask."""
    rng = np.random.default_rng(seed)
    truth = rng.gamma(0.6, 5.0, size=(days, ny, nx))
    truth[rng.random(truth.shape) < 0.4] = 0.0
    members = truth[:, None] * rng.lognormal(0, 0.5, (days, k, ny, nx)) + rng.normal(
        0, 1, (days, k, ny, nx)
    )
    members = np.maximum(members, 0.0)
    members[3, k - 1, 2, 2] = np.nan
    truth[5, 1, 1] = np.nan
    mask = np.ones((ny, nx), dtype=bool)
    mask[-1, :3] = False
    return members, truth, mask, times_of(days)


def accumulate(members, truth, mask, times, days=slice(None), batch=6, **kw):
    acc = EnsembleAccumulator(THR, CLIM, mask=mask, seed=7, **kw)
    idx = np.arange(truth.shape[0])[days]
    for i in range(0, idx.size, batch):
        sel = idx[i : i + batch]
        acc.update(members[sel], truth[sel], None if times is None else times[sel])
    return acc


def valid_cells(members, truth, mask):
    return mask & np.isfinite(truth) & np.isfinite(members).all(axis=1)


def brute_crps(x, y, fair):
    k = x.size
    skill = sum(abs(xi - y) for xi in x) / k
    pairs = sum(abs(xi - xj) for xi in x for xj in x)
    return skill - pairs / (2 * k * (k - 1) if fair else 2 * k * k)


def test_crps_and_ensemble_mean_scores_equal_brute_force():
    members, truth, mask, times = rain_case()
    res = accumulate(members, truth, mask, times).compute()
    valid = valid_cells(members, truth, mask)
    cells = np.argwhere(valid)
    ecdf = [brute_crps(members[d, :, i, j], truth[d, i, j], False) for d, i, j in cells]
    fair = [brute_crps(members[d, :, i, j], truth[d, i, j], True) for d, i, j in cells]
    err = members.mean(axis=1)[valid] - truth[valid]
    var = members.var(axis=1, ddof=1)[valid]
    assert res["n_valid"] == len(cells) == valid.sum()
    assert res["crps_ecdf"] == pytest.approx(np.mean(ecdf), rel=1e-12)
    assert res["crps_fair"] == pytest.approx(np.mean(fair), rel=1e-12)
    assert res["mae_ensemble_mean"] == pytest.approx(np.abs(err).mean(), rel=1e-12)
    assert res["rmse_ensemble_mean"] == pytest.approx(np.sqrt((err**2).mean()), rel=1e-12)
    spread = np.sqrt(var.mean() * 6 / 5)
    assert res["spread"] == pytest.approx(spread, rel=1e-12)
    assert res["spread_skill"] == pytest.approx(spread / np.sqrt((err**2).mean()), rel=1e-12)
    assert res["excluded"] == {"missing_truth": 1, "nonfinite_prediction": 1}
    assert sum(res["rank_histogram"]["counts"]) == len(cells)


def test_event_brier_equals_brute_force():
    members, truth, mask, times = rain_case()
    res = accumulate(members, truth, mask, times).compute()["events"]
    valid = valid_cells(members, truth, mask)
    for name, t in THR.items():
        p = (members > t).mean(axis=1)[valid]
        o = truth[valid] > t
        assert res[name]["brier"] == pytest.approx(np.mean((p - o) ** 2), rel=1e-12)
        ref = np.mean((CLIM[name] - o) ** 2)
        assert res[name]["bss"] == pytest.approx(1 - np.mean((p - o) ** 2) / ref, rel=1e-12)


def gaussian_case(spread_factor, k=8, days=40, ny=20, nx=20, seed=1):
    """Truth and members from one N(μ, σ²) per cell; the members' σ times ``spread_factor``."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(0, 3, (days, 1, ny, nx))
    truth = (mu + rng.normal(0, 1, mu.shape))[:, 0]
    members = mu + spread_factor * rng.normal(0, 1, (days, k, ny, nx))
    return members, truth


def test_ensemble_from_the_truths_distribution_is_calibrated():
    members, truth = gaussian_case(1.0)
    acc = EnsembleAccumulator()
    acc.update(members, truth, times_of(40))
    res = acc.compute()
    counts = np.array(res["rank_histogram"]["counts"])
    # 16,000 cells in 9 bins: ~1,778 per bin, binomial sd ~40 (2.2 %); a flat histogram
    # passes a chi-square test at 0.1 % and every bin is within 10 % (> 4 sd) of uniform.
    chi2 = ((counts - counts.mean()) ** 2 / counts.mean()).sum()
    assert chi2 < stats.chi2.ppf(0.999, df=8)
    assert 0.9 < res["rank_histogram"]["min_ratio"] <= res["rank_histogram"]["max_ratio"] < 1.1
    # 16,000 cells: relative sd ~0.2 % for the spread, ~0.6 % for the RMSE; 0.04 is > 6 sd
    assert res["spread_skill"] == pytest.approx(1.0, abs=0.04)
    assert res["crps_fair"] < res["crps_ecdf"]


def test_under_dispersive_ensemble_is_u_shaped():
    members, truth = gaussian_case(0.3)
    acc = EnsembleAccumulator()
    acc.update(members, truth, times_of(40))
    res = acc.compute()
    freq = np.array(res["rank_histogram"]["frequencies"])
    assert freq[0] > 2 * freq[1:-1].max() and freq[-1] > 2 * freq[1:-1].max()
    # theory: 0.3 · sqrt(9/8) / sqrt(1 + 0.09/8) ≈ 0.316
    assert res["spread_skill"] == pytest.approx(0.3 * np.sqrt(9 / 8) / np.sqrt(1 + 0.09 / 8), 0.05)
    assert res["rank_histogram"]["max_ratio"] > 2.5


def test_ties_at_zero_are_broken_uniformly():
    acc = EnsembleAccumulator(seed=3)
    # all dry: every rank 0..4 equally likely; 12,000 cells, 2,400 per bin, sd ~44 (1.8 %)
    acc.update(np.zeros((30, 4, 20, 20)), np.zeros((30, 20, 20)), times_of(30))
    res = acc.compute()
    counts = np.array(res["rank_histogram"]["counts"])
    assert counts.sum() == 12000
    assert 0.92 < res["rank_histogram"]["min_ratio"] <= res["rank_histogram"]["max_ratio"] < 1.08
    assert res["crps_ecdf"] == 0.0 and np.isnan(res["spread_skill"])  # zero spread, zero error
    # two dry members, two wet: a dry truth has rank 0, 1 or 2 with equal chance
    two = EnsembleAccumulator(seed=3)
    m = np.zeros((30, 4, 20, 20))
    m[:, 2:] = 1.0
    two.update(m, np.zeros((30, 20, 20)), times_of(30))
    counts = np.array(two.compute()["rank_histogram"]["counts"])
    assert counts[3:].sum() == 0
    assert np.all(np.abs(counts[:3] / 4000 - 1) < 0.08)


def test_one_member_crps_is_its_mae_and_pairs_with_a_deterministic_forecast():
    members, truth, mask, times = rain_case(k=1)
    one = accumulate(members, truth, mask, times)
    res = one.compute()
    assert res["crps_ecdf"] == res["mae_ensemble_mean"]
    assert np.isnan(res["crps_fair"]) and np.isnan(res["spread_skill"])
    det = VerificationAccumulator(THR, scales=(1,), mask=mask)
    det.update(members[:, 0], truth, times)
    mae = det.compute(tail_fit=False)["continuous"]["mae"]
    assert res["crps_ecdf"] == pytest.approx(mae, rel=1e-12)
    d = paired_crps_difference(one, det, n_boot=50)
    assert d["difference"]["estimate"] == pytest.approx(0.0, abs=1e-14)
    assert d["difference"]["low"] == pytest.approx(0.0, abs=1e-14)


def test_paired_difference_is_the_difference_of_estimates():
    members, truth, mask, times = rain_case()
    ens = accumulate(members, truth, mask, times)
    det = VerificationAccumulator(THR, scales=(1,), mask=mask)
    pred = np.where(np.isfinite(members).all(axis=1), members[:, 0] + 1.0, np.nan)
    det.update(pred, truth, times)
    mae = det.compute(tail_fit=False)["continuous"]["mae"]
    out = ens.compute_with_intervals(200, seed=2)
    for est in ("ecdf", "fair"):
        d = paired_crps_difference(ens, det, estimator=est, n_boot=200, seed=2)
        crps = out[f"crps_{est}"]
        assert d["difference"]["estimate"] == pytest.approx(crps - mae, rel=1e-12)
        assert d["ratio"]["estimate"] == pytest.approx(crps / mae, rel=1e-12)
        assert d["ensemble"] == pytest.approx(out["intervals"]["scores"][f"crps_{est}"])
        assert d["difference"]["low"] <= d["difference"]["estimate"] <= d["difference"]["high"]
    # the K=1 ensemble of the same forecast is the same reference
    ref = accumulate(pred[:, None], truth, mask, times)
    d2 = paired_crps_difference(ens, ref, n_boot=200, seed=2)
    assert d2["difference"]["estimate"] == pytest.approx(out["crps_ecdf"] - mae, rel=1e-12)
    # different days are refused
    short = accumulate(members, truth, mask, times, slice(0, 10))
    with pytest.raises(DownpourError, match="same days"):
        paired_crps_difference(short, det)


def test_merged_halves_equal_one_pass():
    members, truth, mask, times = rain_case(days=30)
    one = accumulate(members, truth, mask, times, batch=30)
    a = accumulate(members, truth, mask, times, slice(0, 13), batch=5)
    b = accumulate(members, truth, mask, times, slice(13, 30), batch=4)
    ref = one.compute_with_intervals(200, seed=3)
    empty = EnsembleAccumulator(THR, CLIM, mask=mask, seed=7)
    for merged in (a.merge(b), b.merge(a), empty.merge(a).merge(b), a.merge(b).merge(empty)):
        assert np.array_equal(merged.times, times)
        for k, v in one.per_day.items():
            assert np.array_equal(merged.per_day[k], v, equal_nan=True), k
        for k, v in one.probabilities.per_day.items():
            assert np.array_equal(merged.probabilities.per_day[k], v), k
        assert_same_result(merged.compute_with_intervals(200, seed=3), ref)
    assert set(ref["intervals"]["scores"]) == set(ENSEMBLE_SCORES)
    with pytest.raises(DownpourError, match="in both"):
        a.merge(a)
    with pytest.raises(DownpourError, match="cannot merge"):
        a.merge(EnsembleAccumulator(THR, CLIM, mask=mask, seed=8))


def test_tie_draws_do_not_depend_on_batches_without_time():
    members, truth, mask, _ = rain_case()
    a = accumulate(members, truth, mask, None, batch=3)
    b = accumulate(members, truth, mask, None, batch=20)
    assert np.array_equal(a.per_day["rank"], b.per_day["rank"])


def test_state_round_trip_is_exact():
    members, truth, mask, times = rain_case()
    acc = accumulate(members, truth, mask, times)
    buf = io.BytesIO()
    np.savez(buf, **acc.state())
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as f:
        back = EnsembleAccumulator.from_state(dict(f))
    for k, v in acc.per_day.items():
        assert np.array_equal(back.per_day[k], v, equal_nan=True), k
    assert back.seed == acc.seed and back.members == acc.members
    assert_same_result(back.compute_with_intervals(100), acc.compute_with_intervals(100), rel=0)
    # the rebuilt accumulator goes on drawing the same ties
    extra = rain_case(days=8, seed=9)
    later = times_of(28)[20:]
    acc.update(extra[0], extra[1], later)
    back.update(extra[0], extra[1], later)
    assert np.array_equal(back.per_day["rank"], acc.per_day["rank"])
    empty = EnsembleAccumulator.from_state(EnsembleAccumulator(seed=2).state())
    assert empty.n_days == 0 and empty.members == 0 and empty.seed == 2


def test_bad_input_is_refused():
    acc = EnsembleAccumulator()
    acc.update(np.zeros((2, 3, 4, 4)), np.zeros((2, 4, 4)))
    with pytest.raises(DownpourError, match="expected 3"):
        acc.update(np.zeros((2, 4, 4, 4)), np.zeros((2, 4, 4)))
    with pytest.raises(DownpourError, match="days, K, y, x"):
        acc.update(np.zeros((2, 3, 4, 5)), np.zeros((2, 4, 4)))
    with pytest.raises(DownpourError, match="climatology"):
        EnsembleAccumulator(climatology={"P90": 0.1})
    with pytest.raises(DownpourError, match="no days"):
        EnsembleAccumulator().compute()
