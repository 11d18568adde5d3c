"""The embedded dataset: deterministic, Florida-like synthetic daily rain.

:func:`make_embedded` builds a high-res land-only rain target with static
fields (elevation, land-sea mask) and low-res predictors (coarsened rain and a
moisture-like field), so that every step of the toolkit can run without a
download, through the same code path as real data.

How a day's rain is made (everything vectorised over ``(time, y, x)``):

1. a latent Gaussian random field with a power-law spectrum (amplitude
   ``(k^2 + k0^2)^(-beta/4)``, beta = 3) filtered from white noise in Fourier
   space, with AR(1) day-to-day persistence (:func:`scipy.signal.lfilter`
   along time), unit variance everywhere;
2. a day-level threshold (seasonal cycle plus an AR(1) anomaly) cuts the
   field into wet storm areas whose extent varies from day to day; some days
   are dry over most of the domain;
3. the exceedance, mapped through the Gaussian survival function to a
   uniform conditional on being wet, becomes an intensity through a
   generalised Pareto quantile function (shape 0.12, heavy tail, zero at the
   edge of a wet area), scaled by a lognormal day-level storminess that is
   larger on widely wet days, by the seasonal cycle (wet summers) and by a
   modest orographic factor.

Rain is generated over land and sea alike; the target keeps land only (NaN
over sea, as ERA5-Land), the predictor ``pr`` is the block mean of the full
field with 10 % multiplicative noise. Everything is drawn from one
``np.random.default_rng(cfg.seed)``, so the same config gives identical data.

Examples
--------
>>> from downpour.config import DataConfig, EmbeddedConfig, VariableSource
>>> target, predictors = make_embedded(EmbeddedConfig(n_years=1, height=48, width=36))
>>> target.precip.shape, predictors.pr.shape
((365, 48, 36), (365, 4, 3))
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.fft
import xarray as xr
from scipy.signal import lfilter
from scipy.special import ndtr

from downpour.config import DataConfig, EmbeddedConfig, VariableSource
from downpour.core.errors import DownpourError
from downpour.core.files import atomic_file

__all__ = ["embedded_sources", "make_embedded"]

LAT_RANGE = (24.5, 31.0)
LON_RANGE = (-87.6, -80.0)

_BLOCK_DAYS = 365  # days generated at once (bounds memory to ~30 MB per array)
_BETA = 3.0  # power-law exponent of the latent field's spectrum
_K0 = 2.0  # spectral roll-off, cycles per domain (finite large-scale variance)
_PHI_FIELD = 0.6  # lag-1 autocorrelation of the latent field
_PHI_DAY = 0.5  # lag-1 autocorrelation of the day-level drivers
_THRESH_MEAN, _THRESH_SEASON, _THRESH_SD = -0.55, 0.7, 1.3  # wet-area threshold
_GPD_SHAPE, _GPD_SCALE = 0.12, 2.6  # intensity quantile function (mm/day)
_STORM_SD, _STORM_RHO = 0.5, 0.6  # log-storminess sd, its link to wet extent
_SEASON_AMP = 0.3  # relative seasonal amplitude of intensities
_PEAK_DOY = 205  # day of year of the wet-season peak (late July)
_OROG_GAIN = 0.3  # intensity gain at the highest point
_PR_NOISE = 0.1  # log-sd of the multiplicative noise on the low-res rain
_DTYPE = np.float32


def _coords(n: int, lo: float, hi: float) -> np.ndarray:
    """``n`` ascending cell centres spanning ``[lo, hi]``, shape ``(n,)``."""
    return np.linspace(lo, hi, n)


def _block_mean(a: np.ndarray, factor: int, axes: tuple[int, ...]) -> np.ndarray:
    """Mean over non-overlapping blocks of ``factor`` cells along ``axes``.

    Each axis in ``axes`` must be divisible by ``factor``; its length becomes
    ``length // factor``.
    """
    shape: list[int] = []
    mean_axes: list[int] = []
    for i, n in enumerate(a.shape):
        if i in axes:
            shape += [n // factor, factor]
            mean_axes.append(len(shape) - 1)
        else:
            shape.append(n)
    return a.reshape(shape).mean(axis=tuple(mean_axes))


def _geography(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Peninsula land-sea mask and elevation, both ``(height, width)`` float32.

    A mainland strip along the northern edge and a peninsula reaching south
    from it, with a coastline roughened by fixed smooth sinusoids; the shape
    is defined in unit-square coordinates, so any grid size draws the same
    geography. Elevation is 0 m over sea and rises inland to a ridge along
    the peninsula's spine and towards the north (about 130 m at most).
    """
    v = ((np.arange(height) + 0.5) / height)[:, None]  # 0 south .. 1 north
    u = ((np.arange(width) + 0.5) / width)[None, :]  # 0 west .. 1 east
    coast_lat = 0.74
    rough = (
        0.020 * np.sin(2 * np.pi * (3.0 * u + 1.7 * v) + 0.4)
        + 0.014 * np.sin(2 * np.pi * (5.0 * v - 2.3 * u) + 1.9)
        + 0.008 * np.sin(2 * np.pi * (9.0 * u + 7.0 * v) + 2.6)
    )
    centre = 0.66 + 0.2 * (coast_lat - v) / coast_lat  # spine drifts east southwards
    half_width = 0.17 * np.sqrt(np.clip((v - 0.06) / (coast_lat - 0.06), 0.0, 1.0))
    d_main = v - coast_lat
    d_pen = half_width - np.abs(u - centre) + 2.0 * np.minimum(v - 0.08, 0.0)  # clean tip
    dist = np.maximum(d_main, d_pen) + rough  # > 0 on land, ~distance to coast
    land = dist > 0
    spine = np.exp(-(((u - centre) / (0.6 * half_width + 1e-3)) ** 2)) * (v < coast_lat + 0.05)
    north = np.clip((v - coast_lat) / (1 - coast_lat), 0.0, 1.0)
    north = north * (0.8 + 0.2 * np.sin(9.0 * u + 0.3))  # hills along the mainland
    relief = np.maximum(spine, 0.85 * north)
    taper = np.clip(dist / 0.05, 0.05, 1.0)
    elevation = np.where(land, (10.0 + 120.0 * relief) * taper, 0.0)
    return land.astype(_DTYPE), elevation.astype(_DTYPE)


def _spectral_filter(height: int, width: int) -> np.ndarray:
    """Amplitude ``(k^2 + k0^2)^(-beta/4)`` on the ``rfft2`` grid, shape ``(H, W//2+1)``.

    ``k`` is in cycles per domain (longest side); the filter is scaled so that
    filtered unit white noise has unit variance.
    """
    size = max(height, width)
    ky = np.fft.fftfreq(height)[:, None] * size
    full = (ky**2 + (np.fft.fftfreq(width)[None, :] * size) ** 2 + _K0**2) ** (-_BETA / 4)
    half = (ky**2 + (np.fft.rfftfreq(width)[None, :] * size) ** 2 + _K0**2) ** (-_BETA / 4)
    return (half / np.sqrt(np.mean(full**2))).astype(_DTYPE)


def _ar1(x: np.ndarray, phi: float, zi: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Unit-variance AR(1) along axis 0 of white noise ``x`` (shape ``(T, ...)``).

    ``zi`` (shape ``(1, ...)``) carries the state from a previous block; when
    it is ``None`` the series starts stationary. Returns the series and the
    state for the next block.
    """
    if zi is None:
        x = x.copy()
        x[0] /= np.sqrt(1 - phi**2)
        zi = np.zeros((1, *x.shape[1:]), dtype=x.dtype)
    b = np.array([np.sqrt(1 - phi**2)], dtype=x.dtype)
    a = np.array([1.0, -phi], dtype=x.dtype)
    return lfilter(b, a, x, axis=0, zi=zi)


def _day_of_year(time: np.ndarray) -> np.ndarray:
    """Day of year (0 = Jan 1) of ``datetime64[D]`` days, shape ``(T,)``."""
    return (time - time.astype("datetime64[Y]")).astype(int)


def _unit_intensity(field: np.ndarray, thresh: np.ndarray) -> np.ndarray:
    """Rain of unit scale where ``field`` (``(T, H, W)``) exceeds ``thresh`` (``(T,)``).

    The exceedance becomes a uniform through the Gaussian survival function
    conditional on being wet, ``s = P(Z > z) / P(Z > c)``, and an intensity
    through the generalised Pareto quantile ``(s^-xi - 1) / xi``: zero at
    the edge of a wet area, heaviest at the storm cores. Dry cells are 0.
    Only wet cells are evaluated (the Gaussian CDF dominates the cost).
    """
    wet = field > thresh[:, None, None]
    day = np.repeat(np.arange(field.shape[0]), wet.sum(axis=(1, 2)))
    surv = np.minimum(ndtr(-field[wet]) / ndtr(-thresh)[day], 1)
    out = np.zeros_like(field)
    out[wet] = (surv**-_GPD_SHAPE - 1) / _GPD_SHAPE
    return out


def _simulate(
    cfg: EmbeddedConfig, elevation: np.ndarray, time: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw the rain fields and predictors.

    Returns
    -------
    rain
        ``(T, H, W)`` float32, mm/day, over land and sea.
    pr
        ``(T, H/f, W/f)`` float32, block mean of ``rain`` with noise.
    q
        ``(T, H/f, W/f)`` float32, specific-humidity-like, kg/kg.
    """
    rng = np.random.default_rng(cfg.seed)
    n_days, (height, width), f = time.size, elevation.shape, cfg.scale_factor
    season = np.cos(2 * np.pi * (_day_of_year(time) - _PEAK_DOY) / 365.25).astype(_DTYPE)
    wet_anom, storm_noise = _ar1(rng.standard_normal((2, n_days)).T.astype(_DTYPE), _PHI_DAY)[0].T
    thresh = _THRESH_MEAN - _THRESH_SEASON * season + _THRESH_SD * wet_anom
    log_storm = _STORM_SD * (-_STORM_RHO * wet_anom + np.sqrt(1 - _STORM_RHO**2) * storm_noise)
    day_scale = _GPD_SCALE * np.exp(log_storm - _STORM_SD**2 / 2) * (1 + _SEASON_AMP * season)
    orog = 1 + _OROG_GAIN * elevation / max(float(elevation.max()), 1.0)
    amp = _spectral_filter(height, width)

    rain = np.empty((n_days, height, width), dtype=_DTYPE)
    latent_lr = np.empty((n_days, height // f, width // f), dtype=_DTYPE)
    state = None
    for start in range(0, n_days, _BLOCK_DAYS):  # a few blocks bound the memory use
        days = slice(start, min(start + _BLOCK_DAYS, n_days))
        noise = rng.standard_normal((days.stop - start, height, width), dtype=_DTYPE)
        noise, state = _ar1(noise, _PHI_FIELD, state)
        spec = scipy.fft.rfft2(noise, workers=-1)
        spec *= amp
        field = scipy.fft.irfft2(spec, s=(height, width), workers=-1)
        np.multiply(_unit_intensity(field, thresh[days]), day_scale[days, None, None], rain[days])
        rain[days] *= orog
        latent_lr[days] = _block_mean(field, f, (1, 2))

    shape_lr = latent_lr.shape
    pr_noise = np.exp(_PR_NOISE * rng.standard_normal(shape_lr, dtype=_DTYPE) - _PR_NOISE**2 / 2)
    pr = _block_mean(rain, f, (1, 2)) * pr_noise
    q = (
        0.0115
        + 0.0035 * season[:, None, None]
        + 0.0012 * latent_lr
        - 0.0008 * wet_anom[:, None, None]
        + 0.0004 * rng.standard_normal(shape_lr, dtype=_DTYPE)
    )
    return rain, pr.astype(_DTYPE), np.maximum(q, 0.002).astype(_DTYPE)


def make_embedded(cfg: EmbeddedConfig) -> tuple[xr.Dataset, xr.Dataset]:
    """Build the embedded dataset: a high-res target and low-res predictors.

    Parameters
    ----------
    cfg
        Seed, first year, number of full calendar years, grid size and scale
        factor. ``height`` and ``width`` must be multiples of ``scale_factor``.

    Returns
    -------
    target
        ``precip`` (time, lat, lon) float32 mm/day, NaN over sea and >= 0 over
        land (exactly 0 when dry); ``elevation`` (lat, lon) m; ``lsm`` (lat,
        lon) 1 land / 0 sea. ``time`` is daily from Jan 1 of ``start_year``
        (leap days included); ``lat``/``lon`` ascending, ``height`` and
        ``width`` points over 24.5..31.0 N, 87.6..80.0 W.
    predictors
        On the ``(height // f, width // f)`` grid whose ``lat``/``lon`` are the
        block means of the high-res coordinates: ``pr`` (time, lat, lon) mm/day,
        the block mean of the rain over land and sea with multiplicative
        noise; ``q`` (time, lat, lon) kg kg-1, a smooth moisture-like field
        correlated with the rain, about 0.005-0.02.

    Raises
    ------
    DownpourError
        If the grid is not a multiple of the scale factor.
    """
    f = cfg.scale_factor
    for key, n in (("height", cfg.height), ("width", cfg.width)):
        if n % f:
            raise DownpourError(
                f"data.embedded.{key}={n} is not a multiple of data.embedded.scale_factor={f}; "
                f"use {n - n % f} or {n - n % f + f}"
            )
    time = np.arange(
        np.datetime64(f"{cfg.start_year:04d}-01-01"),
        np.datetime64(f"{cfg.start_year + cfg.n_years:04d}-01-01"),
        dtype="datetime64[D]",
    )
    lsm, elevation = _geography(cfg.height, cfg.width)
    rain, pr, q = _simulate(cfg, elevation, time)
    rain[:, lsm == 0] = np.nan

    lat = _coords(cfg.height, *LAT_RANGE)
    lon = _coords(cfg.width, *LON_RANGE)
    lat_attrs = {"units": "degrees_north", "standard_name": "latitude", "axis": "Y"}
    lon_attrs = {"units": "degrees_east", "standard_name": "longitude", "axis": "X"}
    time_attrs = {"standard_name": "time", "axis": "T"}
    dims = ("time", "lat", "lon")
    info = {"source": "downpour embedded synthetic generator", "seed": cfg.seed}

    def coords(lat_: np.ndarray, lon_: np.ndarray) -> dict[str, xr.Variable]:
        return {
            "time": xr.Variable("time", time.astype("datetime64[ns]"), time_attrs),
            "lat": xr.Variable("lat", lat_, lat_attrs),
            "lon": xr.Variable("lon", lon_, lon_attrs),
        }

    target = xr.Dataset(
        {
            "precip": (
                dims,
                rain,
                {
                    "units": "mm/day",
                    "standard_name": "lwe_precipitation_rate",
                    "long_name": "daily precipitation (land only)",
                },
            ),
            "elevation": (("lat", "lon"), elevation, {"units": "m", "long_name": "elevation"}),
            "lsm": (("lat", "lon"), lsm, {"units": "1", "long_name": "land-sea mask"}),
        },
        coords=coords(lat, lon),
        attrs={"title": "embedded synthetic target", **info},
    )
    predictors = xr.Dataset(
        {
            "pr": (dims, pr, {"units": "mm/day", "long_name": "coarse daily precipitation"}),
            "q": (dims, q, {"units": "kg kg-1", "standard_name": "specific_humidity"}),
        },
        coords=coords(_block_mean(lat, f, (0,)), _block_mean(lon, f, (0,))),
        attrs={"title": "embedded synthetic predictors", "coarsening_factor": f, **info},
    )
    return target, predictors


def embedded_sources(data: DataConfig, folder: Path) -> DataConfig:
    """Write the embedded dataset as NetCDF files and point a data config at them.

    The embedded data then takes the same code path as real files.

    Parameters
    ----------
    data
        Data config whose ``target`` is None.
    folder
        Where ``embedded_hr.nc`` and ``embedded_lr.nc`` are written.
    """
    hr_path, lr_path = folder / "embedded_hr.nc", folder / "embedded_lr.nc"
    target, predictors = make_embedded(data.embedded)
    for ds, path in ((target, hr_path), (predictors, lr_path)):
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as tmp:
            ds.to_netcdf(tmp)
    return data.model_copy(
        update={
            "target": VariableSource(path=hr_path, variable="precip", kind="precip"),
            "predictors": [
                VariableSource(path=lr_path, variable="pr", kind="precip"),
                VariableSource(path=lr_path, variable="q", kind="other"),
            ],
            "mask": VariableSource(path=hr_path, variable="lsm"),
            "elevation": VariableSource(path=hr_path, variable="elevation"),
            "scale_factor": data.embedded.scale_factor,
        }
    )
