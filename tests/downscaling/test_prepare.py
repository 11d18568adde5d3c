import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from downpour.config import load_config
from downpour.data.coarsen import block_mean
from downpour.data.normalize import Normalization
from downpour.downscaling.prepare import prepare
from downpour.downscaling.store import open_store


def write_case(tmp, seed=0, test_scale=1.0, sea=True, predictors=False):
    """Two years (2001 train/val, 2002 test) of daily rain on a 12×12 grid."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2001-01-01", "2002-12-31", freq="D")
    lat = 30.0 + 0.5 * np.arange(12)
    lon = -90.0 + 0.5 * np.arange(12)
    y = rng.gamma(0.5, 6.0, size=(times.size, 12, 12)).astype(np.float32)
    y[rng.random(y.shape) < 0.3] = 0.0
    test = times.year == 2002
    y[test] *= test_scale
    if sea:
        y[:, :3, :5] = np.nan  # a sea corner, NaN on every day
    ds = xr.Dataset(
        {"pr": (("time", "lat", "lon"), y, {"units": "mm/day"})},
        coords={"time": times, "lat": lat, "lon": lon},
    )
    ds.to_netcdf(tmp / "target.nc")
    text = (
        f"name: t\ndata:\n  target: {{path: {tmp / 'target.nc'}, variable: pr, kind: precip}}\n"
        "  scale_factor: 4\n  heavy: {statistic: mean, quantile: 0.9}\n"
        "  splits:\n    train: {start: 2001-01-01, end: 2001-10-31}\n"
        "    val: {start: 2001-11-01, end: 2001-12-31}\n    test: {years: [2002]}\n"
    )
    if predictors:
        q = rng.normal(size=(times.size, 3, 3)).astype(np.float32) * 2.0 + 5.0
        q[test] *= test_scale
        lr = xr.Dataset(
            {"q": (("time", "lat", "lon"), q, {"units": "1"})},
            coords={
                "time": times,
                "lat": lat.reshape(3, 4).mean(1),
                "lon": lon.reshape(3, 4).mean(1),
            },
        )
        lr.to_netcdf(tmp / "lr.nc")
        text += f"  predictors:\n    - {{path: {tmp / 'lr.nc'}, variable: q}}\n"
    (tmp / "c.yaml").write_text(text)
    return y, times


def test_store_layout_and_card_values(tmp_path):
    y, times = write_case(tmp_path)
    card = prepare(load_config(tmp_path / "c.yaml"), tmp_path / "run")
    ds = open_store(tmp_path / "run")
    assert ds["target"].shape == (730, 12, 12) and ds["predictors"].shape == (730, 1, 3, 3)
    assert ds["target"].encoding["chunks"] == (1, 12, 12)
    mask = ds["mask"].values
    assert mask.sum() == 144 - 15 and not mask[:3, :5].any()
    # target stored unchanged on valid cells and 0 elsewhere
    np.testing.assert_array_equal(ds["target"].values[:, mask], y[:, mask])
    assert (ds["target"].values[:, ~mask] == 0).all()
    # derived predictor = NaN-aware block mean of the target
    np.testing.assert_allclose(
        ds["predictors"].values[:, 0], np.nan_to_num(block_mean(y, 4)), rtol=1e-6
    )
    split = ds["split"].values
    assert (
        (split == "train").sum() == 304
        and (split == "val").sum() == 61
        and (split == "test").sum() == 365
    )
    train = split == "train"
    wet = y[train][:, mask]
    wet = wet[wet > 0.1]
    for k, q in (("P90", 90), ("P95", 95), ("P99", 99)):
        assert card["thresholds"][k] == pytest.approx(np.percentile(wet, q))
    assert card["wet_fraction"] == pytest.approx((y[train][:, mask] >= 0.1).mean())
    # heavy days: domain mean at or above its training P90
    stat = y[:, mask].mean(axis=1)
    thr = np.quantile(stat[train], 0.9)
    np.testing.assert_array_equal(ds["is_heavy"].values, stat >= thr)
    assert card["heavy"]["counts"]["train"] == int((stat[train] >= thr).sum())
    assert card["heavy"]["threshold"] == pytest.approx(thr)
    assert card["splits"]["test"]["start"] == "2002-01-01"
    assert json.loads((tmp_path / "run" / "data" / "card.json").read_text()) == card
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert list(ds["static_channel"].values) == ["mask", "lat", "lon"]
    np.testing.assert_allclose(ds["static"].values[1][:, 0], np.linspace(-1, 1, 12), atol=1e-6)


def test_normalisation_uses_training_days_only(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_case(tmp_path / "a", test_scale=1.0, predictors=True)
    write_case(tmp_path / "b", test_scale=7.0, predictors=True)  # only the test year differs
    ca = prepare(load_config(tmp_path / "a" / "c.yaml"), tmp_path / "a" / "run")
    cb = prepare(load_config(tmp_path / "b" / "c.yaml"), tmp_path / "b" / "run")
    na = Normalization.from_json(
        (tmp_path / "a" / "run" / "data" / "normalization.json").read_text()
    )
    nb = Normalization.from_json(
        (tmp_path / "b" / "run" / "data" / "normalization.json").read_text()
    )
    assert na == nb
    assert (
        ca["thresholds"] == cb["thresholds"]
        and ca["heavy"]["threshold"] == cb["heavy"]["threshold"]
    )
    assert ca["splits"]["test"]["mean"] != cb["splits"]["test"]["mean"]
    # the statistics equal a direct computation on the training days
    ds = open_store(tmp_path / "a" / "run")
    train = ds["split"].values == "train"
    q = ds["predictors"].values[train, 0]
    assert na.x_mean[0] == pytest.approx(q.mean(), rel=1e-5)
    assert na.x_std[0] == pytest.approx(q.std(), rel=1e-4)
    assert na.x_log1p == (False,)


def test_normalization_round_trip_numpy_and_torch():
    import torch

    n = Normalization(("pr", "q"), (True, False), (1.0, 5.0), (2.0, 0.5), 0.3, 0.9)
    x = np.array([[[np.e - 1.0]], [[6.0]]], dtype=np.float32)  # log1p(e-1) = 1 -> (1-1)/2 = 0
    np.testing.assert_allclose(n.normalize_x(x)[:, 0, 0], [0.0, 2.0], atol=1e-6)
    np.testing.assert_allclose(n.denormalize_x(n.normalize_x(x)), x, rtol=1e-5)
    t = torch.from_numpy(x)
    torch.testing.assert_close(n.normalize_x(t), torch.from_numpy(n.normalize_x(x)))
    y = torch.tensor([0.0, 1.0, 10.0])
    torch.testing.assert_close(n.denormalize_y(n.normalize_y(y)), y)
    assert n.normalize_y(torch.tensor(0.0)) == 0.0
    assert Normalization.from_json(n.to_json()) == n


def test_failure_leaves_nothing_behind(tmp_path):
    write_case(tmp_path)
    cfg = load_config(tmp_path / "c.yaml", ["data.predictors=[{path: /missing.nc, variable: q}]"])
    with pytest.raises(Exception, match="not found"):
        prepare(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").rglob("*"))


def test_rerun_replaces_store_atomically(tmp_path):
    write_case(tmp_path)
    cfg = load_config(tmp_path / "c.yaml")
    prepare(cfg, tmp_path / "run")
    prepare(cfg.model_copy(update={"name": "again"}), tmp_path / "run")
    assert json.loads((tmp_path / "run" / "data" / "card.json").read_text())["name"] == "again"
    leftovers = [p.name for p in (tmp_path / "run" / "data").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_embedded_dataset_goes_through_the_file_path(tmp_path):
    cfg = load_config(
        None,
        [
            "data.embedded.n_years=3",
            "data.embedded.height=48",
            "data.embedded.width=36",
            "data.splits.train.years=[2001]",
            "data.splits.val.years=[2002]",
            "data.splits.test.years=[2003]",
        ],
    )
    card = prepare(cfg, tmp_path / "run")
    assert (tmp_path / "run" / "data" / "source" / "embedded_hr.nc").is_file()
    ds = open_store(tmp_path / "run")
    assert ds["target"].shape == (365 * 3, 48, 36) and ds["predictors"].shape == (365 * 3, 2, 4, 3)
    assert list(ds["channel"].values) == ["pr", "q"]
    assert list(ds["static_channel"].values) == ["mask", "elevation", "lat", "lon"]
    src = xr.open_dataset(tmp_path / "run" / "data" / "source" / "embedded_hr.nc")
    np.testing.assert_array_equal(ds["mask"].values, src["lsm"].values > 0.5)
    assert card["splits"]["train"]["days"] == 365 and card["splits"]["test"]["days"] == 365
    norm = Normalization.from_json(ds.attrs["normalization"])
    assert norm.x_log1p == (True, False)
