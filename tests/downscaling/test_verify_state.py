"""Verification in pieces: state files and folders, ``verify --period`` and ``verify-merge``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from downpour.cli.main import cli
from downpour.config import load_config
from downpour.core.errors import DownpourError
from downpour.downscaling import verify_state
from downpour.downscaling.prepare import prepare
from downpour.downscaling.verify_state import load_state, save_state
from downpour.metrics.accumulator import VerificationAccumulator

THR = {"P95": 6.0, "10mm": 10.0}
SCALES = (1, 3, 4)


def fields(days: int = 30, shape: tuple[int, int] = (14, 11), seed: int = 0):
    rng = np.random.default_rng(seed)
    size = (days, *shape)
    truth = np.where(rng.random(size) < 0.5, rng.gamma(0.8, 6.0, size), 0.0).astype(np.float32)
    pred = np.maximum(truth + rng.normal(0.0, 3.0, size), 0.0).astype(np.float32)
    pred[min(4, days - 1), 2, 3] = np.nan
    mask = rng.random(shape) > 0.3
    times = np.arange("2001-01-01", days, dtype="datetime64[D]").astype("datetime64[ns]")
    return pred, truth, mask, times


def accumulate(pred, truth, mask, times, days: slice, batch: int = 7) -> VerificationAccumulator:
    acc = VerificationAccumulator(THR, scales=SCALES, mask=mask)
    idx = np.arange(len(times))[days]
    for i in range(0, idx.size, batch):
        sel = idx[i : i + batch]
        acc.update(pred[sel], truth[sel], time=times[sel])
    return acc


def assert_same_result(got: dict, ref: dict, rel: float = 1e-12) -> None:
    """Counts exactly, every other number to ``rel`` (relative), NaN where the other is NaN."""
    if isinstance(ref, dict):
        assert set(got) == set(ref)
        for k in ref:
            assert_same_result(got[k], ref[k], rel)
    elif isinstance(ref, list):
        assert len(got) == len(ref)
        for a, b in zip(got, ref, strict=True):
            assert_same_result(a, b, rel)
    elif isinstance(ref, bool | int | str) or ref is None:
        assert got == ref
    else:
        assert got == pytest.approx(ref, rel=rel, abs=rel * 1e-3, nan_ok=True)


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


# ------------------------------------------------------------------ command line

SMALL = [
    "data.embedded.n_years=2",
    "data.embedded.height=48",
    "data.embedded.width=36",
    "data.splits.train={start: 2001-01-01, end: 2001-03-31}",
    "data.splits.val={start: 2001-04-01, end: 2001-04-30}",
    "data.splits.test={start: 2002-01-01, end: 2002-01-31}",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A prepared 48×36 embedded run whose test split is January 2002 (31 days)."""
    path = tmp_path_factory.mktemp("verify_pieces")
    prepare(load_config("demo", SMALL), path)
    return path


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, " ".join(result.output.split())


def test_verify_in_two_periods_then_merge_equals_one_pass(run, tmp_path):
    code, out = invoke("verify", run, "--n-boot", "100", "--no-figures")
    assert code == 0, out
    one = json.loads((run / "metrics" / "verify.json").read_text())
    first, second = tmp_path / "first", tmp_path / "second"
    code, out = invoke("verify", run, "--period", "2002-01:2002-01-15", "--save-state", first)
    assert code == 0 and "saved 15 days of 2 models" in out, out
    code, out = invoke("verify", run, "--period", "2002-01-16:2002-01-31", "--save-state", second)
    assert code == 0, out
    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest["days"] == ["2002-01-01", "2002-01-15"] and manifest["n_days"] == 15
    assert manifest["models"] == {"bicubic": "bicubic.npz", "bcsd": "bcsd.npz"}
    merged_json = tmp_path / "verify.json"
    code, out = invoke("verify-merge", second, first, "--out", merged_json, "--n-boot", "100")
    assert code == 0 and "merged 2 pieces: 31 days from 2002-01-01 to 2002-01-31" in out, out
    merged = json.loads(merged_json.read_text())
    assert merged["period"] == ["2002-01-01", "2002-01-31"]
    assert merged["parts"] == [str(second), str(first)]
    for key in ("store", "parts", "period"):
        merged.pop(key)
        one.pop(key, None)
    assert merged["models"]["bcsd"]["n_days"] == 31
    assert_same_result(merged, one)  # counts exactly, scores and intervals to 1e-12

    code, out = invoke("verify-merge", first, first, "--out", tmp_path / "twice.json")
    assert code == 2
    assert "cannot merge 'bicubic'" in out and "15 day(s) are in both" in out
    assert "the first 2002-01-01" in out
    code, out = invoke("verify", run, "--period", "2005:2006", "--save-state", tmp_path / "x")
    assert code == 2
    assert "period 2005-01-01:2006-12-31 holds none of the 31 real test days" in out
    assert "they cover 2002-01-01 to 2002-01-31" in out


# ------------------------------------------------- predicting only a period's days


@pytest.fixture(scope="module")
def srdrn_ckpt(run, tmp_path_factory) -> Path:
    """An untrained small SRDRN checkpoint of the run's store (as `downpour train srdrn` writes)."""
    import torch

    from downpour.downscaling.datamodule import read_store_info
    from downpour.downscaling.srdrn_module import SRDRNModule

    over = ["srdrn.filters=8", "srdrn.res_blocks=2", "srdrn.upsample_filters=8"]
    torch.manual_seed(0)
    module = SRDRNModule(load_config("demo", [*SMALL, *over]), read_store_info(run))
    ckpt = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)
    path = tmp_path_factory.mktemp("srdrn_ckpt") / "best.ckpt"
    torch.save(ckpt, path)
    return path


def _record_days(monkeypatch, cls: type, method: str) -> list[int]:
    """Wrap ``cls.method(self, x, ...)`` to record the days (``len(x)``) of every call."""
    seen: list[int] = []
    real = getattr(cls, method)

    def wrapped(self, x, *args, **kwargs):
        seen.append(len(x))
        return real(self, x, *args, **kwargs)

    monkeypatch.setattr(cls, method, wrapped)
    return seen


@pytest.mark.parametrize("name", ["bicubic", "bcsd"])
def test_baseline_predicts_only_the_selected_days(run, monkeypatch, name):
    from downpour.downscaling.predict import predict_baseline
    from downpour.models.baselines import BCSD, Bicubic

    store = run / "data" / "store.zarr"
    whole = predict_baseline(name, store, split="test")
    days = whole["time"].values[10:20].astype("datetime64[D]")  # another unit than the store's
    seen = _record_days(monkeypatch, {"bicubic": Bicubic, "bcsd": BCSD}[name], "predict")
    part = predict_baseline(name, store, split="test", times=days, batch_size=4)
    assert seen == [4, 4, 2]  # only the ten days, in batches
    np.testing.assert_array_equal(part["time"].values, whole["time"].values[10:20])
    np.testing.assert_array_equal(part.values, whole.values[10:20])  # exactly
    with pytest.raises(DownpourError, match="1 selected day.* not days of the 'test' split.*"
                       "the first 2001-01-05"):  # fmt: skip
        predict_baseline(name, store, times=np.array(["2002-01-03", "2001-01-05"], "M8[D]"))


def test_srdrn_predicts_only_the_selected_days(run, srdrn_ckpt, monkeypatch):
    from downpour.downscaling.predict import predict_srdrn
    from downpour.models.srdrn import SRDRN

    store = run / "data" / "store.zarr"
    whole = predict_srdrn(srdrn_ckpt, store, split="test", device="cpu")
    days = whole["time"].values[[3, 4, 5, 6, 7, 20, 30]]
    seen = _record_days(monkeypatch, SRDRN, "forward")
    part = predict_srdrn(srdrn_ckpt, store, split="test", times=days, batch_size=3, device="cpu")
    assert seen == [3, 3, 1]
    np.testing.assert_array_equal(part["time"].values, days)
    mask = np.isfinite(whole.values[0])
    assert mask.any() and not mask.all()
    np.testing.assert_allclose(part.values, whole.values[[3, 4, 5, 6, 7, 20, 30]],
                               rtol=1e-5, atol=1e-6, equal_nan=True)  # fmt: skip


def test_verify_period_predicts_only_its_days(run, srdrn_ckpt, monkeypatch, tmp_path):
    from downpour.downscaling.verify import verify_run
    from downpour.models.baselines import Bicubic
    from downpour.models.srdrn import SRDRN

    bicubic_days = _record_days(monkeypatch, Bicubic, "predict")
    srdrn_days = _record_days(monkeypatch, SRDRN, "forward")
    manifest = verify_run(run, checkpoints={"srdrn": srdrn_ckpt}, baselines=("bicubic",),
                          period="2002-01-05:2002-01-14", save_state=tmp_path / "s",
                          echo=lambda m: None)  # fmt: skip
    assert manifest["n_days"] == 10 and manifest["days"] == ["2002-01-05", "2002-01-14"]
    assert sum(bicubic_days) == 10 and sum(srdrn_days) == 10  # not the 31 days of the split


# --------------------------------------------- merging pieces of another run or checkpoint


def test_merge_refuses_pieces_of_another_checkpoint_run_or_store(run, srdrn_ckpt, tmp_path):
    import torch

    from downpour.downscaling.verify import merge_states, verify_run

    ckpt = tmp_path / "run_ckpt" / "best.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(srdrn_ckpt.read_bytes())

    def piece(period: str, out: Path) -> Path:
        verify_run(run, checkpoints={"srdrn_real": ckpt}, baselines=("bicubic",), period=period,
                   save_state=out, echo=lambda m: None)  # fmt: skip
        return out

    first = piece("2002-01-01:2002-01-15", tmp_path / "first")
    second = piece("2002-01-16:2002-01-31", tmp_path / "second")
    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest["run"] == str(run.resolve())
    assert manifest["checkpoints"] == {"srdrn_real": str(ckpt.resolve())}
    assert len(manifest["checkpoint_sha256"]["srdrn_real"]) == 64
    merged = merge_states([first, second], tmp_path / "ok.json", n_boot=20, echo=lambda m: None)
    assert merged["models"]["srdrn_real"]["n_days"] == 31

    # retrained between the pieces: same path, other weights
    state = torch.load(ckpt, weights_only=False)
    state["state_dict"] = {k: v + 0.01 if v.is_floating_point() else v
                           for k, v in state["state_dict"].items()}  # fmt: skip
    torch.save(state, ckpt)
    retrained = piece("2002-01-16:2002-01-31", tmp_path / "retrained")
    with pytest.raises(DownpourError) as err:
        merge_states([first, retrained], tmp_path / "bad.json", echo=lambda m: None)
    msg = str(err.value)
    assert str(first) in msg and str(retrained) in msg
    assert "checkpoint_sha256['srdrn_real']" in msg and "retrained or replaced" in msg
    assert "verify all pieces against the same run, store and checkpoints" in msg
    assert not (tmp_path / "bad.json").exists()

    # another run, store or checkpoint path in the manifest
    for key, value in (("run", "/elsewhere/run"), ("store", "/elsewhere/store.zarr"),
                       ("checkpoints", {"srdrn_real": "/elsewhere/best.ckpt"})):  # fmt: skip
        other = tmp_path / f"other_{key}"
        other.mkdir()
        for f in second.iterdir():
            (other / f.name).write_bytes(f.read_bytes())
        m = json.loads((other / "manifest.json").read_text())
        m[key] = value
        (other / "manifest.json").write_text(json.dumps(m))
        expected = re.escape(f"pieces {first} and {other} differ in {key}")
        with pytest.raises(DownpourError, match=expected):
            merge_states([first, other], tmp_path / "bad.json", echo=lambda m: None)


# ---------------------------------------------------------- writing a state folder


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
