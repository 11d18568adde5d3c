"""The time axis: gaps, windows of consecutive frames, and the datasets that serve them."""

import numpy as np
import torch
import xarray as xr

from downpour.data.rain import DBR_FLOOR, temporal_encoding
from downpour.nowcast.windows import (
    NowcastWindows,
    RadarSequenceDataset,
    find_gaps,
    sequence_windows,
)

FIVE = np.timedelta64(5, "m")


def five_min(start: str, n: int) -> np.ndarray:
    return np.datetime64(start, "ns") + np.arange(n) * FIVE


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


def test_window_items_and_temporal_encoding_of_each_target(hourly):
    da = hourly(8)
    ds = NowcastWindows(da, n_frames=3, steps=2, transform="none")
    assert len(ds) == 4  # 8 - (3 + 2) + 1
    item = ds[1]
    assert item["inputs"][:, 0, 0].tolist() == [1.0, 2.0, 3.0]
    assert item["targets"][:, 0, 0].tolist() == [4.0, 5.0]
    expect = temporal_encoding(da["time"].values[4:6])
    np.testing.assert_allclose(item["temporal"].numpy(), expect)
    assert int(item["time"]) == da["time"].values[4].astype(np.int64)


def test_windows_spanning_a_gap_or_without_valid_cells_are_dropped(hourly):
    da = hourly(10)
    da = da.isel(time=[i for i in range(10) if i != 5])  # 05:00 missing
    ds = NowcastWindows(da, n_frames=2, steps=1, transform="log")
    # windows of 3 consecutive hours: 0-2, 1-3, 2-4, 6-8, 7-9
    assert len(ds) == 5 and ds.report["dropped_for_gaps"] == 2
    da2 = hourly(6)
    da2[3] = np.nan
    assert len(NowcastWindows(da2, n_frames=2, steps=1, transform="log")) == 1  # only 0-2
