"""Low-res predictors of a store: read, converted, aligned in time and regridded (or derived).

:func:`load_predictors` is the step of ``downpour prepare`` that turns the
``data.predictors`` files (or the target itself, coarsened, in the "perfect
prognosis" set-up) into the ``(time, channel, y_lr, x_lr)`` array of the store.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from downpour.config import DataConfig
from downpour.core.errors import DownpourError
from downpour.data.coarsen import block_mean, regrid_to
from downpour.data.io import describe, load_field

__all__ = ["align_time", "load_predictors"]


def align_time(times: np.ndarray, daily: bool) -> np.ndarray:
    """Return ``times`` as nanosecond stamps, truncated to the day for daily data."""
    return times.astype("datetime64[D]").astype("datetime64[ns]") if daily else times


def load_predictors(
    data: DataConfig, y_da: xr.DataArray, times: np.ndarray, daily: bool, fitted_coords: dict
) -> tuple[np.ndarray, list[str], list[bool]]:
    """Low-res predictors ``(T, C, h, w)`` on the days ``times``, their names and log1p flags.

    Without predictor files the target is block-mean coarsened (perfect
    prognosis; blocks with no valid cell carry no rain); each file is read,
    unit-converted (precipitation), aligned to the target's days and, on its
    own grid, regridded onto the low-res grid (``fitted_coords``). Missing
    days, NaN and a domain that does not cover the target are errors.
    """
    f = data.scale_factor
    h, w = y_da.sizes["y"] // f, y_da.sizes["x"] // f
    if not data.predictors:
        yv = y_da.values
        x = block_mean(yv, f)
        x = np.nan_to_num(x, nan=0.0)[:, None]  # blocks with no valid cell carry no rain
        return x.astype(np.float32), ["pr_coarse"], [True]
    lat_key = "lat_lr" if "lat_lr" in fitted_coords else "y_lr"
    lon_key = "lon_lr" if "lon_lr" in fitted_coords else "x_lr"
    lat_lr = np.asarray(fitted_coords[lat_key][1])
    lon_lr = np.asarray(fitted_coords[lon_key][1])
    if lat_lr.ndim == 1:
        lat_lr, lon_lr = np.meshgrid(lat_lr, lon_lr, indexing="ij")
    chans, names, logs = [], [], []
    for k, src in enumerate(data.predictors):
        role = f"data.predictors[{k}]"
        da = load_field(src, role, target_units=data.units if src.kind == "precip" else None)
        where = describe(src)
        bad = ~np.isfinite(da.values)
        if bad.any():
            t = int(np.argwhere(bad)[0][0])
            raise DownpourError(
                f"{role}: {where} holds {int(bad.sum())} NaN/missing values (first on "
                f"{np.datetime_as_string(da.time.values[t], unit='D')}); predictors must be "
                "complete: fill the gaps (e.g. interpolate in time) or drop those days"
            )
        ptimes = align_time(da.time.values, daily)
        if np.unique(ptimes).size != ptimes.size:
            raise DownpourError(f"{role}: {where} has duplicate time steps; remove them")
        sorter = np.argsort(ptimes)
        idx = sorter[np.searchsorted(ptimes, times, sorter=sorter).clip(0, ptimes.size - 1)]
        found = ptimes[idx] == times
        if not found.all():
            missing = times[~found]
            raise DownpourError(
                f"{role}: time axes of the target and {where} do not match: {missing.size} of the "
                f"target's {times.size} time steps are missing from the predictor (first: "
                f"{np.datetime_as_string(missing[0], unit='D')}; predictor covers "
                f"{np.datetime_as_string(ptimes.min(), unit='D')}.."
                f"{np.datetime_as_string(ptimes.max(), unit='D')}); "
                "use files covering the same days"
            )
        da = da.isel(time=idx)
        vals = regrid_to(da, lat_lr, lon_lr, role)
        if vals.shape[-2:] != (h, w):
            raise DownpourError(f"{role}: {where} regrids to {vals.shape[-2:]}, expected {(h, w)}")
        if src.kind == "precip" and (vals < -data.negative_tolerance).any():
            raise DownpourError(
                f"{role}: {where} holds negative precipitation "
                f"(min {float(vals.min()):.4g}); fix the file"
            )
        chans.append(np.maximum(vals, 0) if src.kind == "precip" else vals)
        names.append(src.name or src.variable)
        logs.append(src.kind == "precip")
    return np.stack(chans, axis=1).astype(np.float32), names, logs
