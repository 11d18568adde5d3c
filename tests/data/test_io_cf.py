"""Axes found by CF metadata (cf-xarray) where no common name gives them away."""

import numpy as np
import xarray as xr

from downpour.config import VariableSource
from downpour.data.io import load_field


def test_cf_metadata_identifies_axes_and_latlon(tmp_path):
    t, h, w = 3, 4, 5
    values = np.arange(t * h * w, dtype=np.float32).reshape(t, h, w)
    lat2 = np.broadcast_to(np.linspace(50.0, 47.0, h)[:, None], (h, w)).copy()  # descending
    lon2 = np.broadcast_to(np.linspace(5.0, 9.0, w)[None, :], (h, w)).copy()
    ds = xr.Dataset(
        {
            "rain": (("step", "gy", "gx"), values, {"units": "mm/day"}),
            # 2-D latitude/longitude with unusual names: found by their CF units / standard_name
            "geo_a": (("gy", "gx"), lat2, {"units": "degrees_north"}),
            "geo_b": (("gy", "gx"), lon2, {"standard_name": "longitude"}),
        },
        coords={
            "step": ("step", np.arange(t), {"axis": "T", "units": "days since 2001-01-01"}),
            "gy": ("gy", np.arange(h, dtype=float), {"axis": "Y"}),
            "gx": ("gx", np.arange(w, dtype=float), {"standard_name": "projection_x_coordinate"}),
        },
    )
    path = tmp_path / "cf.nc"
    ds.to_netcdf(path)
    da = load_field(
        VariableSource(path=path, variable="rain"), "data.target", target_units="mm/day"
    )
    assert da.dims == ("time", "y", "x")
    np.testing.assert_array_equal(
        da["time"].values, np.array(["2001-01-01", "2001-01-02", "2001-01-03"], "datetime64[ns]")
    )
    # latitude made ascending along y: the rows are flipped
    np.testing.assert_allclose(da["lat"].values[:, 0], [47.0, 48.0, 49.0, 50.0])
    np.testing.assert_allclose(da["lon"].values[0], [5.0, 6.0, 7.0, 8.0, 9.0])
    np.testing.assert_array_equal(da.values, values[:, ::-1, :])
