"""`downpour nowcast forecast` writing under SIGKILL: the old forecast or the new one, whole."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from _faults import leftovers, needs_sigkill, run_killed, tree
from downpour.nowcast.forecast import persistence_forecast, write_forecast

pytestmark = needs_sigkill

NAMES = {"zarr": "forecast.zarr", "netcdf": "forecast.nc"}
KILLS = {
    "zarr": "kill_in_chunk_write(3, part='/precip_rate/c/')",  # the third lead of six
    "netcdf": "import xarray as xr, os; kill_at(xr.Dataset, 'to_netcdf', before=lambda real, "
    "ds, p, *a, **k: (real(ds, p, *a, **k), os.truncate(p, os.path.getsize(p) // 2)))",
}


def forecast(steps: int) -> xr.Dataset:
    """A persistence forecast of ``steps`` hourly leads over random radar frames (20×16)."""
    rng = np.random.default_rng(steps)
    times = np.datetime64("2021-07-01T00:00", "ns") + np.arange(4) * np.timedelta64(1, "h")
    frames = rng.gamma(0.5, 2.0, (4, 20, 16)).astype(np.float32)
    da = xr.DataArray(frames, dims=("time", "y", "x"),
                      coords={"time": times, "y": 1e3 * np.arange(20), "x": 1e3 * np.arange(16)},
                      attrs={"step_minutes": 60, "units": "mm/h"})  # fmt: skip
    return persistence_forecast(da, init=times[-1], steps=steps)


def opened(path) -> xr.Dataset:
    if path.is_dir():
        return xr.open_zarr(path, consolidated=False, chunks=None).load()
    return xr.load_dataset(path)


@pytest.mark.parametrize("fmt", list(NAMES))
def test_killed_forecast_write_keeps_the_old_forecast(tmp_path, fmt):
    path = tmp_path / NAMES[fmt]
    write_forecast(forecast(2), path)
    before = tree(path)
    source = tmp_path / "new.src.nc"
    forecast(6).to_netcdf(source)
    run_killed(f"""
        import xarray as xr
        from downpour.nowcast.forecast import write_forecast
        {KILLS[fmt]}
        write_forecast(xr.load_dataset({str(source)!r}), {str(path)!r})
    """)
    assert tree(path) == before
    assert len(leftovers(path)) == 1
    new = xr.load_dataset(source)
    write_forecast(new, path)
    ref = write_forecast(new, tmp_path / "reference" / NAMES[fmt])
    xr.testing.assert_identical(opened(path), opened(ref))
    assert opened(path).sizes["lead_time"] == 6
    assert leftovers(path) == []
