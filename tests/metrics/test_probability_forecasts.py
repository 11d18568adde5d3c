"""Probability forecasts of events: Brier, BSS, ROC area and reliability diagram by brute force."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from downpour.core.errors import DownpourError
from downpour.metrics.accumulator import VerificationAccumulator
from downpour.metrics.bootstrap import day_weights
from downpour.metrics.probability import ProbabilityAccumulator

THR = {"P95": 6.0, "10mm": 10.0}
CLIM = {"P95": 0.08}


def forecast(days=12, ny=9, nx=8, seed=0):
    """Truth, probabilities per event (with exact 0 and 1, NaN), mask."""
    rng = np.random.default_rng(seed)
    truth = rng.gamma(0.6, 6.0, size=(days, ny, nx))
    truth[rng.random(truth.shape) < 0.3] = 0.0
    probs = {}
    for k, thr in THR.items():  # informative but noisy probabilities
        z = (np.log1p(truth) - np.log1p(thr)) * 1.5 + rng.normal(0, 1, truth.shape)
        p = 1 / (1 + np.exp(-z))
        p[rng.random(p.shape) < 0.1] = 0.0
        p[rng.random(p.shape) < 0.05] = 1.0
        probs[k] = p
    truth[0, 0, :3] = np.nan
    probs["10mm"][1, 2, 2] = np.nan
    mask = np.ones((ny, nx), dtype=bool)
    mask[-2:, -3:] = False
    return truth, probs, mask


def valid_of(truth, probs, mask):
    return mask & np.isfinite(truth) & np.all([np.isfinite(p) for p in probs.values()], axis=0)


def brute_auc(p_ev, p_non):
    """Exact ROC area by counting all pairs (ties ½)."""
    d = p_ev[:, None] - p_non[None, :]
    return ((d > 0).sum() + 0.5 * (d == 0).sum()) / d.size


def test_scores_match_brute_force():
    truth, probs, mask = forecast()
    acc = ProbabilityAccumulator(THR, climatology=CLIM, mask=mask)
    acc.update(probs, truth)
    res = acc.compute()
    valid = valid_of(truth, probs, mask)
    assert res["n_valid"] == valid.sum()
    assert res["excluded"] == {"missing_truth": 3, "nonfinite_prediction": 1}
    for k, thr in THR.items():
        p, o = probs[k][valid], (truth[valid] > thr).astype(float)
        r = res["events"][k]
        assert r["brier"] == pytest.approx(np.mean((p - o) ** 2), rel=1e-12)
        c = CLIM.get(k, o.mean())  # without a climatology: the sample's base rate
        assert r["brier_reference"] == pytest.approx(np.mean((c - o) ** 2), rel=1e-12)
        assert r["bss"] == pytest.approx(1 - np.mean((p - o) ** 2) / np.mean((c - o) ** 2))
        assert r["reference"] == ("climatology" if k in CLIM else "sample")
        assert r["base_rate"] == pytest.approx(o.mean()) and r["n_events"] == o.sum()
        exact = brute_auc(p[o == 1], p[o == 0])
        u = stats.mannwhitneyu(p[o == 1], p[o == 0]).statistic / ((o == 1).sum() * (o == 0).sum())
        assert exact == pytest.approx(u, rel=1e-12)  # scipy agrees with the pair count
        assert 0 < r["roc_auc_bin_error"] < 0.01
        assert abs(r["roc_auc"] - exact) <= r["roc_auc_bin_error"] + 1e-15
        assert r["event_days"] == sum(
            ((truth[d] > thr) & valid[d]).any() for d in range(truth.shape[0])
        )


def test_binned_roc_area_is_exact_when_each_bin_holds_one_value():
    rng = np.random.default_rng(5)
    acc = ProbabilityAccumulator({"e": 1.0})
    p = acc.bin_edges[rng.integers(0, acc.bin_edges.size, size=(6, 10, 10))]  # bin lower edges
    p[0, 0, :4] = [0.0, 0.0, 1.0, 1.0]
    o = rng.random(p.shape) < p
    acc.update(p, np.where(o, 2.0, 0.0))
    r = acc.compute()["events"]["e"]
    assert r["roc_auc"] == pytest.approx(brute_auc(p[o], p[~o]), rel=1e-12)


def test_rare_event_probabilities_are_resolved_by_the_logit_bins():
    """A P99-like event: probabilities mostly below 0.01 must not share one bin."""
    rng = np.random.default_rng(8)
    logit = rng.normal(-6.0, 1.5, size=(40, 30, 30))  # median p ≈ 0.0025
    p = 1 / (1 + np.exp(-logit))
    o = rng.random(p.shape) < p
    acc = ProbabilityAccumulator({"P99": 1.0})
    acc.update(p, np.where(o, 2.0, 0.0))
    r = acc.compute()["events"]["P99"]
    exact = stats.mannwhitneyu(p[o], p[~o]).statistic / (o.sum() * (~o).sum())
    assert r["roc_auc_bin_error"] < 0.01
    assert abs(r["roc_auc"] - exact) <= r["roc_auc_bin_error"]
    assert abs(r["roc_auc"] - exact) < 2e-3
    assert sum(r["reliability_diagram"]["count"][:4]) > 0.8 * p.size  # 1-2-5 steps below 0.01


def test_reliability_diagram_by_brute_force():
    truth, probs, mask = forecast(seed=2)
    acc = ProbabilityAccumulator(THR, mask=mask, diagram_edges=np.arange(6) / 5)
    acc.update(probs, truth)
    valid = valid_of(truth, probs, mask)
    diag = acc.compute()["events"]["P95"]["reliability_diagram"]
    p, o = probs["P95"][valid], truth[valid] > THR["P95"]
    coarse = np.minimum(np.floor(p * 5), 4).astype(int)
    assert diag["bin_lower"] == pytest.approx([0, 0.2, 0.4, 0.6, 0.8])
    for i in range(5):
        sel = coarse == i
        assert diag["count"][i] == sel.sum()
        assert diag["mean_probability"][i] == pytest.approx(p[sel].mean(), rel=1e-12)
        assert diag["observed_frequency"][i] == pytest.approx(o[sel].mean(), rel=1e-12)


def test_deterministic_forecast_brier_is_misses_plus_false_alarms():
    rng = np.random.default_rng(1)
    truth = rng.gamma(0.6, 6.0, size=(20, 8, 8)).astype(np.float32)
    pred = (truth * rng.lognormal(0, 0.5, truth.shape)).astype(np.float32)
    pred[3, 1, 1] = np.nan
    acc = ProbabilityAccumulator(THR)
    acc.update_deterministic(pred, truth)
    ver = VerificationAccumulator(THR, scales=(1,))
    ver.update(pred, truth)
    res, cat = acc.compute(), ver.compute(tail_fit=False)["categorical"]
    for k in THR:
        a, b, c, d = (cat[k][x] for x in "abcd")
        r = res["events"][k]
        assert r["brier"] == pytest.approx((b + c) / (a + b + c + d), rel=1e-12)
        assert r["roc_auc"] == pytest.approx((cat[k]["pod"] + 1 - cat[k]["pofd"]) / 2, rel=1e-12)
        assert r["roc_auc_bin_error"] == 0.0
        diag = r["reliability_diagram"]
        assert sum(diag["count"][1:-1]) == 0  # only p = 0 and p = 1
        assert diag["observed_frequency"][-1] == pytest.approx(a / (a + b))
    assert res["excluded"]["nonfinite_prediction"] == 1


def test_intervals_resample_days_of_the_brute_force_sums():
    truth, probs, mask = forecast(days=15, seed=4)
    acc = ProbabilityAccumulator(THR, climatology=CLIM, mask=mask)
    acc.update(probs, truth)
    out = acc.compute_with_intervals(n_boot=300, seed=7)
    valid = valid_of(truth, probs, mask)
    p, o = probs["P95"], truth > THR["P95"]
    sq = np.array([((p[d] - o[d]) ** 2)[valid[d]].sum() for d in range(15)])
    n = valid.reshape(15, -1).sum(1)
    w = day_weights(15, 300, seed=7)
    brier = (w @ sq) / (w @ n)
    iv = out["intervals"]["events"]["P95"]["brier"]
    assert iv["estimate"] == pytest.approx(out["events"]["P95"]["brier"], rel=1e-12)
    assert [iv["low"], iv["high"]] == pytest.approx(np.quantile(brier, [0.025, 0.975]), rel=1e-12)
    assert set(out["intervals"]["events"]["10mm"]) == {
        "brier",
        "brier_reference",
        "bss",
        "roc_auc",
        "base_rate",
    }
    assert out["intervals"]["reliability"]["P95"]["reliable"] is True


def test_cross_check_with_scoringrules_and_scores():
    sr = pytest.importorskip("scoringrules")
    truth, probs, mask = forecast(seed=6)
    acc = ProbabilityAccumulator(THR, mask=mask)
    acc.update(probs, truth)
    res = acc.compute()["events"]
    valid = valid_of(truth, probs, mask)
    for k, thr in THR.items():
        p, o = probs[k][valid], (truth[valid] > thr).astype(float)
        assert res[k]["brier"] == pytest.approx(float(np.mean(sr.brier_score(o, p))), rel=1e-10)
    sp = pytest.importorskip("scores.probability")
    xr = pytest.importorskip("xarray")
    p = xr.DataArray(np.where(valid, probs["10mm"], np.nan), dims=("t", "y", "x"))
    o = xr.DataArray(np.where(valid, truth > THR["10mm"], np.nan), dims=("t", "y", "x"))
    assert res["10mm"]["brier"] == pytest.approx(float(sp.brier_score(p, o)), rel=1e-10)
    ref = float(
        sp.roc_auc(p.fillna(0), o.fillna(0), weights=xr.DataArray(valid * 1.0, dims=p.dims))
    )
    assert abs(res["10mm"]["roc_auc"] - ref) <= res["10mm"]["roc_auc_bin_error"] + 1e-12


def test_inputs_as_arrays_and_bad_inputs():
    truth, probs, mask = forecast(days=3)
    a = ProbabilityAccumulator(THR, mask=mask)
    a.update(probs, truth)
    b = ProbabilityAccumulator(THR, mask=mask)
    b.update(np.stack([probs["P95"], probs["10mm"]], axis=1), truth)
    for k, v in a.per_day.items():
        np.testing.assert_array_equal(v, b.per_day[k])
    with pytest.raises(DownpourError, match=r"must lie in \[0, 1\]"):
        b.update({"P95": probs["P95"] * 2, "10mm": probs["10mm"]}, truth)
    with pytest.raises(DownpourError, match="got probabilities for"):
        b.update({"P95": probs["P95"]}, truth)
    with pytest.raises(DownpourError, match="unknown events"):
        ProbabilityAccumulator(THR, climatology={"P99": 0.01})
    with pytest.raises(DownpourError, match="rise strictly from 0 to 1"):
        ProbabilityAccumulator(THR, diagram_edges=[0.0, 0.5, 0.9])
    with pytest.raises(DownpourError, match=r"inside \(0, 1\)"):
        ProbabilityAccumulator(THR, bins=[0.0, 0.5])
    with pytest.raises(DownpourError, match="no days were accumulated"):
        ProbabilityAccumulator(THR).compute()
