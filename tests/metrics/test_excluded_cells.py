"""Cells left out of the scores are counted, and paired differences refuse different cells."""

import numpy as np
import pytest

from downpour.core.errors import DownpourError
from downpour.metrics.accumulator import VerificationAccumulator
from downpour.metrics.verification import paired_difference


def _fields(seed=0, days=6, h=5, w=4):
    rng = np.random.default_rng(seed)
    truth = rng.gamma(0.5, 8.0, size=(days, h, w)).astype(np.float32)
    pred = (truth + rng.normal(0, 2, size=truth.shape)).clip(0).astype(np.float32)
    mask = np.ones((h, w), dtype=bool)
    mask[0, :] = False  # ocean row
    return pred, truth, mask


def test_missing_truth_and_bad_predictions_are_counted_and_left_out():
    pred, truth, mask = _fields()
    truth[1, 2, 1] = np.nan  # a gap in the observations inside the mask
    truth[4, 3, 3] = np.nan
    truth[2, 0, 0] = np.nan  # outside the mask: not counted
    pred[3, 1, 2] = np.nan  # the model fails inside the mask
    pred[3, 4, 0] = np.inf
    pred[1, 2, 1] = np.nan  # truth missing there too: counted as missing truth only
    acc = VerificationAccumulator({"5mm": 5.0}, scales=(1,), mask=mask)
    acc.update(pred, truth)
    out = acc.compute(tail_fit=False)
    assert out["excluded"] == {"missing_truth": 2, "nonfinite_prediction": 2}
    valid = mask[None] & np.isfinite(truth) & np.isfinite(pred)
    assert out["continuous"]["n_valid"] == int(valid.sum()) == 6 * 16 - 4
    mae = np.abs(pred[valid].astype(np.float64) - truth[valid]).mean()
    assert out["continuous"]["mae"] == pytest.approx(mae, rel=1e-12)
    # the counts survive a state round trip and merging
    again = VerificationAccumulator.from_state(acc.state()).compute(tail_fit=False)
    assert again["excluded"] == out["excluded"]


def test_a_clean_prediction_excludes_nothing():
    pred, truth, mask = _fields(seed=1)
    acc = VerificationAccumulator({"5mm": 5.0}, scales=(1,), mask=mask)
    acc.update(pred, truth)
    assert acc.compute(tail_fit=False)["excluded"] == {
        "missing_truth": 0,
        "nonfinite_prediction": 0,
    }


def test_paired_difference_refuses_models_scored_on_different_cells():
    pred, truth, mask = _fields(seed=2)
    times = np.arange("2008-01-01", "2008-01-07", dtype="datetime64[D]").astype("datetime64[ns]")
    a = VerificationAccumulator({"5mm": 5.0}, scales=(1,), mask=mask)
    b = VerificationAccumulator({"5mm": 5.0}, scales=(1,), mask=mask)
    a.update(pred, truth, times)
    broken = pred.copy()
    broken[2, 3, 1] = np.nan
    b.update(broken, truth, times)
    with pytest.raises(DownpourError, match=r"different cells on 1 day\(s\), the first 2008-01-03"):
        paired_difference(a, b, n_boot=10)
    c = VerificationAccumulator({"5mm": 5.0}, scales=(1,), mask=mask)
    c.update(pred * 1.1, truth, times)
    diff = paired_difference(a, c, n_boot=10)  # same cells: fine
    assert diff["continuous"]["mae"]["estimate"] < 0


def test_one_event_day_in_thirty_gives_an_interval_marked_unreliable():
    rng = np.random.default_rng(5)
    truth = rng.uniform(0, 4, size=(30, 6, 6)).astype(np.float32)
    truth[7, 2, 2] = 50.0  # the only day with an event above 10 mm
    pred = truth.copy()
    acc = VerificationAccumulator({"10mm": 10.0, "1mm": 1.0}, scales=(1,))
    acc.update(pred, truth)
    out = acc.compute_with_intervals(n_boot=500, seed=0, tail_fit=False)
    leaf = out["intervals"]["categorical"]["10mm"]["csi"]
    assert (leaf["low"], leaf["high"]) == (1.0, 1.0)  # what the resamples with the day say
    # (29/30)^30 of the resamples miss the day: about 36 % are dropped, and counted
    assert 0.28 * 500 < leaf["dropped"] < 0.44 * 500
    rel = out["intervals"]["reliability"]
    assert rel["10mm"] == {"event_days": 1, "min_event_days": 10, "reliable": False}
    assert rel["1mm"]["reliable"] and out["intervals"]["categorical"]["1mm"]["csi"]["dropped"] == 0
