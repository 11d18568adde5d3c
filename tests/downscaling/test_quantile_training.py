"""Quantile and residual SRDRN: routing of synthetic days, training, checkpoints, prediction."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch
import xarray as xr
import zarr
from lightning.pytorch.callbacks import Callback

from _shared import QUARTER_JAN, copy_run, write_augmented
from downpour.config import load_config
from downpour.core.errors import DownpourError
from downpour.data.normalize import Normalization
from downpour.downscaling.datamodule import read_store_info
from downpour.downscaling.predict import predict_baseline, predict_srdrn
from downpour.downscaling.srdrn_module import SRDRNModule
from downpour.downscaling.train import train_srdrn
from downpour.models.loading import load_model

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = [
    *QUARTER_JAN,
    "srdrn.filters=8",
    "srdrn.res_blocks=2",
    "srdrn.upsample_filters=8",
    "srdrn.batch_size=8",
    "srdrn.lr=1e-3",
    "train.checkpoint_every=1",
    "srdrn.residual=none",  # the demo preset's default is bicubic; variants below set it
    "srdrn.val_every=1",  # the demo validates every 4 epochs
]
TAUS = [0.5, 0.9, 0.99]
QUANTILES = f"srdrn.quantiles=[{','.join(map(str, TAUS))}]"
VARIANTS = {
    "quantile": [QUANTILES],
    "residual": ["srdrn.residual=bicubic"],
    "quantile_residual": [QUANTILES, "srdrn.residual=bicubic"],
}


def quiet(*_a, **_k):
    return None


def fit(cfg, run, **kw):
    return train_srdrn(cfg, run, echo=quiet, enable_progress_bar=False, **kw)


def val_rows(run, kind):
    path = run / "logs" / kind / "version_0" / "metrics.csv"
    return [r for r in csv.DictReader(path.open()) if r.get("val/MAE")]


class _Keep(Callback):
    """Keep the trained network of a fit."""

    def on_train_end(self, trainer, pl_module):
        self.net = pl_module.net


# ------------------------------------------------------------------ routing


def module(run, *over):
    torch.manual_seed(0)
    cfg = load_config("demo", [*TINY, *over])
    return SRDRNModule(cfg, read_store_info(run / "data" / "store.zarr"))


@pytest.mark.parametrize(("taus", "median"), [([0.5, 0.95, 0.99], 0), ([0.1, 0.5, 0.9], 1)])
@pytest.mark.parametrize("heads", ["median", "all"])
def test_a_synthetic_day_reaches_only_the_median_heads_loss(quarter_jan_run, taus, median, heads):
    m = module(quarter_jan_run, f"srdrn.quantiles={taus}", f"srdrn.synthetic_heads={heads}")
    assert m.median == median
    gen = torch.Generator().manual_seed(1)
    pred = (torch.rand(3, 3, 6, 5, generator=gen) * 10).requires_grad_()
    truth = torch.rand(3, 1, 6, 5, generator=gen) * 10
    mask = torch.ones(1, 1, 6, 5, dtype=torch.bool)
    synthetic = torch.tensor([False, True, False])
    loss, terms = m.loss_terms(pred, truth, mask, synthetic)
    loss.backward()
    for k in range(3):
        reached = bool((pred.grad[1, k] != 0).any())
        assert reached == (heads == "all" or k == median), k
        assert (pred.grad[[0, 2], k] != 0).any()  # real days train every head
    # the upper heads' terms are those of the real days alone
    _, real = m.loss_terms(pred[[0, 2]], truth[[0, 2]], mask)
    for tau in taus:
        name = f"pinball_{tau!r}"
        if heads == "median" and tau != taus[median]:
            torch.testing.assert_close(terms[name], real[name], rtol=1e-6, atol=0)
        else:
            assert not torch.allclose(terms[name], real[name])


def test_routing_through_the_network(quarter_jan_run):
    """With median routing a synthetic day leaves the upper heads' own kernels untouched."""
    m = module(quarter_jan_run, "srdrn.quantiles=[0.5,0.9,0.99]")
    net = m.net.eval()  # running statistics: items do not see each other through batch norm
    with torch.no_grad():
        net.out.bias[0] = 5.0  # a wet median head: its relu passes the gradient
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 2, 4, 3, generator=gen)
    truth = torch.rand(3, 1, 48, 36, generator=gen) * 20
    mask = torch.ones(1, 1, 48, 36, dtype=torch.bool)

    def grads(rows, synthetic):
        net.zero_grad()
        m.loss(net(x[rows]), truth[rows], mask, torch.tensor(synthetic)).backward()
        return net.out.weight.grad.clone(), net.out.bias.grad.clone()

    w_real, b_real = grads([0, 2], [False, False])
    w_both, b_both = grads([0, 1, 2], [False, True, False])
    torch.testing.assert_close(w_both[1:], w_real[1:], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(b_both[1:], b_real[1:], rtol=1e-5, atol=1e-7)
    assert not torch.allclose(b_both[0], b_real[0])  # the median head learns from it


# ----------------------------------------------------------------- training


def test_short_training_moves_the_upper_heads_toward_their_levels(quarter_jan_run, tmp_path):
    run = copy_run(quarter_jan_run, tmp_path / "run")
    cfg = load_config("demo", [*TINY, QUANTILES, "srdrn.epochs=4", "srdrn.batches_per_epoch=5"])
    res = fit(cfg, run, kind="qsrdrn")
    assert res.metrics["steps"] == 20
    rows = val_rows(run, "qsrdrn")
    assert len(rows) == 4
    header = set(rows[0])
    assert {"train/loss", *(f"train/pinball_{t!r}" for t in TAUS)} <= header
    assert {"val/loss", "val/MAE", "val/MAE_tail", "val/CSI_P95"} <= header
    cover = {t: [float(r[f"val/cover_{t!r}"]) for r in rows] for t in TAUS}
    for tau in TAUS[1:]:  # observed non-exceedance climbs toward τ (it starts far below)
        first, last = cover[tau][0], cover[tau][-1]
        assert abs(last - tau) < abs(first - tau) - 0.05, (tau, cover[tau])
    for r in rows:  # monotone heads: coverage never decreases with τ
        values = [float(r[f"val/cover_{t!r}"]) for t in TAUS]
        assert values == sorted(values)

    # the streamed cover equals the cover of the predictions of the last checkpoint
    last = run / "checkpoints" / "qsrdrn" / "last.ckpt"
    pred = predict_srdrn(last, run / "data" / "store.zarr", split="val")
    ds = xr.open_zarr(run / "data" / "store.zarr", consolidated=False)
    rows_val = np.flatnonzero(ds["split"].values.astype(object) == "val")
    truth = ds["target"].values[rows_val]
    mask = ds["mask"].values.astype(bool)
    for k, tau in enumerate(TAUS):
        got = np.mean((truth <= pred.values[:, k])[:, mask])
        assert got == pytest.approx(cover[tau][-1], abs=2e-4)
    record = json.loads((run / "metrics" / "train_qsrdrn.json").read_text())
    assert record["optimizer_steps"] == 20


@pytest.mark.parametrize("heads", ["median", "all"])
def test_trains_on_an_augmented_store(quarter_jan_run, tmp_path, heads, monkeypatch):
    import downpour.downscaling.srdrn_module as sm

    seen = []
    real = sm.pinball_loss

    def spy(*args, **kwargs):
        seen.append(kwargs.get("item_weights"))
        return real(*args, **kwargs)

    monkeypatch.setattr(sm, "pinball_loss", spy)
    aug = tmp_path / "augmented.zarr"
    n = write_augmented(quarter_jan_run / "data" / "store.zarr", aug, target_factor=1.5)
    cfg = load_config(
        "demo",
        [*TINY, QUANTILES, f"srdrn.synthetic_heads={heads}", "srdrn.epochs=1",
         "srdrn.batches_per_epoch=12", "srdrn.batch_size=16"],
    )  # fmt: skip
    res = fit(cfg, copy_run(quarter_jan_run, tmp_path / "run"), store=aug, kind="aug")
    assert res.metrics["steps"] == 12 and n > 0
    weights = [w for w in seen if w is not None]
    if heads == "all":
        assert not weights
    else:  # every training batch weighs its synthetic days in the median head only
        assert weights and all(bool((w[:, 0] == 1).all()) for w in weights)
        assert any(bool((w[:, 1:] == 0).any()) for w in weights)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_checkpoint_round_trip_and_prediction(quarter_jan_run, tmp_path, variant):
    run = copy_run(quarter_jan_run, tmp_path / "run")
    cfg = load_config(
        "demo", [*TINY, *VARIANTS[variant], "srdrn.epochs=1", "srdrn.batches_per_epoch=3"]
    )
    keep = _Keep()
    fit(cfg, run, kind=variant, extra_callbacks=[keep])
    ckpt = run / "checkpoints" / variant / "last.ckpt"
    loaded = load_model(ckpt, "srdrn")
    net = loaded.net
    assert net.quantiles == tuple(cfg.srdrn.quantiles) and net.residual == cfg.srdrn.residual
    heads = len(cfg.srdrn.quantiles) or 1
    x = torch.randn(5, 2, 4, 3)
    with torch.no_grad():
        got, ref = net(x), keep.net.eval()(x)
    assert got.shape == (5, heads, 48, 36)
    assert torch.equal(got, ref)  # bit-identical after the round trip

    store = run / "data" / "store.zarr"
    pred = predict_srdrn(ckpt, store, split="test", batch_size=7)
    ds = xr.open_zarr(store, consolidated=False)
    test_rows = np.flatnonzero(ds["split"].values.astype(object) == "test")
    mask = ds["mask"].values.astype(bool)
    if cfg.srdrn.quantiles:
        assert pred.dims == ("time", "quantile", "y", "x") and pred.shape == (31, 3, 48, 36)
        np.testing.assert_array_equal(pred["quantile"].values, TAUS)
        values = pred.values[:, :, mask]
        assert (np.diff(values, axis=1) >= 0).all()
    else:
        assert pred.dims == ("time", "y", "x") and pred.shape == (31, 48, 36)
        values = pred.values[..., mask]
    assert np.isnan(pred.values[..., ~mask]).all() and (values >= 0).all()
    norm = Normalization.from_dict(loaded.info["normalization"])
    xs = torch.from_numpy(norm.normalize_x(ds["predictors"].values[test_rows]).astype(np.float32))
    with torch.no_grad():
        by_hand = net(xs).numpy()
    by_hand = by_hand if cfg.srdrn.quantiles else by_hand[:, 0]
    np.testing.assert_allclose(pred.values[..., mask], by_hand[..., mask], rtol=1e-5, atol=1e-5)


def test_a_residual_model_with_a_zero_correction_predicts_the_bicubic_baseline(
    quarter_jan_run, tmp_path
):
    m = module(quarter_jan_run, "srdrn.residual=bicubic")
    with torch.no_grad():
        m.net.out.weight.zero_()
        m.net.out.bias.zero_()
    ckpt = {"state_dict": m.state_dict()}
    m.on_save_checkpoint(ckpt)
    torch.save(ckpt, tmp_path / "best.ckpt")
    store = quarter_jan_run / "data" / "store.zarr"
    got = predict_srdrn(tmp_path / "best.ckpt", store, split="test")
    expected = predict_baseline("bicubic", store, split="test")
    # the same interpolation; the network reads the channel back through the normalisation
    np.testing.assert_allclose(got.values, expected.values, rtol=1e-5, atol=1e-5)


def test_residual_mode_needs_a_precipitation_predictor(quarter_jan_run, tmp_path):
    store = tmp_path / "no_precip.zarr"
    shutil.copytree(quarter_jan_run / "data" / "store.zarr", store)
    group = zarr.open_group(str(store), mode="r+")
    norm = json.loads(group.attrs["normalization"])
    norm["x_log1p"] = [False] * len(norm["x_log1p"])
    group.attrs["normalization"] = json.dumps(norm)
    cfg = load_config("demo", [*TINY, "srdrn.residual=bicubic"])
    with pytest.raises(DownpourError, match=r"srdrn.residual=bicubic .*no precipitation channel"):
        fit(cfg, tmp_path / "run", store=store)
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before training


def test_a_nan_head_is_named(quarter_jan_run, tmp_path, monkeypatch):
    import downpour.downscaling.srdrn_module as sm

    real = sm.pinball_loss

    def poisoned(*args, **kwargs):
        total, terms = real(*args, **kwargs)
        terms["pinball_0.99"] = terms["pinball_0.99"] * float("nan")
        return total * float("nan"), terms

    monkeypatch.setattr(sm, "pinball_loss", poisoned)
    run = copy_run(quarter_jan_run, tmp_path / "run")
    cfg = load_config("demo", [*TINY, QUANTILES, "srdrn.epochs=1", "srdrn.batches_per_epoch=2"])
    with pytest.raises(DownpourError, match=r"non-finite term\(s\): pinball_0.99"):
        fit(cfg, run)
