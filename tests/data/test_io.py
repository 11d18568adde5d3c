from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from downpour.config import DimNames, VariableSource
from downpour.data.io import load_field, time_step_hours

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"{SHARED} absent (real data not shared here)"
)


def src(path, variable, **kw):
    return VariableSource(path=path, variable=variable, **kw)


def make(nt=4, ny=5, nx=6, seed=0):
    rng = np.random.default_rng(seed)
    vals = rng.gamma(0.6, 4.0, size=(nt, ny, nx)).astype(np.float32)
    times = pd.date_range("2001-01-01", periods=nt, freq="D")
    lat = 40.0 + 0.25 * np.arange(ny)
    lon = -75.0 + 0.25 * np.arange(nx)
    return vals, times, lat, lon


def test_any_dimension_order_and_descending_latitude(tmp_path):
    vals, times, lat, lon = make()
    # stored as (lon, lat, time) with latitude descending, like the ERA5-Land file
    stored = vals[:, ::-1, :].transpose(2, 1, 0)
    ds = xr.Dataset(
        {"tp": (("longitude", "latitude", "time"), stored, {"units": "mm d-1"})},
        coords={"longitude": lon, "latitude": lat[::-1], "time": times},
    )
    ds.to_netcdf(tmp_path / "f.nc")
    da = load_field(src(tmp_path / "f.nc", "tp"), "data.target", target_units="mm/day")
    assert da.dims == ("time", "y", "x")
    np.testing.assert_allclose(da.lat.values, lat)
    np.testing.assert_allclose(da.lon.values, lon)
    np.testing.assert_array_equal(da.values, vals)


def test_descending_longitude_flips_x(tmp_path):
    vals, times, lat, lon = make()
    ds = xr.Dataset(
        {"pr": (("time", "lat", "lon"), vals[:, :, ::-1], {"units": "mm/day"})},
        coords={"lat": lat, "lon": lon[::-1], "time": times},
    )
    ds.to_netcdf(tmp_path / "f.nc")
    da = load_field(src(tmp_path / "f.nc", "pr"), "data.target", target_units="mm/day")
    np.testing.assert_allclose(da.lon.values, lon)
    np.testing.assert_array_equal(da.values, vals)


def test_two_dimensional_coordinates_and_units(tmp_path):
    vals, times, lat, lon = make()
    la, lo = np.meshgrid(lat[::-1], lon, indexing="ij")  # rows north → south
    ds = xr.Dataset(
        {
            "precip": (("time", "row", "col"), vals[:, ::-1] / 86400.0, {"units": "kg m-2 s-1"}),
            "nav_lat": (("row", "col"), la),
            "nav_lon": (("row", "col"), lo),
        },
        coords={"time": times},
    )
    ds.to_netcdf(tmp_path / "f.nc")
    da = load_field(src(tmp_path / "f.nc", "precip"), "data.target", target_units="mm/day")
    assert da.lat.dims == ("y", "x")
    assert da.lat.values[0, 0] < da.lat.values[-1, 0]
    np.testing.assert_allclose(da.values, vals, rtol=1e-5)
    assert da.attrs["units"] == "mm/day" and da.attrs["units_in_file"] == "kg m-2 s-1"


def test_packed_integers_with_fill_value_in_zarr(tmp_path):
    vals, times, lat, lon = make()
    vals = np.round(vals, 2)
    vals[1, 2, 3] = np.nan
    ds = xr.Dataset(
        {"rr": (("time", "lat", "lon"), vals, {"units": "mm/h"})},
        coords={"lat": lat, "lon": lon, "time": times},
    )
    enc = {"rr": {"dtype": "uint16", "scale_factor": 0.01, "_FillValue": 65535}}
    ds.to_netcdf(tmp_path / "p.nc", encoding=enc)
    ds.to_zarr(tmp_path / "p.zarr", encoding=enc, consolidated=False)
    assert xr.open_dataset(tmp_path / "p.nc", decode_cf=False).rr.dtype == np.uint16
    for path in (tmp_path / "p.nc", tmp_path / "p.zarr"):
        da = load_field(src(path, "rr"), "data.target", target_units="mm/day")
        assert np.isnan(da.values[1, 2, 3]) and np.isnan(da.values).sum() == 1
        np.testing.assert_allclose(da.values[0], vals[0] * 24.0, atol=0.01 * 24 / 2 + 1e-4)


def test_amount_per_step_uses_time_axis(tmp_path):
    vals, _, lat, lon = make(nt=6)
    times = pd.date_range("2001-01-01", periods=6, freq="6h")
    ds = xr.Dataset(
        {"tp": (("time", "latitude", "longitude"), vals / 1000.0, {"units": "m"})},
        coords={"latitude": lat, "longitude": lon, "time": times},
    )
    ds.to_netcdf(tmp_path / "f.nc")
    da = load_field(src(tmp_path / "f.nc", "tp"), "data.target", target_units="mm/day")
    np.testing.assert_allclose(da.values, vals * 4.0, rtol=1e-5)  # mm per 6 h × 4 = mm/day
    assert da.attrs["step_hours"] == 6.0


def test_explicit_dimension_names(tmp_path):
    vals, times, lat, lon = make()
    ds = xr.Dataset(
        {"v": (("t0", "a", "b"), vals, {"units": "mm/day"}), "la": ("a", lat), "lo": ("b", lon)},
        coords={"t0": times},
    )
    ds.to_netcdf(tmp_path / "f.nc")
    s = src(tmp_path / "f.nc", "v", dims=DimNames(time="t0", y="a", x="b", lat="la", lon="lo"))
    da = load_field(s, "data.target", target_units="mm/day")
    np.testing.assert_array_equal(da.values, vals)


def test_units_override(tmp_path):
    vals, times, lat, lon = make()
    ds = xr.Dataset(
        {"pr": (("time", "lat", "lon"), vals, {"units": "degC"})},
        coords={"lat": lat, "lon": lon, "time": times},
    )
    ds.to_netcdf(tmp_path / "f.nc")
    da = load_field(
        src(tmp_path / "f.nc", "pr", units="mm/h"), "data.target", target_units="mm/day"
    )
    np.testing.assert_allclose(da.values, vals * 24, rtol=1e-6)


def test_static_field_drops_singleton_time(tmp_path):
    _, times, lat, lon = make()
    ds = xr.Dataset(
        {"lsm": (("time", "lat", "lon"), np.ones((1, 5, 6)))},
        coords={"lat": lat[::-1], "lon": lon, "time": times[:1]},
    )
    ds.to_netcdf(tmp_path / "s.nc")
    da = load_field(src(tmp_path / "s.nc", "lsm"), "data.mask", expect="static")
    assert da.dims == ("y", "x") and da.shape == (5, 6)


def test_time_step_hours():
    t = pd.date_range("2001-01-01", periods=5, freq="1h").values
    assert time_step_hours(t) == 1.0
    assert time_step_hours(np.delete(t, 2)) == 1.0  # one missing step
    assert time_step_hours(t[:1]) is None


def wet_stats(v):
    v = v[np.isfinite(v)]
    return (v >= 0.1).mean(), np.percentile(v, 95), np.percentile(v, 99), v.max()


@needs_shared
def test_era5land_file_orientation_and_statistics():
    path = SHARED / "era5land_quebec_1970.nc"
    da = load_field(src(path, "tp"), "data.target", target_units="mm/day")
    assert da.shape == (365, 30, 30)
    assert da.lat.values[0] == pytest.approx(44.1) and da.lat.values[-1] == pytest.approx(47.0)
    assert np.all(np.diff(da.lon.values) > 0)
    raw = xr.open_dataset(path).tp  # stored (longitude, latitude, time), latitude descending
    for t, la, lo in [(0, 47.0, -75.0), (200, 44.1, -72.1), (100, 45.5, -73.3)]:
        iy = int(np.argmin(np.abs(da.lat.values - la)))
        ix = int(np.argmin(np.abs(da.lon.values - lo)))
        expect = float(raw.isel(time=t).sel(latitude=la, longitude=lo, method="nearest"))
        assert float(da.values[t, iy, ix]) == pytest.approx(expect)
    wet, p95, p99, vmax = wet_stats(da.values)
    assert wet == pytest.approx(0.663, abs=5e-4)
    assert p95 == pytest.approx(12.9, abs=0.05) and p99 == pytest.approx(25.9, abs=0.05)
    assert vmax == pytest.approx(103.4, abs=0.05)
    assert str(da.time.values[0])[:10] == "1970-01-01"


@needs_shared
def test_stageiv_two_dimensional_lat_lon():
    path = SHARED / "stageiv_florence_2018.nc"
    da = load_field(
        src(path, "Total_precipitation_surface_1_Hour_Accumulation"),
        "data.target",
        target_units="mm/h",
    )
    assert da.shape == (23, 118, 87) and da.lat.dims == ("y", "x")
    assert np.all(np.diff(da.lat.values[:, 40]) > 0) and np.all(np.diff(da.lon.values[60, :]) > 0)
    assert da.attrs["step_hours"] == 1.0
    wet, p95, p99, vmax = wet_stats(da.values)
    assert wet == pytest.approx(0.571, abs=5e-4)
    assert p95 == pytest.approx(19.5, abs=0.05) and p99 == pytest.approx(38.9, abs=0.05)
    assert vmax == pytest.approx(163.8, abs=0.051)  # README rounds 163.75
    daily = load_field(
        src(path, "Total_precipitation_surface_1_Hour_Accumulation"),
        "data.target",
        target_units="mm/day",
    )
    np.testing.assert_allclose(daily.values, da.values * 24, rtol=1e-6)


@needs_shared
def test_radar_packed_uint16_with_nodata():
    path = SHARED / "radar_mch_20160711.nc"
    da = load_field(src(path, "precip_rate"), "data.target", target_units="mm/h")
    assert da.shape == (40, 640, 710)
    assert 0.25 < np.isnan(da.values).mean() < 0.35  # about 30 % no-data
    assert np.all(np.diff(da.y.values) > 0)  # stored north-up (yorigin upper): flipped to ascending
    wet, p95, p99, vmax = wet_stats(da.values)
    assert wet == pytest.approx(0.133, abs=5e-4)
    assert p95 == pytest.approx(2.31, abs=0.01) and p99 == pytest.approx(8.50, abs=0.01)
    assert vmax == pytest.approx(115.5, abs=0.05)


def test_a_noleap_calendar_reads_as_real_dates_and_360_day_is_refused(tmp_path):
    """GCM calendars: a year without 29 February names real days; a 360-day year does not."""
    from downpour.core.errors import DownpourError

    vals, _, lat, lon = make(nt=800)
    noleap = xr.date_range("2071-01-01", periods=800, freq="D", calendar="noleap", use_cftime=True)
    ds = xr.Dataset(
        {"pr": (("time", "lat", "lon"), vals / 86400.0, {"units": "kg m-2 s-1"})},
        coords={"time": noleap, "lat": lat, "lon": lon},
    )
    ds.to_netcdf(tmp_path / "noleap.nc")
    da = load_field(src(tmp_path / "noleap.nc", "pr"), "data.target", target_units="mm/day")
    days = pd.DatetimeIndex(da["time"].values)
    assert days[0] == pd.Timestamp("2071-01-01") and days[-1] == pd.Timestamp("2073-03-11")
    assert not ((days.month == 2) & (days.day == 29)).any() and days.size == 800
    np.testing.assert_allclose(da.values, vals, rtol=1e-5)  # kg m-2 s-1 × 86400 = mm/day
    d360 = xr.date_range("2071-01-01", periods=800, freq="D", calendar="360_day", use_cftime=True)
    ds.assign_coords(time=d360).to_netcdf(tmp_path / "d360.nc")
    with pytest.raises(DownpourError, match=r"'360_day' calendar.*convert_calendar"):
        load_field(src(tmp_path / "d360.nc", "pr"), "data.target", target_units="mm/day")
