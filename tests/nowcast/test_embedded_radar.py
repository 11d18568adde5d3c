"""The embedded radar generator: deterministic, realistic wet fraction, moving cells."""

import numpy as np
import pytest
import xarray as xr

from downpour.nowcast.synthetic import make_embedded_radar

FIVE = np.timedelta64(5, "m")


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
