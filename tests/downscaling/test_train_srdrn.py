"""Training SRDRN: step budgets on real and augmented stores, resume, checkpoints and prediction."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from lightning.pytorch.callbacks import Callback

from _shared import QUARTER_JAN, copy_run, write_augmented
from downpour.config import load_config
from downpour.core.errors import DownpourError
from downpour.downscaling.predict import load_srdrn, predict_srdrn
from downpour.downscaling.train import train_srdrn

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = [
    *QUARTER_JAN,
    "srdrn.filters=8",
    "srdrn.res_blocks=2",
    "srdrn.upsample_filters=8",
    "srdrn.batch_size=8",
    "srdrn.lr=1e-3",
    "srdrn.epochs=2",
    "srdrn.batches_per_epoch=3",
    "train.checkpoint_every=1",
    "srdrn.val_every=1",  # the demo validates every 4 epochs; these tests check each epoch
]
N_TRAIN = 90  # 2001-01-01 .. 2001-03-31


def quiet(*_a, **_k):
    return None


def fit(cfg, run, **kw):
    return train_srdrn(cfg, run, echo=quiet, enable_progress_bar=False, **kw)


@pytest.fixture(scope="module")
def augmented(quarter_jan_run, tmp_path_factory) -> tuple[Path, int]:
    """The store plus wetter copies (×1.5) of its heavy training days, flagged synthetic."""
    path = tmp_path_factory.mktemp("aug") / "augmented.zarr"
    store = quarter_jan_run / "data" / "store.zarr"
    return path, write_augmented(store, path, target_factor=1.5, predictor_factor=1.5)


class _Keep(Callback):
    """Keep the initial weights and the trained network of a fit."""

    def on_train_start(self, trainer, pl_module):
        self.initial = {k: v.clone() for k, v in pl_module.net.state_dict().items()}

    def on_train_end(self, trainer, pl_module):
        self.net = pl_module.net


# ------------------------------------------------------------ fixed budgets


def test_demo_section_trains_and_records_steps(quarter_jan_run, tmp_path):
    run = copy_run(quarter_jan_run, tmp_path / "run")
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


def test_same_seed_and_budget_on_real_and_augmented_stores(quarter_jan_run, augmented, tmp_path):
    aug_path, n_synthetic = augmented
    assert n_synthetic > 0
    run = copy_run(quarter_jan_run, tmp_path / "run")
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


def test_unset_budget_gives_the_augmented_variant_the_real_only_steps(
    quarter_jan_run, augmented, tmp_path
):
    aug_path, n_synthetic = augmented
    run = copy_run(quarter_jan_run, tmp_path / "run")
    cfg = load_config("demo", [*SMALL, "srdrn.batches_per_epoch=null"])
    lines: list[str] = []
    real = fit(cfg, run, kind="srdrn_real")
    aug = train_srdrn(
        cfg, run, store=aug_path, kind="srdrn_augmented", echo=lines.append,
        enable_progress_bar=False,
    )  # fmt: skip
    # one pass over the 90 real training days in batches of 8 is 12 batches, for both
    assert real.metrics["steps"] == aug.metrics["steps"] == 2 * 12
    record = json.loads((run / "metrics" / "train_srdrn_augmented.json").read_text())
    assert record["batches_per_epoch"] == 12 and record["train_days"] == N_TRAIN + n_synthetic
    assert "unset: 12 batches per epoch" in record["budget"]
    assert any("90 real training days" in line for line in lines)
    real_record = json.loads((run / "metrics" / "train_srdrn_real.json").read_text())
    assert real_record["budget"] == "one pass over the training days per epoch"


def test_synthetic_days_outside_train_are_refused(quarter_jan_run, tmp_path):
    bad = tmp_path / "bad.zarr"
    write_augmented(
        quarter_jan_run / "data" / "store.zarr",
        bad,
        target_factor=1.5,
        predictor_factor=1.5,
        synthetic_split="test",
    )
    with pytest.raises(DownpourError, match=r"synthetic day\(s\) outside the training split"):
        fit(load_config("demo", SMALL), tmp_path / "run", store=bad)


def _weights(path):
    sd = torch.load(path, weights_only=False)["state_dict"]
    return {k: v.float() for k, v in sd.items()}


def test_resume_reproduces_an_uninterrupted_run(quarter_jan_run, tmp_path):
    over = [*SMALL, "srdrn.epochs=3", "srdrn.scheduler=cosine", "train.warmup_epochs=1"]
    cfg = load_config("demo", over)
    a = copy_run(quarter_jan_run, tmp_path / "a")
    b = copy_run(quarter_jan_run, tmp_path / "b")
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


def test_checkpoint_round_trip_and_prediction(quarter_jan_run, augmented, tmp_path):
    run = copy_run(quarter_jan_run, tmp_path / "run")
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


def test_nan_loss_stops_with_the_step(quarter_jan_run, tmp_path, monkeypatch):
    import downpour.downscaling.srdrn_module as sm

    real = sm.weighted_reconstruction
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        out = real(*args, **kwargs)
        return out * float("nan") if calls["n"] > 4 else out

    monkeypatch.setattr(sm, "weighted_reconstruction", poisoned)
    run = copy_run(quarter_jan_run, tmp_path / "run")
    with pytest.raises(DownpourError, match=r"SRDRN loss became nan at step \d+ \(epoch 1"):
        fit(load_config("demo", SMALL), run)
    assert (run / "checkpoints" / "srdrn" / "epoch=000.ckpt").is_file()
