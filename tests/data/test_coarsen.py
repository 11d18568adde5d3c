import numpy as np
import pytest
import xarray as xr

from downpour.core.errors import DownpourError
from downpour.data.coarsen import block_mean, coarsen_coords, fit_grid


def field(h, w, t=2):
    vals = np.arange(t * h * w, dtype=np.float32).reshape(t, h, w)
    return xr.DataArray(
        vals,
        dims=("time", "y", "x"),
        coords={"lat": ("y", 40.0 + 0.1 * np.arange(h)), "lon": ("x", -75.0 + 0.1 * np.arange(w))},
    )


def test_block_mean_hand_computed():
    a = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]], dtype=np.float32)
    # blocks: [1,2,5,6] -> 3.5, [3,4,7,8] -> 5.5, [9,10,13,14] -> 11.5, [11,12,15,16] -> 13.5
    np.testing.assert_allclose(block_mean(a, 2), [[3.5, 5.5], [11.5, 13.5]])
    np.testing.assert_allclose(block_mean(a, 4), [[8.5]])


def test_block_mean_nan_aware():
    a = np.array(
        [[1, np.nan, 3, 4], [np.nan, 5, np.nan, np.nan], [np.nan] * 4, [np.nan, np.nan, 2, 6]]
    )
    out = block_mean(a, 2)
    # (1+5)/2 = 3; (3+4)/2 = 3.5; all-NaN block -> NaN; (2+6)/2 = 4
    np.testing.assert_allclose(out, [[3.0, 3.5], [np.nan, 4.0]])


def test_block_mean_batched_equals_loop():
    rng = np.random.default_rng(0)
    a = rng.gamma(0.5, 5.0, size=(3, 2, 12, 18)).astype(np.float32)
    a[a < 0.3] = np.nan
    out = block_mean(a, 6)
    ref = np.empty((3, 2, 2, 3))
    for i in range(2):
        for j in range(3):
            ref[..., i, j] = np.nanmean(a[..., 6 * i : 6 * i + 6, 6 * j : 6 * j + 6], axis=(-2, -1))
    np.testing.assert_allclose(out, ref, rtol=1e-5)


def test_fit_grid_divisible_is_untouched():
    da = field(12, 8)
    out, fit = fit_grid(da, 4, "error")
    assert out is da and fit.mode == "none"


def test_fit_grid_error_names_fix():
    with pytest.raises(
        DownpourError, match=r"data.grid_fit.*'crop' \(to 12×12\).*'pad' \(to 16×16\)"
    ):
        fit_grid(field(13, 14), 4, "error")


def test_fit_grid_crop_is_centred():
    da = field(13, 14)
    out, fit = fit_grid(da, 4, "crop")
    assert out.shape == (2, 12, 12)
    assert fit.before == (0, 1) and fit.after == (1, 1)
    np.testing.assert_array_equal(out.values, da.values[:, 0:12, 1:13])
    np.testing.assert_allclose(out.lat.values, da.lat.values[:12])


def test_fit_grid_pad_with_nan_and_extends_coords():
    da = field(13, 14)
    out, fit = fit_grid(da, 4, "pad")
    assert out.shape == (2, 16, 16)
    assert fit.before == (1, 1) and fit.after == (2, 1)
    assert np.isnan(out.values[:, 0, :]).all() and np.isnan(out.values[:, -2:, :]).all()
    np.testing.assert_array_equal(out.values[:, 1:14, 1:15], da.values)
    np.testing.assert_allclose(np.diff(out.lat.values), 0.1, atol=1e-9)
    assert out.lat.values[0] == pytest.approx(39.9)


def test_grid_smaller_than_factor():
    with pytest.raises(DownpourError, match="smaller than the scale factor 12"):
        fit_grid(field(8, 30), 12, "crop")


def test_coarsen_coords_are_block_means():
    da = field(12, 8)
    c = coarsen_coords(da, 4)
    np.testing.assert_allclose(c["lat_lr"][1], [40.15, 40.55, 40.95])
    np.testing.assert_allclose(c["lon_lr"][1], [-74.85, -74.45])
