"""Probabilistic verification in pieces: state round trips, merged halves, paired differences."""

from __future__ import annotations

import io

import numpy as np
import pytest

from _shared import assert_same_result
from downpour.core.errors import DownpourError
from downpour.metrics.probabilistic_pairs import (
    paired_event_difference,
    paired_quantile_difference,
)
from downpour.metrics.probability import ProbabilityAccumulator
from downpour.metrics.quantiles import QuantileAccumulator

TAUS = [0.5, 0.95, 0.99, 0.999]
THR, CLIM = {"P95": 6.0, "P99": 14.0}, {"P95": 0.05, "P99": 0.01}


def case(days=30, ny=8, nx=7, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.gamma(0.6, 5.0, size=(days, ny, nx))
    truth[rng.random(truth.shape) < 0.4] = 0.0
    spread = np.array([0.0, 1.5, 2.5, 4.0])[None, :, None, None]
    q = np.maximum(truth[:, None] * rng.lognormal(0, 0.3, truth[:, None].shape) + spread - 1, 0)
    q[4, :, 2, 2] = np.nan
    truth[7, 1, 1] = np.nan
    mask = np.ones((ny, nx), dtype=bool)
    mask[-1, :2] = False
    times = np.datetime64("2001-01-01", "ns") + np.arange(days) * np.timedelta64(1, "D")
    return q, truth, mask, times


def quantile_acc(q, truth, mask, times, days=slice(None), batch=7):
    acc = QuantileAccumulator(TAUS, thresholds=THR, climatology=CLIM, mask=mask)
    idx = np.arange(truth.shape[0])[days]
    for i in range(0, idx.size, batch):
        sel = idx[i : i + batch]
        acc.update(q[sel], truth[sel], times[sel])
    return acc


def test_merged_pieces_equal_one_pass():
    q, truth, mask, times = case()
    one = quantile_acc(q, truth, mask, times)
    a = quantile_acc(q, truth, mask, times, slice(0, 13), batch=5)
    b = quantile_acc(q, truth, mask, times, slice(13, 30), batch=30)
    ref = one.compute_with_intervals(200, seed=3)
    for merged in (a.merge(b), b.merge(a)):
        assert np.array_equal(merged.times, times)
        for k, v in one.per_day.items():
            assert np.array_equal(merged.per_day[k], v), k
        for k, v in one.probabilities.per_day.items():
            assert np.array_equal(merged.probabilities.per_day[k], v), k
        assert_same_result(merged.compute_with_intervals(200, seed=3), ref)


def test_state_round_trip_is_exact_through_npz():
    q, truth, mask, times = case()
    acc = quantile_acc(q, truth, mask, times)
    state = acc.state()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    buf = io.BytesIO()
    np.savez(buf, **state)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as f:  # plain arrays, no pickles
        back = QuantileAccumulator.from_state(dict(f))
    assert np.array_equal(back.taus, acc.taus) and back.lower == acc.lower
    assert np.array_equal(back.mask, mask) and np.array_equal(back.times, times)
    assert back.probabilities.events == THR
    for k, v in acc.per_day.items():
        assert np.array_equal(back.per_day[k], v) and back.per_day[k].dtype == v.dtype
    assert_same_result(back.compute_with_intervals(100), acc.compute_with_intervals(100), rel=0.0)
    # without thresholds, mask or days
    empty = QuantileAccumulator([0.9])
    back = QuantileAccumulator.from_state(empty.state())
    assert back.probabilities is None and back.mask is None and back.n_days == 0
    prob = ProbabilityAccumulator(THR, climatology={"P99": 0.01})
    back = ProbabilityAccumulator.from_state(prob.state())
    assert np.array_equal(back.climatology, [np.nan, 0.01], equal_nan=True)


def test_bad_states_and_merges_are_refused():
    q, truth, mask, times = case(days=10)
    acc = quantile_acc(q, truth, mask, times)
    state = acc.state()
    with pytest.raises(DownpourError, match="piece 2: quantile state version 0"):
        QuantileAccumulator.from_state({**state, "version": np.array(0)}, where="piece 2")
    with pytest.raises(DownpourError, match=r"lacks \['day_ties'\]"):
        QuantileAccumulator.from_state({k: v for k, v in state.items() if k != "day_ties"})
    with pytest.raises(DownpourError, match="per-day 'prob_count_bins' has shape"):
        QuantileAccumulator.from_state({**state, "prob_day_count_bins": state["prob_day_n"]})
    with pytest.raises(DownpourError, match=r"probability state lacks \['event_names'"):
        ProbabilityAccumulator.from_state(state)  # the prefix is missing
    half = quantile_acc(q, truth, mask, times, slice(8, 10))
    with pytest.raises(DownpourError, match="2 day.* in both accumulators, the first 2001-01-09"):
        acc.merge(half)
    other = QuantileAccumulator(TAUS, thresholds=THR, mask=mask)  # no climatology
    with pytest.raises(DownpourError, match="different events, climatology"):
        acc.merge(other)
    with pytest.raises(DownpourError, match="different levels"):
        acc.merge(QuantileAccumulator(TAUS[:3], thresholds=THR, climatology=CLIM, mask=mask))


def test_paired_differences():
    q, truth, mask, times = case(days=40, seed=1)
    qacc = quantile_acc(q, truth, mask, times)
    pred = q[:, 0].copy()  # the median head as a deterministic forecast, 0/1 per event
    det = ProbabilityAccumulator(THR, climatology=CLIM, mask=mask)
    det.update_deterministic(pred, truth, times)
    same = paired_event_difference(qacc, qacc, n_boot=100)
    for name in THR:
        for score in ("brier", "bss", "roc_auc"):
            r = same["events"][name][score]
            assert (r["estimate"], r["low"], r["high"], r["significant"]) == (0, 0, 0, False)
    diff = paired_event_difference(qacc, det, n_boot=200, seed=4)
    qa, da = qacc.compute()["events"], det.compute()["events"]
    for name in THR:
        d = diff["events"][name]["brier"]
        assert d["estimate"] == pytest.approx(qa[name]["brier"] - da[name]["brier"], rel=1e-12)
        assert d["low"] <= d["estimate"] <= d["high"]
    worse = quantile_acc(q * 1.5 + 1.0, truth, mask, times)
    pin = paired_quantile_difference(worse, qacc, n_boot=200)["quantiles"]
    ref_w, ref_q = worse.compute()["quantiles"], qacc.compute()["quantiles"]
    for key, r in pin.items():
        r = r["pinball"]
        assert r["estimate"] == pytest.approx(ref_w[key]["pinball"] - ref_q[key]["pinball"])
    assert pin["0.5"]["pinball"]["significant"] and pin["0.5"]["pinball"]["low"] > 0
    holes = q[:, 0].copy()
    holes[3, 0, 0] = np.nan
    det2 = ProbabilityAccumulator(THR, climatology=CLIM, mask=mask)
    det2.update_deterministic(holes, truth, times)
    with pytest.raises(DownpourError, match="different cells on 1 day.*the first 2001-01-04"):
        paired_event_difference(det2, det)
    with pytest.raises(DownpourError, match="same days"):
        paired_event_difference(qacc, quantile_acc(q, truth, mask, times, slice(0, 20)))
