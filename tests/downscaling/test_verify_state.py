"""Verification state: saved accumulators read back exactly; state folders written atomically."""

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
from downpour.downscaling import verify_state
from downpour.downscaling.verify_state import load_state, save_state
from downpour.metrics.accumulator import VerificationAccumulator

THR, SCALES = VERIFY_THR, VERIFY_SCALES


fields, accumulate = verification_fields, accumulate_days


def test_save_load_round_trip_is_exact(tmp_path):
    pred, truth, mask, times = fields()
    acc = accumulate(pred, truth, mask, times, slice(None))
    path = save_state(acc, tmp_path / "sub" / "acc.npz")
    back = load_state(path)
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
    back = load_state(save_state(empty, tmp_path / "empty.npz"))
    assert back.mask is None and back.n_days == 0 and back.tail_threshold == 2.0


def test_load_names_the_file_and_the_problem(tmp_path):
    with pytest.raises(DownpourError, match="missing.npz: no such verification state"):
        load_state(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(DownpourError, match="text.npz: not a verification state"):
        load_state(tmp_path / "text.npz")
    np.savez(tmp_path / "old.npz", version=np.array(0))
    with pytest.raises(DownpourError, match="old.npz: verification state version 0"):
        load_state(tmp_path / "old.npz")


def test_a_failed_save_leaves_the_previous_state_folder_intact(tmp_path, monkeypatch):
    from downpour.downscaling.verify_state import save_states

    pred, truth, mask, times = fields()
    old = {n: accumulate(pred, truth, mask, times, slice(0, 10)) for n in ("a", "b", "c")}
    folder = tmp_path / "state"
    save_states(old, folder, {"split": "test"})
    before = {f.name: f.read_bytes() for f in folder.iterdir()}
    assert set(before) == {"a.npz", "b.npz", "c.npz", "manifest.json"}

    new = {n: accumulate(pred, truth, mask, times, slice(10, 30)) for n in ("a", "b", "c")}
    real_save, calls = verify_state.save_state, []

    def failing_save(acc, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_save(acc, path)

    monkeypatch.setattr(verify_state, "save_state", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_states(new, folder, {"split": "test"})
    assert len(calls) == 2
    assert {f.name: f.read_bytes() for f in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]  # no temporary folder left

    monkeypatch.setattr(verify_state, "save_state", real_save)
    manifest = save_states(new, folder, {"split": "test"})
    assert manifest["n_days"] == 20
    assert load_state(folder / "b.npz").n_days == 20

    other = tmp_path / "not_a_state"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(DownpourError, match="not_a_state: exists and is not a verification state"):
        save_states(new, other, {"split": "test"})
    assert (other / "notes.txt").read_text() == "keep me"
