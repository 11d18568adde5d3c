"""Tests of the embedded synthetic dataset (``downpour.downscaling.synthetic``).

The statistics are computed once, on the default dataset (8 years, 156x132),
over land pixel-days; wet means >= 0.1 mm/day. Reference values of the real
ERA5-Land Florida file: wet fraction 0.663, wet P95 12.9 and P99 25.9 mm/day.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.stats
import xarray as xr

from downpour.config import EmbeddedConfig
from downpour.core.errors import DownpourError
from downpour.downscaling.synthetic import make_embedded

WET = 0.1
SMALL = EmbeddedConfig(seed=7, start_year=2003, n_years=1, height=48, width=36, scale_factor=12)


@pytest.fixture(scope="module")
def default() -> tuple[xr.Dataset, xr.Dataset]:
    return make_embedded(EmbeddedConfig())


@pytest.fixture(scope="module")
def land(default):
    """Land rain as (days, land cells), plus the land mask."""
    target, _ = default
    mask = target.lsm.values == 1
    return target.precip.values[:, mask], mask


def ring_mean(power: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of an unshifted 2-D power spectrum over rings of rounded index radius.

    pysteps' convention; returns the ring means and frequencies in cycles per pixel.
    """
    m, n = power.shape
    ky = np.fft.fftfreq(m) * m
    kx = np.fft.fftfreq(n) * n
    radius = np.rint(np.hypot(ky[:, None], kx[None, :])).astype(int).ravel()
    size = max(m, n)
    n_bins = size // 2 + size % 2
    sums = np.zeros(n_bins)
    counts = np.zeros(n_bins)
    for r, p in zip(radius, power.ravel(), strict=True):  # brute force on purpose
        if r < n_bins:
            sums[r] += p
            counts[r] += 1
    return sums / counts, np.arange(n_bins) / size


def rapsd_brute(field: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum (|FFT|^2 / size) of one ``(m, n)`` field."""
    return ring_mean(np.abs(np.fft.fft2(field)) ** 2 / field.size)


@pytest.fixture(scope="module")
def wet_day_fields(default) -> np.ndarray:
    """Square (northern 132x132) crops of every 10th wet day, sea set to 0."""
    target, _ = default
    precip = target.precip.values
    wet_frac = (precip[:, target.lsm.values == 1] >= WET).mean(axis=1)
    days = np.flatnonzero(wet_frac > 0.3)[::10]
    side = min(precip.shape[1:])
    return np.nan_to_num(precip[days, -side:, :side].astype(np.float64), nan=0.0)


# ------------------------------------------------------------------ structure


def test_target_structure_and_units(default):
    target, _ = default
    assert target.precip.dims == ("time", "lat", "lon")
    assert target.precip.shape == (2922, 156, 132)  # 2001..2008, two leap days
    assert target.precip.dtype == np.float32
    assert target.precip.attrs["units"] == "mm/day"
    assert target.precip.attrs["standard_name"] == "lwe_precipitation_rate"
    assert target.elevation.attrs["units"] == "m"
    assert target.elevation.dtype == np.float32 and target.lsm.dtype == np.float32
    assert target.lat.attrs["units"] == "degrees_north"
    assert target.lon.attrs["units"] == "degrees_east"
    assert target.lat.attrs["standard_name"] == "latitude"
    time = target.time.values
    assert time.dtype == np.dtype("datetime64[ns]")
    assert time[0] == np.datetime64("2001-01-01") and time[-1] == np.datetime64("2008-12-31")
    assert np.all(np.diff(time) == np.timedelta64(1, "D"))
    assert np.datetime64("2004-02-29") in time


def test_land_sea_mask_and_elevation(default):
    target, _ = default
    lsm, elev = target.lsm.values, target.elevation.values
    assert set(np.unique(lsm)) == {0.0, 1.0}
    assert 0.35 <= lsm.mean() <= 0.55
    assert lsm[-1].all()  # mainland along the northern edge
    assert not lsm[0].any()  # the peninsula ends before the southern edge
    assert np.all(elev[lsm == 0] == 0) and np.all(elev[lsm == 1] > 0)
    assert 100 <= elev.max() <= 150
    # peninsula: land in the middle latitudes, sea on both sides of it
    row = lsm[lsm.shape[0] // 2]
    assert 0.1 < row.mean() < 0.5 and row[0] == 0 and row[-1] == 0


def test_precip_nan_over_sea_and_dry_pixels_exactly_zero(default, land):
    target, _ = default
    precip = target.precip.values
    sea = target.lsm.values == 0
    assert np.isnan(precip[:, sea]).all()
    values, _ = land
    assert np.isfinite(values).all() and values.min() == 0.0
    assert 0.2 < (values == 0).mean() < 0.6


# ----------------------------------------------------------------- statistics


def test_wet_fraction(land):
    values, _ = land
    assert 0.45 <= (values >= WET).mean() <= 0.75


def test_wet_value_quantiles(land):
    values, _ = land
    wet = values[values >= WET]
    p95, p99 = np.percentile(wet, [95, 99])
    assert 10 <= p95 <= 30
    assert 1.6 <= p99 / p95 <= 2.6
    assert 2 * p99 < wet.max() < 600


def test_gpd_tail_shape_is_positive(land):
    values, _ = land
    wet = values[values >= WET].astype(np.float64)
    p99 = np.percentile(wet, 99)
    xi, _, scale = scipy.stats.genpareto.fit(wet[wet > p99] - p99, floc=0)
    assert 0.02 <= xi <= 0.5
    assert scale > 0


def test_spectral_slope(wet_day_fields):
    assert len(wet_day_fields) >= 100
    # the mean of the fields' RAPSDs is the RAPSD of their mean power (it is linear)
    power = np.mean(np.abs(np.fft.fft2(wet_day_fields)) ** 2, axis=0) / wet_day_fields[0].size
    spectrum, freq = ring_mean(power)
    mid = slice(3, 31)  # wavelengths of ~44 to ~4 pixels
    slope = np.polyfit(np.log(freq[mid]), np.log(spectrum[mid]), 1)[0]
    assert -4.5 <= slope <= -2.0


def test_brute_force_rapsd_matches_pysteps(wet_day_fields):
    spectral = pytest.importorskip("pysteps.utils.spectral")
    field = wet_day_fields[0]
    ours, freq = rapsd_brute(field)
    theirs, their_freq = spectral.rapsd(field, fft_method=np.fft, return_freq=True)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)
    np.testing.assert_allclose(freq, their_freq)
    odd = field[:-1, :-1]  # odd size: one more ring
    np.testing.assert_allclose(rapsd_brute(odd)[0], spectral.rapsd(odd, fft_method=np.fft))


def test_seasonality(default, land):
    target, _ = default
    values, _ = land
    daily = values.mean(axis=1)
    month = target.time.dt.month.values
    summer = daily[np.isin(month, [6, 7, 8])].mean()
    winter = daily[np.isin(month, [12, 1, 2])].mean()
    assert summer >= 1.5 * winter


def test_heavy_and_dry_days(land):
    values, _ = land
    daily = values.mean(axis=1)
    assert np.percentile(daily, 95) >= 3 * np.median(daily)
    wet_frac = (values >= WET).mean(axis=1)
    assert (wet_frac < 0.05).mean() >= 0.03
    assert (wet_frac > 0.9).mean() >= 0.03  # and widespread rain days too


def test_day_to_day_persistence(land):
    values, _ = land
    daily = values.mean(axis=1)
    lag1 = np.corrcoef(daily[1:], daily[:-1])[0, 1]
    assert 0.3 < lag1 < 0.9


# ----------------------------------------------------------------- predictors


def test_predictors_structure(default):
    target, predictors = default
    assert predictors.pr.dims == ("time", "lat", "lon") == predictors.q.dims
    assert predictors.pr.shape == (2922, 13, 11)
    assert predictors.pr.dtype == np.float32 and predictors.q.dtype == np.float32
    assert predictors.pr.attrs["units"] == "mm/day"
    assert predictors.q.attrs["units"] == "kg kg-1"
    np.testing.assert_array_equal(predictors.time.values, target.time.values)
    assert np.isfinite(predictors.pr.values).all() and predictors.pr.values.min() >= 0
    q = predictors.q.values
    assert 0.005 < np.percentile(q, 1) and np.percentile(q, 99) < 0.02
    assert q.min() > 0


def test_pr_is_the_noisy_block_mean_of_the_rain(default, land):
    target, predictors = default
    pr = predictors.pr.values
    values, _ = land
    assert np.corrcoef(pr.mean(axis=(1, 2)), values.mean(axis=1))[0, 1] > 0.9
    # over all-land blocks the block mean of the target is the full field's
    f = 12
    lsm = target.lsm.values.reshape(13, f, 11, f)
    all_land = lsm.min(axis=(1, 3)) == 1
    assert all_land.sum() >= 3
    coarse = target.precip.values.reshape(-1, 13, f, 11, f).mean(axis=(2, 4))
    ok = all_land[None] & (coarse > 1.0)
    log_ratio = np.log(pr[ok] / coarse[ok])
    assert abs(np.median(log_ratio)) < 0.03
    assert 0.05 < log_ratio.std() < 0.2


def test_q_correlates_with_rain(default):
    _, predictors = default
    r = np.corrcoef(predictors.q.values.ravel(), predictors.pr.values.ravel())[0, 1]
    assert r > 0.3


# --------------------------------------------------- determinism, grids, errors


def test_same_seed_is_identical_and_other_seed_differs():
    a_target, a_pred = make_embedded(SMALL)
    b_target, b_pred = make_embedded(SMALL)
    xr.testing.assert_identical(a_target, b_target)
    xr.testing.assert_identical(a_pred, b_pred)
    c_target, c_pred = make_embedded(SMALL.model_copy(update={"seed": 8}))
    land = a_target.lsm.values == 1
    assert not np.array_equal(a_target.precip.values[:, land], c_target.precip.values[:, land])
    assert not np.array_equal(a_pred.q.values, c_pred.q.values)
    np.testing.assert_array_equal(a_target.lsm.values, c_target.lsm.values)  # same geography


def test_coordinates_are_ascending_block_means():
    cfg = SMALL.model_copy(update={"scale_factor": 6})
    target, predictors = make_embedded(cfg)
    lat, lon = target.lat.values, target.lon.values
    assert np.all(np.diff(lat) > 0) and np.all(np.diff(lon) > 0)
    assert lat[0] == pytest.approx(24.5) and lat[-1] == pytest.approx(31.0)
    assert lon[0] == pytest.approx(-87.6) and lon[-1] == pytest.approx(-80.0)
    expected_lat = [lat[6 * i : 6 * i + 6].mean() for i in range(8)]
    expected_lon = [lon[6 * j : 6 * j + 6].mean() for j in range(6)]
    np.testing.assert_allclose(predictors.lat.values, expected_lat, rtol=0, atol=1e-12)
    np.testing.assert_allclose(predictors.lon.values, expected_lon, rtol=0, atol=1e-12)
    assert predictors.lat.attrs["units"] == "degrees_north"
    assert predictors.lon.attrs["standard_name"] == "longitude"


def test_small_grid():
    target, predictors = make_embedded(SMALL)
    assert target.precip.shape == (365, 48, 36)
    assert predictors.pr.shape == (365, 4, 3) and predictors.q.shape == (365, 4, 3)
    assert target.time.values[0] == np.datetime64("2003-01-01")
    assert 0.35 <= target.lsm.values.mean() <= 0.55
    values = target.precip.values[:, target.lsm.values == 1]
    assert 0.4 <= (values >= WET).mean() <= 0.8
    # the low-res rain follows the land rain of its mostly-land blocks
    land_frac = target.lsm.values.reshape(4, 12, 3, 12).mean(axis=(1, 3))
    blocks = target.precip.values.reshape(365, 4, 12, 3, 12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-sea blocks
        coarse = np.nanmean(blocks, axis=(2, 4))
    mostly_land = np.broadcast_to(land_frac >= 0.5, coarse.shape)
    assert mostly_land.any()
    r = np.corrcoef(coarse[mostly_land], predictors.pr.values[mostly_land])[0, 1]
    assert r > 0.9


def test_leap_year_has_366_days():
    target, _ = make_embedded(SMALL.model_copy(update={"start_year": 2004}))
    assert target.sizes["time"] == 366


def test_grid_not_divisible_by_scale_factor_is_an_error():
    with pytest.raises(DownpourError, match=r"data\.embedded\.height=50.*scale_factor=12"):
        make_embedded(SMALL.model_copy(update={"height": 50}))
