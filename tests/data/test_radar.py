from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from downpour.config import VariableSource
from downpour.nowcast.radar import (
    DBR_FLOOR,
    RadarSequenceDataset,
    coarsen_radar,
    find_gaps,
    inverse_rain_transform,
    load_radar,
    make_embedded_radar,
    rain_transform,
    sequence_windows,
    temporal_encoding,
)
from downpour.core.errors import DownpourError

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


# ------------------------------------------------------------------ gaps and windows


def test_gaps_and_windows_exact_counts():
    times = five_min("2021-07-01T00:00", 20)
    times = np.delete(times, [10, 15, 16])  # 00:50 alone; 01:15-01:20 together
    gaps = find_gaps(times, FIVE)
    assert gaps == [
        (np.datetime64("2021-07-01T00:50", "ns"), np.datetime64("2021-07-01T00:50", "ns")),
        (np.datetime64("2021-07-01T01:15", "ns"), np.datetime64("2021-07-01T01:20", "ns")),
    ]
    starts, report = sequence_windows(times, 3, FIVE)
    # 17 times -> 14 index windows of 4; bad steps after index 9 (00:45 -> 00:55) and
    # index 13 (01:10 -> 01:25); windows i..i+3 spanning them: i = 7, 8, 9 and i = 11, 12, 13
    assert report["total"] == 14 and report["kept"] == 8 and report["dropped_for_gaps"] == 6
    np.testing.assert_array_equal(starts, [0, 1, 2, 3, 4, 5, 6, 10])
    assert report["gaps"] == [
        ("2021-07-01T00:50:00", "2021-07-01T00:50:00"),
        ("2021-07-01T01:15:00", "2021-07-01T01:20:00"),
    ]
    for s in starts:
        assert (np.diff(times[s : s + 4]) == FIVE).all()


def test_windows_without_gaps_and_too_short():
    times = five_min("2021-07-01T00:00", 6)
    starts, report = sequence_windows(times, 2, FIVE)
    np.testing.assert_array_equal(starts, [0, 1, 2, 3])
    assert report == {"total": 4, "kept": 4, "dropped_for_gaps": 0, "gaps": []}
    starts, report = sequence_windows(times[:2], 4, FIVE)
    assert starts.size == 0 and report["total"] == 0
    assert find_gaps(times, FIVE) == []


# ------------------------------------------------------------------ transforms


def test_transform_round_trips():
    rate = np.array([0.1, 0.5, 1.0, 7.3, 80.0, 250.0])
    for kind in ("log", "dbr", "none"):
        back = inverse_rain_transform(rain_transform(rate, kind), kind)
        np.testing.assert_allclose(back, rate, rtol=1e-12)
        t = torch.tensor(rate, dtype=torch.float32)
        back_t = inverse_rain_transform(rain_transform(t, kind), kind)
        torch.testing.assert_close(back_t, t, rtol=1e-5, atol=0)
    np.testing.assert_allclose(rain_transform(np.array([0.0, np.e - 1]), "log"), [0.0, 1.0])


def test_dbr_values_and_floor():
    rate = np.array([0.0, 0.05, 0.0999, 0.1, 1.0, 10.0, 100.0, np.nan])
    dbr = rain_transform(rate, "dbr")
    np.testing.assert_allclose(dbr[:7], [-15.0, -15.0, -15.0, -10.0, 0.0, 10.0, 20.0])
    assert np.isnan(dbr[7])
    np.testing.assert_allclose(inverse_rain_transform(dbr[:3], "dbr"), [0.0, 0.0, 0.0])
    assert DBR_FLOOR == -15.0
    with pytest.raises(ValueError, match="valid: 'log', 'dbr', 'none'"):
        rain_transform(rate, "sqrt")


def test_temporal_encoding_known_times():
    enc = temporal_encoding(
        np.array(["2021-07-01T06:00", "2021-01-01T00:00", "2021-01-01T18:00"], "datetime64[ns]")
    )
    day = 2 * np.pi * (181 + 0.25) / 365.25  # 1 July 2021 is day 182 (0-based 181)
    np.testing.assert_allclose(enc[0], [1.0, 0.0, np.sin(day), np.cos(day)], atol=1e-6)
    np.testing.assert_allclose(enc[1], [0.0, 1.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(enc[2, :2], [-1.0, 0.0], atol=1e-6)


# ------------------------------------------------------------------ dataset


def hourly_da(n=8, h=3, w=4):
    times = np.datetime64("2021-07-01T02:00", "ns") + np.arange(n) * np.timedelta64(1, "h")
    vals = np.full((n, h, w), np.e - 1, dtype=np.float32)  # log1p -> 1
    vals[:, 2, 3] = 0.0
    vals[1, 0, 0] = np.nan  # input frame 1 of item 0
    vals[4, 1, 1] = np.nan  # target of item 0
    return xr.DataArray(vals, dims=("time", "y", "x"), coords={"time": times})


def test_dataset_item():
    ds = RadarSequenceDataset(hourly_da(), n_frames=4, transform="log")
    assert len(ds) == 4 and ds.report["kept"] == 4
    item = ds[0]
    assert item["inputs"].shape == (4, 3, 4) and item["inputs"].dtype == torch.float32
    assert item["target"].shape == (1, 3, 4) and item["valid"].shape == (1, 3, 4)
    assert item["valid"].dtype == torch.bool
    expect_valid = np.ones((1, 3, 4), bool)
    expect_valid[0, 0, 0] = expect_valid[0, 1, 1] = False
    np.testing.assert_array_equal(item["valid"].numpy(), expect_valid)
    assert item["inputs"][1, 0, 0] == 0.0 and item["target"][0, 1, 1] == 0.0  # no-data -> no rain
    torch.testing.assert_close(item["inputs"][0, 0, 0], torch.tensor(1.0))
    assert item["inputs"][0, 2, 3] == 0.0
    assert not torch.isnan(item["inputs"]).any() and not torch.isnan(item["target"]).any()
    # target is index 4 = 06:00 -> hour angle π/2
    assert item["time"].dtype == torch.int64
    assert item["time"].item() == np.datetime64("2021-07-01T06:00", "ns").astype(np.int64)
    torch.testing.assert_close(item["temporal"][:2], torch.tensor([1.0, 0.0]), atol=1e-6, rtol=0)
    assert ds[1]["valid"].numpy().sum() == 10  # inputs 1..4 hold both NaNs
    assert ds[2]["valid"].numpy().sum() == 11  # inputs 2..5 hold only the NaN at (1, 1)


def test_dataset_dbr_fill_and_gap():
    da = hourly_da().isel(time=[0, 1, 2, 3, 4, 6, 7])  # 08:00 missing
    ds = RadarSequenceDataset(da, n_frames=2, transform="dbr")
    # 7 times -> 5 windows of 3; bad step between indices 4 and 5 -> i = 3, 4 dropped
    assert ds.report["total"] == 5 and ds.report["dropped_for_gaps"] == 2
    np.testing.assert_array_equal(ds.starts, [0, 1, 2])
    item = ds[0]
    assert item["inputs"][1, 0, 0] == DBR_FLOOR  # no-data filled with the no-rain value
    assert item["inputs"][0, 2, 3] == DBR_FLOOR
    torch.testing.assert_close(
        item["inputs"][0, 0, 0], torch.tensor(10 * np.log10(np.e - 1)).float()
    )


# ------------------------------------------------------------------ embedded


@pytest.fixture(scope="module")
def embedded():
    return make_embedded_radar(seed=3, hours=24)


def test_embedded_deterministic_and_layout(embedded):
    again = make_embedded_radar(seed=3, hours=24)
    xr.testing.assert_identical(embedded, again)
    other = make_embedded_radar(seed=4, hours=24)
    assert not np.array_equal(other["precip_rate"].values, embedded["precip_rate"].values)
    da = embedded["precip_rate"]
    assert da.dims == ("time", "y", "x") and da.shape == (288, 64, 64)
    assert da.attrs["units"] == "mm/h" and da.dtype == np.float32
    assert da["time"].values[0] == np.datetime64("2021-07-01T00:00")
    assert (np.diff(da["time"].values) == FIVE).all()
    assert (np.diff(da["y"].values) > 0).all() and (np.diff(da["x"].values) > 0).all()
    assert da["y"].attrs["units"] == "m"
    assert np.isfinite(da.values).all() and (da.values >= 0).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_embedded_wet_fraction(seed):
    f = make_embedded_radar(seed=seed, hours=24)["precip_rate"].values
    wet = (f >= 0.1).mean()
    assert 0.05 <= wet <= 0.4
    assert 5.0 <= f.max() <= 200.0


def test_embedded_cells_move(embedded):
    f = embedded["precip_rate"].values
    u, v = embedded.attrs["steering_u_ms"], embedded.attrs["steering_v_ms"]
    px_h = 3600.0 / embedded.attrs["grid_spacing_m"]
    sy, sx = round(v * px_h), round(u * px_h)
    assert abs(sy) + abs(sx) >= 5  # at least 10 km/h
    a, b = f[:-12], f[12:]  # t and t + 1 h

    def corr(p, q):
        return np.corrcoef(p.ravel(), q.ravel())[0, 1]

    shifted = corr(b, np.roll(a, (sy, sx), axis=(1, 2)))
    still = corr(b, a)
    assert shifted > still + 0.2


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
