"""Training SRDRN: loss, step budgets on real and augmented stores, resume, prediction."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from lightning.pytorch.callbacks import Callback

from downpour.config import load_config
from downpour.core.errors import DownpourError
from downpour.data.batching import FixedLengthBatchSampler
from downpour.data.sampler import StratifiedBatchSampler
from downpour.downscaling.datamodule import read_store_info
from downpour.downscaling.predict import load_srdrn, predict_srdrn
from downpour.downscaling.prepare import prepare
from downpour.downscaling.srdrn_module import SRDRNModule, srdrn_train_config
from downpour.downscaling.train import train_srdrn

SMALL = [
    "data.embedded.n_years=2",
    "data.embedded.height=48",
    "data.embedded.width=36",
    "data.splits.train={start: 2001-01-01, end: 2001-03-31}",
    "data.splits.val={start: 2001-04-01, end: 2001-04-30}",
    "data.splits.test={start: 2002-01-01, end: 2002-01-31}",
    "data.heavy.quantile=0.8",
    "srdrn.filters=8",
    "srdrn.res_blocks=2",
    "srdrn.upsample_filters=8",
    "srdrn.batch_size=8",
    "srdrn.lr=1e-3",
    "srdrn.epochs=2",
    "srdrn.batches_per_epoch=3",
    "train.checkpoint_every=1",
]
N_TRAIN = 90  # 2001-01-01 .. 2001-03-31


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks train fastest on one thread, and the test machine's cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def quiet(*_a, **_k):
    return None


def fit(cfg, run, **kw):
    return train_srdrn(cfg, run, echo=quiet, enable_progress_bar=False, **kw)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    """A prepared run directory on a 48×36 embedded dataset, scale 12 (shared, read-only)."""
    run = tmp_path_factory.mktemp("srdrn")
    prepare(load_config("demo", SMALL), run)
    return run


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def write_augmented(store: Path, dst: Path, synthetic_split: str = "train") -> int:
    """Append wetter copies of the heavy training days, flagged synthetic; return their number."""
    ds = xr.open_zarr(store, consolidated=False).load()
    split = ds["split"].values.astype(object)
    heavy = np.flatnonzero((split == "train") & ds["is_heavy"].values)
    fake = ds.isel(time=heavy)
    fake["target"] = fake["target"] * 1.5
    fake["predictors"] = fake["predictors"] * 1.5
    fake["is_synthetic"] = xr.ones_like(fake["is_synthetic"])
    fake["split"] = xr.full_like(fake["split"], synthetic_split)
    out = xr.concat(
        [ds, fake], dim="time", data_vars="minimal", coords="minimal", compat="override"
    )
    out.to_zarr(dst, consolidated=False)
    return heavy.size


@pytest.fixture(scope="module")
def augmented(small_run, tmp_path_factory) -> tuple[Path, int]:
    path = tmp_path_factory.mktemp("aug") / "augmented.zarr"
    return path, write_augmented(small_run / "data" / "store.zarr", path)


class _Keep(Callback):
    """Keep the initial weights and the trained network of a fit."""

    def on_train_start(self, trainer, pl_module):
        self.initial = {k: v.clone() for k, v in pl_module.net.state_dict().items()}

    def on_train_end(self, trainer, pl_module):
        self.net = pl_module.net


# ------------------------------------------------------------------- the loss


def test_loss_is_the_masked_intensity_weighted_mae(small_run):
    cfg = load_config("srdrn", SMALL[:7])
    module = SRDRNModule(cfg, read_store_info(small_run))
    pred = torch.tensor([[[[30.0, 100.0], [1.0, 50.0]]]])
    true = torch.tensor([[[[40.0, 80.0], [0.0, 80.0]]]])
    mask = torch.tensor([[[[True, True], [True, False]]]])
    # w = clip(y / 36.6, 0.1, 2.0): 40/36.6, 2.0 (80/36.6 = 2.19 clipped), 0.1; no tail boost
    expected = (10 * 40 / 36.6 + 20 * 2.0 + 1 * 0.1) / 3
    assert float(module.loss(pred, true, mask)) == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(17.00965, rel=1e-5)


def test_srdrn_train_settings():
    cfg = load_config("demo", ["srdrn.epochs=5", "train.monitor=val/MAE_prior"])
    t = srdrn_train_config(cfg)
    s = cfg.srdrn
    assert (t.epochs, t.batch_size, t.lr, t.scheduler) == (5, s.batch_size, s.lr, s.scheduler)
    assert (t.flips, t.noise, t.max_batches_per_epoch, t.patience) == (False, 0.0, None, 6)
    assert t.monitor == "val/MAE_tail" and t.seed == cfg.train.seed
    assert srdrn_train_config(cfg, epochs=9).patience == 10


# ------------------------------------------------------------ fixed budgets


def test_fixed_length_epochs_continue_the_shuffled_stream():
    inner = StratifiedBatchSampler(np.zeros(10, dtype=bool), batch_size=4, min_heavy_fraction=0.0)
    assert len(inner) == 3
    sampler = FixedLengthBatchSampler(inner, 5)
    epochs = []
    for e in range(3):
        sampler.set_epoch(e)
        epochs.append(list(sampler))
    assert [len(b) for b in epochs[0]] == [4, 4, 2, 4, 4] and len(sampler) == 5
    flat = np.concatenate([np.concatenate(b) for b in epochs])
    assert np.bincount(flat).tolist() == [5] * 10  # 15 batches = 5 passes over 10 days
    fresh = FixedLengthBatchSampler(
        StratifiedBatchSampler(np.zeros(10, dtype=bool), batch_size=4, min_heavy_fraction=0.0), 5
    )
    fresh.set_epoch(1)
    assert list(fresh) == epochs[1]  # depends on the epoch only (exact resume)


def test_demo_section_trains_and_records_steps(small_run, tmp_path):
    run = copy_run(small_run, tmp_path / "run")
    res = fit(load_config("demo", SMALL), run, kind="srdrn_real")
    assert res.epochs == 2 and res.metrics["steps"] == 6  # 2 epochs × 3 batches
    record = json.loads((run / "metrics" / "train_srdrn_real.json").read_text())
    assert record["optimizer_steps"] == 6 and record["train_days"] == N_TRAIN
    assert record["synthetic_train_days"] == 0 and record["kind"] == "srdrn_real"
    ckpts = {p.name for p in (run / "checkpoints" / "srdrn_real").iterdir()}
    assert {"best.ckpt", "last.ckpt", "epoch=000.ckpt", "epoch=001.ckpt"} <= ckpts
    rows = list(csv.DictReader((run / "logs" / "srdrn_real" / "version_0" / "metrics.csv").open()))
    for name in ("train/loss", "val/loss", "val/MAE", "val/MAE_tail", "val/CSI_P95"):
        assert name in rows[0], name
    mae = [float(r["val/MAE"]) for r in rows if r.get("val/MAE")]
    assert len(mae) == 2 and all(np.isfinite(mae))
    payload = torch.load(run / "checkpoints" / "srdrn_real" / "last.ckpt", weights_only=False)
    assert payload["downpour"]["kind"] == "srdrn" and payload["downpour"]["variant"] == "srdrn_real"
    assert payload["downpour"]["normalization"]["channels"] == ["pr", "q"]


def test_same_seed_and_budget_on_real_and_augmented_stores(small_run, augmented, tmp_path):
    aug_path, n_synthetic = augmented
    assert n_synthetic > 0
    run = copy_run(small_run, tmp_path / "run")
    cfg = load_config("demo", [*SMALL, "srdrn.batches_per_epoch=4"])
    starts = [_Keep(), _Keep()]
    real = fit(cfg, run, kind="srdrn_real", extra_callbacks=[starts[0]])
    aug = fit(cfg, run, store=aug_path, kind="srdrn_augmented", extra_callbacks=[starts[1]])
    assert real.metrics["steps"] == aug.metrics["steps"] == 8
    record = json.loads((run / "metrics" / "train_srdrn_augmented.json").read_text())
    assert record["train_days"] == N_TRAIN + n_synthetic
    assert record["synthetic_train_days"] == n_synthetic
    assert record["store"] == str(aug_path)
    a, b = (keep.initial for keep in starts)  # the same seed: the same initial network
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # a total step budget instead: one pass is 12 batches (real) or more (augmented)
    cfg = load_config("demo", [*SMALL, "srdrn.batches_per_epoch=null"])
    real = fit(cfg, run, kind="budget_real", max_steps=14)
    aug = fit(cfg, run, store=aug_path, kind="budget_augmented", max_steps=14)
    assert real.metrics["steps"] == aug.metrics["steps"] == 14


def test_synthetic_days_outside_train_are_refused(small_run, tmp_path):
    bad = tmp_path / "bad.zarr"
    write_augmented(small_run / "data" / "store.zarr", bad, synthetic_split="test")
    with pytest.raises(DownpourError, match=r"synthetic day\(s\) outside the training split"):
        fit(load_config("demo", SMALL), tmp_path / "run", store=bad)


# ------------------------------------------------------ resume and checkpoints


def _weights(path):
    sd = torch.load(path, weights_only=False)["state_dict"]
    return {k: v.float() for k, v in sd.items()}


def test_resume_reproduces_an_uninterrupted_run(small_run, tmp_path):
    over = [*SMALL, "srdrn.epochs=3", "srdrn.scheduler=cosine", "train.warmup_epochs=1"]
    cfg = load_config("demo", over)
    a = copy_run(small_run, tmp_path / "a")
    b = copy_run(small_run, tmp_path / "b")
    fit(cfg, a)
    fit(cfg, b, max_epochs=1)  # stop after one of three epochs
    fit(cfg, b, resume=b / "checkpoints" / "srdrn" / "last.ckpt")
    wa = _weights(a / "checkpoints" / "srdrn" / "last.ckpt")
    wb = _weights(b / "checkpoints" / "srdrn" / "last.ckpt")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6, msg=k)
    steps = json.loads((b / "metrics" / "train_srdrn.json").read_text())["optimizer_steps"]
    assert steps == 9


def test_checkpoint_round_trip_and_prediction(small_run, augmented, tmp_path):
    run = copy_run(small_run, tmp_path / "run")
    keep = _Keep()
    fit(load_config("demo", SMALL), run, extra_callbacks=[keep])
    final = run / "checkpoints" / "srdrn" / "epoch=001.ckpt"  # the second and last epoch
    net, cfg, info = load_srdrn(final)
    assert cfg.srdrn.filters == 8 and info["scale_factor"] == 12 and not net.training
    x = torch.randn(5, 2, 4, 3)
    with torch.no_grad():
        torch.testing.assert_close(net(x), keep.net.eval()(x), rtol=0, atol=0)

    store = run / "data" / "store.zarr"
    pred = predict_srdrn(final, store, split="test", batch_size=7)
    ds = xr.open_zarr(store, consolidated=False)
    test_rows = np.flatnonzero(ds["split"].values.astype(object) == "test")
    assert pred.dims == ("time", "y", "x") and pred.shape == (31, 48, 36)
    np.testing.assert_array_equal(pred["time"].values, ds["time"].values[test_rows])
    assert str(pred["time"].values[0])[:10] == "2002-01-01"
    mask = ds["mask"].values.astype(bool)
    assert np.isnan(pred.values[:, ~mask]).all()
    assert np.isfinite(pred.values[:, mask]).all() and np.nanmin(pred.values) >= 0
    np.testing.assert_array_equal(pred["lat"].values, ds["lat"].values)
    # the same days through the network by hand, all at once
    from downpour.data.normalize import Normalization

    norm = Normalization.from_dict(info["normalization"])
    xs = torch.from_numpy(norm.normalize_x(ds["predictors"].values[test_rows]).astype(np.float32))
    with torch.no_grad():
        by_hand = net(xs)[:, 0].numpy()
    np.testing.assert_allclose(pred.values[:, mask], by_hand[:, mask], rtol=1e-5, atol=1e-6)
    # on the augmented store the test days (and the prediction) are the same
    again = predict_srdrn(final, augmented[0], split="test")
    np.testing.assert_array_equal(again.values, pred.values)
    with pytest.raises(DownpourError, match="not a downpour SRDRN checkpoint"):
        torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
        load_srdrn(tmp_path / "other.ckpt")


def test_nan_loss_stops_with_the_step(small_run, tmp_path, monkeypatch):
    import downpour.downscaling.srdrn_module as sm

    real = sm.weighted_reconstruction
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        out = real(*args, **kwargs)
        return out * float("nan") if calls["n"] > 4 else out

    monkeypatch.setattr(sm, "weighted_reconstruction", poisoned)
    run = copy_run(small_run, tmp_path / "run")
    with pytest.raises(DownpourError, match=r"SRDRN loss became nan at step \d+ \(epoch 1"):
        fit(load_config("demo", SMALL), run)
    assert (run / "checkpoints" / "srdrn" / "epoch=000.ckpt").is_file()
