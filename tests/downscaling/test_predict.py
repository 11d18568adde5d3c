"""Predicting on a store: baselines fitted on real training days only, a period's days only."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import xarray as xr
import zarr

from _shared import record_days, write_augmented
from downpour.core.errors import DownpourError
from downpour.downscaling.predict import fit_baseline, predict_baseline
from downpour.models.baselines import BCSD, bicubic


def split_rows(path, name):
    ds = xr.open_zarr(path, consolidated=False)
    return np.flatnonzero(np.asarray(ds["split"].values).astype(object) == name)


def test_predict_bicubic_on_a_store(quarter_jan_run):
    store = quarter_jan_run / "data" / "store.zarr"
    pred = predict_baseline("bicubic", store, split="test")
    ds = xr.open_zarr(store, consolidated=False)
    rows = split_rows(store, "test")
    assert pred.dims == ("time", "y", "x") and pred.shape == (31, 48, 36)
    np.testing.assert_array_equal(pred["time"].values, ds["time"].values[rows])
    assert {"lat", "lon"} <= set(pred.coords) and pred.attrs["units"] == "mm/day"
    mask = ds["mask"].values.astype(bool)
    assert np.isnan(pred.values[:, ~mask]).all() and np.isfinite(pred.values[:, mask]).all()
    expected = bicubic(ds["predictors"].values[rows, 0], 12)
    np.testing.assert_allclose(pred.values[:, mask], expected[:, mask])


def test_bcsd_is_fitted_on_real_training_days_only(quarter_jan_run, tmp_path):
    """Changing the test days or adding synthetic training days leaves the fit unchanged."""
    store = quarter_jan_run / "data" / "store.zarr"
    other = tmp_path / "other.zarr"
    shutil.copytree(store, other)
    group = zarr.open_group(str(other), mode="r+")
    for name in ("val", "test"):
        rows = split_rows(store, name)
        group["target"][rows[0] : rows[-1] + 1] = group["target"][rows[0] : rows[-1] + 1] * 10
        group["predictors"][rows[0] : rows[-1] + 1] = (
            group["predictors"][rows[0] : rows[-1] + 1] * 10
        )
    base, changed = fit_baseline("bcsd", store), fit_baseline("bcsd", other)
    np.testing.assert_array_equal(base.c_table, changed.c_table)
    np.testing.assert_array_equal(base.y_table, changed.y_table)
    assert base.c_table.shape[0] == 90  # 90 training days, each a quantile level

    augmented = tmp_path / "augmented.zarr"
    write_augmented(store, augmented, target_factor=3)  # heavy training days ×3, synthetic
    fitted = fit_baseline("bcsd", augmented)
    np.testing.assert_array_equal(fitted.y_table, base.y_table)

    a = predict_baseline("bcsd", store)
    b = predict_baseline("bcsd", other)
    assert a.shape == b.shape == (31, 48, 36)
    assert float(np.nanmean(b)) > 3 * float(np.nanmean(a))  # test days changed, mapping did not


# ------------------------------------------------- predicting only a period's days


@pytest.mark.parametrize("name", ["bicubic", "bcsd"])
def test_baseline_predicts_only_the_selected_days(quarter_jan_run, monkeypatch, name):
    from downpour.downscaling.predict import predict_baseline
    from downpour.models.baselines import Bicubic

    store = quarter_jan_run / "data" / "store.zarr"
    whole = predict_baseline(name, store, split="test")
    days = whole["time"].values[10:20].astype("datetime64[D]")  # another unit than the store's
    seen = record_days(monkeypatch, {"bicubic": Bicubic, "bcsd": BCSD}[name], "predict")
    part = predict_baseline(name, store, split="test", times=days, batch_size=4)
    assert seen == [4, 4, 2]  # only the ten days, in batches
    np.testing.assert_array_equal(part["time"].values, whole["time"].values[10:20])
    np.testing.assert_array_equal(part.values, whole.values[10:20])  # exactly
    with pytest.raises(DownpourError, match="1 selected day.* not days of the 'test' split.*"
                       "the first 2001-01-05"):  # fmt: skip
        predict_baseline(name, store, times=np.array(["2002-01-03", "2001-01-05"], "M8[D]"))


def test_srdrn_predicts_only_the_selected_days(quarter_jan_run, srdrn_ckpt, monkeypatch):
    from downpour.downscaling.predict import predict_srdrn
    from downpour.models.srdrn import SRDRN

    store = quarter_jan_run / "data" / "store.zarr"
    whole = predict_srdrn(srdrn_ckpt, store, split="test", device="cpu")
    days = whole["time"].values[[3, 4, 5, 6, 7, 20, 30]]
    seen = record_days(monkeypatch, SRDRN, "forward")
    part = predict_srdrn(srdrn_ckpt, store, split="test", times=days, batch_size=3, device="cpu")
    assert seen == [3, 3, 1]
    np.testing.assert_array_equal(part["time"].values, days)
    mask = np.isfinite(whole.values[0])
    assert mask.any() and not mask.all()
    np.testing.assert_allclose(part.values, whole.values[[3, 4, 5, 6, 7, 20, 30]],
                               rtol=1e-5, atol=1e-6, equal_nan=True)  # fmt: skip
