"""Reading radar files: accumulation to the model step, coarsening, the real MeteoSwiss file."""

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from downpour.config import VariableSource
from downpour.core.errors import DownpourError
from downpour.nowcast.radar import coarsen_radar, load_radar
from downpour.nowcast.synthetic import make_embedded_radar
from downpour.nowcast.windows import RadarSequenceDataset

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
RADAR = DATA / "radar_mch_20160711.nc"
FIVE = np.timedelta64(5, "m")


def five_min(start: str, n: int) -> np.ndarray:
    return np.datetime64(start, "ns") + np.arange(n) * FIVE


def write_radar(path: Path, times: np.ndarray, values: np.ndarray) -> VariableSource:
    h, w = values.shape[1:]
    ds = xr.Dataset(
        {"precip_rate": (("time", "y", "x"), values, {"units": "mm/h"})},
        coords={"time": times, "y": 1000.0 * np.arange(h), "x": 1000.0 * np.arange(w)},
    )
    ds.to_netcdf(path)
    return VariableSource(path=path, variable="precip_rate")


# ------------------------------------------------------------------ accumulation


@pytest.fixture
def tiny(tmp_path):
    """28 frames of 5 min, 23:45 .. 02:00, 2×3 pixels (rows equal); the 01:35 frame removed.

    column 0 = k, column 1 = 2k with NaN on frame k = 6 (00:15), column 2 = 10.
    """
    times = five_min("2021-06-30T23:45", 28)
    k = np.arange(28, dtype=np.float64)
    vals = np.repeat(np.stack([k, 2 * k, np.full(28, 10.0)], axis=-1)[:, None, :], 2, axis=1)
    vals[6, :, 1] = np.nan
    keep = np.arange(28) != 22  # 23:45 + 22·5 min = 01:35
    return write_radar(tmp_path / "tiny.nc", times[keep], vals[keep])


def test_hourly_accumulation_hand_computed(tiny):
    da = load_radar(tiny, step_minutes=60)
    # windows (end - 1 h, end]: 00:00 holds k = 0..3 (4 of 12 frames: partial -> NaN);
    # 01:00 holds k = 4..15 -> pixel 0 mean 9.5, pixel 1 NaN (NaN at k = 6), pixel 2 10;
    # 02:00 holds k = 16..27 without 22 -> 11 of 12 frames -> NaN everywhere
    expect_t = np.array(
        ["2021-07-01T00:00", "2021-07-01T01:00", "2021-07-01T02:00"], dtype="datetime64[ns]"
    )
    np.testing.assert_array_equal(da["time"].values, expect_t)
    np.testing.assert_array_equal(da["n_native"].values, [4, 12, 11])
    np.testing.assert_array_equal(da["complete"].values, [False, True, False])
    assert np.isnan(da.values[0]).all() and np.isnan(da.values[2]).all()
    np.testing.assert_allclose(da.values[1, 0], [9.5, np.nan, 10.0])
    np.testing.assert_array_equal(da.values[:, 1], da.values[:, 0])
    np.testing.assert_array_equal(da["valid"].values[1, 0], [True, False, True])
    assert not da["valid"].values[[0, 2]].any()
    assert da.attrs["step_minutes"] == 60 and da.attrs["native_step_minutes"] == 5
    assert da.attrs["units"] == "mm/h" and "window end" in da.attrs["accumulation"]


def test_accumulation_15_min(tiny):
    da = load_radar(tiny, step_minutes=15)
    # (23:30, 23:45] holds only k = 0 -> NaN; (23:45, 00:00] holds k = 1, 2, 3 -> means 2, 4, 10
    assert da["time"].values[0] == np.datetime64("2021-06-30T23:45")
    assert np.isnan(da.values[0]).all()
    np.testing.assert_allclose(da.sel(time="2021-07-01T00:00").values[0], [2.0, 4.0, 10.0])
    assert np.isnan(da.sel(time="2021-07-01T01:45").values).all()  # 01:35 missing
    assert da.sel(time="2021-07-01T02:00")["complete"].item()


def test_native_step_is_identity(tiny):
    da = load_radar(tiny, step_minutes=5)
    assert da.sizes["time"] == 27 and da["complete"].values.all()
    assert da.values[0, 0, 0] == 0.0 and np.isnan(da.values[6, 0, 1])


@pytest.mark.parametrize("step", [7, 3, 0])
def test_step_not_multiple_names_key(tiny, step):
    with pytest.raises(DownpourError, match=r"nowcast\.step_minutes"):
        load_radar(tiny, step_minutes=step)


def test_coarsen_crops_and_masks_half_nan():
    v = np.arange(25, dtype=np.float32).reshape(1, 5, 5)
    v[0, 0, 0] = np.nan  # block (0,0): 1 NaN of 4 -> mean of 1, 5, 6 = 4
    v[0, 0, 2] = v[0, 1, 2] = np.nan  # block (0,1): 2 of 4 -> kept: mean of 3, 8 = 5.5
    v[0, 2, 0] = v[0, 2, 1] = v[0, 3, 0] = np.nan  # block (1,0): 3 of 4 -> NaN
    da = xr.DataArray(
        v,
        dims=("time", "y", "x"),
        coords={
            "time": [np.datetime64("2021-07-01", "ns")],
            "y": np.arange(5.0),
            "x": 10.0 * np.arange(5),
        },
    )
    out = coarsen_radar(da, 2)
    assert out.shape == (1, 2, 2)
    # fit_grid crops the extra row/column at the end: rows/cols 0..3 are kept
    np.testing.assert_allclose(out.values[0], [[4.0, 5.5], [np.nan, (12 + 13 + 17 + 18) / 4]])
    np.testing.assert_allclose(out["y"].values, [0.5, 2.5])
    np.testing.assert_allclose(out["x"].values, [5.0, 25.0])
    np.testing.assert_array_equal(out["valid"].values[0], [[True, True], [False, True]])
    assert out.attrs["coarsen"] == 2 and "cropped rows 0+1, columns 0+1" in out.attrs["grid_fit"]


def test_embedded_through_file_and_dataset(tmp_path):
    ds = make_embedded_radar(seed=1, hours=6)
    ds.to_netcdf(tmp_path / "emb.nc")
    da = load_radar(VariableSource(path=tmp_path / "emb.nc", variable="precip_rate"), coarsen=2)
    # 00:00 .. 05:55: window 00:00 holds one frame (NaN), 01:00 .. 05:00 complete, 06:00 partial
    np.testing.assert_array_equal(
        da["complete"].values, [False, True, True, True, True, True, False]
    )
    assert da.shape == (7, 32, 32)
    data = RadarSequenceDataset(da, n_frames=3)
    assert len(data) == 4 and data[0]["inputs"].shape == (3, 32, 32)


# ------------------------------------------------------------------ real file


@pytest.fixture(scope="module")
def mch():
    src = VariableSource(path=RADAR, variable="precip_rate")
    return load_radar(src, step_minutes=5), load_radar(src, step_minutes=60, coarsen=4)


@pytest.mark.skipif(not DATA.exists(), reason=f"real test data folder {DATA} is absent")
def test_real_radar_hourly_coarsened(mch):
    raw, hourly = mch
    t = raw["time"].values
    assert t.size == 40
    assert t[0] == np.datetime64("2016-07-11T20:45") and t[-1] == np.datetime64("2016-07-12T00:00")
    # windows end on the hour: 21:00 needs 20:05-21:00 but the file starts 20:45 (4 frames)
    expect = np.array(
        ["2016-07-11T21:00", "2016-07-11T22:00", "2016-07-11T23:00", "2016-07-12T00:00"],
        dtype="datetime64[ns]",
    )
    np.testing.assert_array_equal(hourly["time"].values, expect)
    np.testing.assert_array_equal(hourly["n_native"].values, [4, 12, 12, 12])
    np.testing.assert_array_equal(hourly["complete"].values, [False, True, True, True])
    assert np.isnan(hourly.values[0]).all()  # partial window: NaN, not a 4-frame mean
    # 640×710 at factor 4: rows divide, 710 -> 708 (one column cropped each side) -> 160×177
    assert hourly.shape == (4, 160, 177)
    assert "columns 1+1" in hourly.attrs["grid_fit"]
    nodata = np.isnan(hourly.values[1:]).mean()
    assert 0.25 < nodata < 0.35
    np.testing.assert_array_equal(hourly["valid"].values, np.isfinite(hourly.values))
    # 23:00 at full resolution = plain mean of the 12 frames 22:05 .. 23:00
    sel = (t > np.datetime64("2016-07-11T22:00")) & (t <= np.datetime64("2016-07-11T23:00"))
    assert sel.sum() == 12
    full = raw.values[sel].astype(np.float64).mean(axis=0)  # NaN where any frame is NaN
    checked = 0
    for i, j in [(0, 0), (80, 80), (40, 100), (100, 60), (159, 176)]:
        block = full[4 * i : 4 * i + 4, 1 + 4 * j : 5 + 4 * j]  # column 0 cropped
        ref = np.nanmean(block) if np.isfinite(block).sum() >= 8 else np.nan
        np.testing.assert_allclose(hourly.values[2, i, j], ref, rtol=1e-5, equal_nan=True)
        checked += np.isfinite(ref)
    assert checked >= 2


@pytest.mark.skipif(not DATA.exists(), reason=f"real test data folder {DATA} is absent")
def test_real_radar_accumulation_matches_frame_mean(mch):
    raw, _ = mch
    src = VariableSource(path=RADAR, variable="precip_rate")
    hourly = load_radar(src, step_minutes=60)
    t = raw["time"].values
    sel = (t > np.datetime64("2016-07-11T21:00")) & (t <= np.datetime64("2016-07-11T22:00"))
    ref = raw.values[sel].astype(np.float64).mean(axis=0)  # NaN where any frame is NaN
    np.testing.assert_allclose(hourly.values[1], ref, rtol=1e-5, equal_nan=True)
    assert 0.25 < np.isnan(hourly.values[1]).mean() < 0.35
    with pytest.raises(DownpourError, match=r"nowcast\.step_minutes"):
        load_radar(src, step_minutes=12)
