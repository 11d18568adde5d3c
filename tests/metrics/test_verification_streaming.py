"""Verification in pieces of time: the accumulator's state as arrays, and merging pieces."""

from __future__ import annotations

import numpy as np
import pytest

from _shared import (
    VERIFY_SCALES,
    VERIFY_THR,
    accumulate_days,
    assert_same_result,
    verification_fields,
)
from downpour.core.errors import DownpourError
from downpour.metrics.accumulator import STATE_VERSION, VerificationAccumulator

THR, SCALES = VERIFY_THR, VERIFY_SCALES


fields, accumulate = verification_fields, accumulate_days


def test_state_round_trip_is_exact():
    pred, truth, mask, times = fields()
    acc = accumulate(pred, truth, mask, times, slice(None))
    state = acc.state()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert int(state["version"]) == STATE_VERSION
    back = VerificationAccumulator.from_state(state)
    assert back.thresholds == acc.thresholds and back.scales == acc.scales
    assert back.tail_threshold == acc.tail_threshold
    assert np.array_equal(back.mask, mask) and np.array_equal(back.times, times)
    for k, v in acc.per_day.items():
        assert np.array_equal(back.per_day[k], v, equal_nan=True), k
        assert back.per_day[k].dtype == v.dtype
    for h, hb in ((acc.hist_pred, back.hist_pred), (acc.hist_truth, back.hist_truth)):
        assert np.array_equal(hb.counts, h.counts) and (hb.vmin, hb.vmax) == (h.vmin, h.vmax)
    assert_same_result(back.compute_with_intervals(50), acc.compute_with_intervals(50), rel=0.0)
    # no mask, no times, no days
    empty = VerificationAccumulator({"5mm": 5.0}, tail_threshold=2.0)
    back = VerificationAccumulator.from_state(empty.state())
    assert back.mask is None and back.n_days == 0 and back.tail_threshold == 2.0


def test_from_state_names_the_source_and_the_problem():
    pred, truth, mask, times = fields(days=5)
    state = accumulate(pred, truth, mask, times, slice(None)).state()
    with pytest.raises(DownpourError, match="piece 3: verification state version 0"):
        VerificationAccumulator.from_state({**state, "version": np.array(0)}, where="piece 3")
    with pytest.raises(DownpourError, match="verification state: verification state version"):
        VerificationAccumulator.from_state({k: v for k, v in state.items() if k != "version"})
    with pytest.raises(DownpourError, match=r"lacks \['day_fss'\]"):
        VerificationAccumulator.from_state({k: v for k, v in state.items() if k != "day_fss"})
    with pytest.raises(DownpourError, match="per-day 'counts' has shape"):
        VerificationAccumulator.from_state({**state, "day_counts": state["day_counts"][:2]})


def test_pieces_merged_in_any_order_equal_one_pass():
    pred, truth, mask, times = fields()
    one = accumulate(pred, truth, mask, times, slice(None))
    a = accumulate(pred, truth, mask, times, slice(0, 9), batch=4)
    b = accumulate(pred, truth, mask, times, slice(9, 10))
    c = accumulate(pred, truth, mask, times, slice(10, 30), batch=20)
    ref = one.compute_with_intervals(200, seed=1)
    for merged in (a.merge(b).merge(c), c.merge(b.merge(a)), b.merge(c).merge(a)):
        assert np.array_equal(merged.times, times)  # ordered by time
        assert np.array_equal(merged.per_day["counts"], one.per_day["counts"])
        assert np.array_equal(merged.hist_pred.counts, one.hist_pred.counts)
        assert_same_result(merged.compute_with_intervals(200, seed=1), ref)


def test_merging_a_day_twice_is_refused_with_its_date():
    pred, truth, mask, times = fields()
    a = accumulate(pred, truth, mask, times, slice(0, 10))
    b = accumulate(pred, truth, mask, times, slice(8, 20))
    with pytest.raises(DownpourError, match="2 day.* in both accumulators, the first 2001-01-09"):
        a.merge(b)


def test_cftime_stamps_order_and_check_days():
    cftime = pytest.importorskip("cftime")
    pred, truth, mask, _ = fields(days=4)
    stamps = [cftime.DatetimeNoLeap(2001, 2, 27 + d) if d < 2 else
              cftime.DatetimeNoLeap(2001, 3, d - 1) for d in range(4)]  # fmt: skip
    a = VerificationAccumulator(THR, scales=SCALES, mask=mask)
    b = VerificationAccumulator(THR, scales=SCALES, mask=mask)
    a.update(pred[2:], truth[2:], time=stamps[2:])
    b.update(pred[:2], truth[:2], time=stamps[:2])
    merged = a.merge(b)
    assert [str(t)[:10] for t in merged.times] == [
        "2001-02-27", "2001-02-28", "2001-03-01", "2001-03-02"
    ]  # fmt: skip
    with pytest.raises(DownpourError, match="the first 2001-03-01"):
        merged.merge(a)
