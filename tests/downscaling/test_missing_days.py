"""Gaps in the truth: the mask comes from the training days, test gaps are counted and left out."""

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from downpour.config import load_config
from downpour.data.splits import DrySplitWarning
from downpour.downscaling.dataset import PrecipDataset
from downpour.downscaling.prepare import prepare
from downpour.downscaling.verify import verify_run

SPLITS = [
    "data.splits.train={start: 2001-01-01, end: 2001-02-28}",
    "data.splits.val={start: 2001-03-01, end: 2001-03-31}",
    "data.splits.test={start: 2001-04-01, end: 2001-04-30}",
    "data.scale_factor=6",
    "data.heavy.quantile=0.8",
]


def _target(path, *, dry_val=False):
    rng = np.random.default_rng(3)
    times = pd.date_range("2001-01-01", "2001-04-30", freq="D")
    rain = rng.gamma(0.5, 6.0, size=(times.size, 24, 24)).astype(np.float32)
    rain[rng.random(rain.shape) < 0.4] = 0.0
    if dry_val:
        rain[(times >= "2001-03-01") & (times <= "2001-03-31")] *= 0.01
    rain[70, 5, 5] = np.nan  # a val-day gap: the cell stays valid
    rain[100, 7, 9] = np.nan  # a test-day gap
    rain[10, 20, 3] = np.nan  # a training-day gap: the cell leaves the mask
    ds = xr.Dataset(
        {"pr": (("time", "lat", "lon"), rain, {"units": "mm/day"})},
        coords={
            "time": times,
            "lat": np.linspace(45.0, 47.3, 24),
            "lon": np.linspace(5.0, 7.3, 24),
        },
    )
    ds.to_netcdf(path)
    return path


def test_test_day_gaps_do_not_shape_training_and_are_counted(tmp_path):
    src = _target(tmp_path / "pr.nc")
    cfg = load_config("demo", [*SPLITS, f"data.target={{path: {src}, variable: pr}}"])
    run = tmp_path / "run"
    card = prepare(cfg, run)
    store = xr.open_zarr(run / "data" / "store.zarr", consolidated=False)
    mask = store["mask"].values
    assert not mask[20, 3] and mask[7, 9] and mask[5, 5]  # only the training gap leaves the mask
    assert card["grid"]["valid_cells"] == 24 * 24 - 1
    assert card["partially_missing_cells"] == 1
    assert {k: v["missing_cell_days"] for k, v in card["splits"].items()} == {
        "train": 0,
        "val": 1,
        "test": 1,
    }
    y = store["target"].values
    assert np.isnan(y[100, 7, 9]) and np.isnan(y[70, 5, 5])
    assert np.isfinite(y[store["split"].values == "train"]).all()
    # the day's item: the gap is no valid cell that day, and no NaN reaches a loss
    test = PrecipDataset(run / "data" / "store.zarr", "test")
    item = test[100 - 90]
    assert not item["mask"][0, 7, 9] and item["mask"][0, 7, 8]
    assert torch_isfinite(item["y"])
    # verification leaves the gap out of every score, and says so
    result = verify_run(run, baselines=("bicubic",), n_boot=20, figures=False, echo=lambda m: None)
    assert result["models"]["bicubic"]["excluded"] == {
        "missing_truth": 1,
        "nonfinite_prediction": 0,
    }
    assert result["models"]["bicubic"]["continuous"]["n_valid"] == 30 * (24 * 24 - 1) - 1


def torch_isfinite(t) -> bool:
    return bool(np.isfinite(t.numpy()).all())


def test_a_dry_validation_split_is_a_warning_that_names_it(tmp_path):
    src = _target(tmp_path / "pr.nc", dry_val=True)
    cfg = load_config("demo", [*SPLITS, f"data.target={{path: {src}, variable: pr}}"])
    with pytest.warns(DrySplitWarning, match=r"the val split is almost dry: wet fraction 0\.0"):
        card = prepare(cfg, tmp_path / "run")
    assert len(card["warnings"]) == 1 and "val split" in card["warnings"][0]
    cfg = load_config(
        "demo", [*SPLITS, f"data.target={{path: {_target(tmp_path / 'b.nc')}, variable: pr}}"]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", DrySplitWarning)
        assert prepare(cfg, tmp_path / "run2")["warnings"] == []
