"""Forecast datasets: the model's rollout, persistence, forecasting from a checkpoint, writing."""

import numpy as np
import pytest
import xarray as xr

from downpour.core.errors import DownpourError
from downpour.nowcast.forecast import (
    forecast,
    persistence_forecast,
    run_forecast,
    write_forecast,
)

# ------------------------------------------------------------------ rollout


def test_rollout_feeds_predictions_back_and_writes_coordinates(radar, stub):
    da = radar()
    ds = run_forecast(stub(lambda x: x + 1.0), da, init="2021-07-01T03:00", steps=3,
                      n_frames=2, transform="none")  # fmt: skip
    last = 4.0  # frame 3 holds 3 + 1
    np.testing.assert_allclose(ds["precip_rate"].values[:, 1, 1], [last + 1, last + 2, last + 3])
    assert np.isnan(ds["precip_rate"].values[:, 0, 0]).all()  # outside the radar domain
    assert ds["precip_rate"].dims == ("lead_time", "y", "x")
    assert ds["precip_rate"].attrs["units"] == "mm/h"
    assert ds["lead_time"].values.astype("timedelta64[h]").astype(int).tolist() == [1, 2, 3]
    assert str(ds["time"].values[0])[:16] == "2021-07-01T04:00"
    assert ds["x"].values.tolist() == [0.0, 2000.0, 4000.0, 6000.0]
    assert ds["domain_max"].values.tolist() == [5.0, 6.0, 7.0]


def test_rollout_in_log_space_keeps_rain_non_negative(radar, stub):
    ds = run_forecast(stub(lambda x: x - 100.0), radar(), init="2021-07-01T03:00", steps=2,
                      n_frames=2, transform="log")  # fmt: skip
    assert np.nanmin(ds["precip_rate"].values) == 0.0


def test_persistence_forecast_repeats_the_init_frame():
    times = np.datetime64("2021-07-01T00:00", "ns") + np.arange(2) * np.timedelta64(1, "h")
    obs = np.array([[[0.0, 2.0], [6.0, 0.0]], [[0.0, 0.0], [12.0, 3.0]]], dtype=np.float32)
    da = xr.DataArray(obs, dims=("time", "y", "x"), coords={"time": times},
                      attrs={"step_minutes": 60})  # fmt: skip
    fc = persistence_forecast(da, init=times[0], steps=1)
    np.testing.assert_array_equal(fc["precip_rate"].values[0], obs[0])
    # its scores (LeadScores, beats_persistence): tests/metrics/test_leadtime.py


# ------------------------------------------------------------------ checkpoint API


def test_forecast_from_checkpoint_and_store_round_trip(trained_nowcast, tmp_path):
    ds = forecast(trained_nowcast, init="2021-07-01T20:00", hours=2)
    assert ds.sizes == {"lead_time": 2, "y": 24, "x": 24}
    assert ds.attrs["checkpoint"] == str(trained_nowcast)
    to_end = forecast(trained_nowcast, init="2021-07-01T20:00", hours=None)
    assert to_end.sizes["lead_time"] == 3  # 21:00 .. 23:00, the last frame
    for name in ("f.zarr", "f.nc"):
        path = write_forecast(ds, tmp_path / name)
        zarr = name.endswith("zarr")
        back = xr.open_dataset(path, **({"engine": "zarr", "consolidated": False} if zarr else {}))
        np.testing.assert_allclose(back["precip_rate"].values, ds["precip_rate"].values)
        assert back["precip_rate"].attrs["units"] == "mm/h"
        assert back["lead_time"].dtype.kind == "m" and back["time"].dtype.kind == "M"
        back.close()
    with pytest.raises(DownpourError, match=r"whole number of 60-min steps"):
        forecast(trained_nowcast, init="2021-07-01T20:00", hours=1.5)
