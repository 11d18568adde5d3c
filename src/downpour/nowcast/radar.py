"""Reading a radar rain-rate file: accumulation to the model step, coarsening.

The pipeline is ``load_radar`` (file → (time, y, x) mm/h, optionally
accumulated to the model step and block-mean coarsened); windows of
consecutive frames are cut by :mod:`downpour.nowcast.windows`.

Accumulation rule
-----------------
Native frames are grouped into windows ``(end - step, end]`` whose ``end`` is
a multiple of the step (since 1970-01-01 UTC), so 5-min frames stamped
20:05 … 21:00 form the hourly window labelled 21:00 (radar accumulations are
labelled by the end of their period). The window's value is the mean rate over
its ``step / native`` frames. A window with a missing native frame is NaN
everywhere (``complete`` is False); a pixel that is NaN on any frame of the
window is NaN. Values are never averaged over fewer frames than the window
holds.

Examples
--------
>>> t = np.datetime64("2021-07-01T00:05", "ns") + np.arange(6) * np.timedelta64(5, "m")
>>> rate = xr.DataArray(np.arange(6.0).reshape(6, 1, 1), dims=("time", "y", "x"),
...                     coords={"time": t})
>>> q = accumulate(rate, 15)
>>> q["time"].values.astype("datetime64[m]").astype(str).tolist()
['2021-07-01T00:15', '2021-07-01T00:30']
>>> q.values[:, 0, 0].tolist(), q["complete"].values.tolist()
([1.0, 4.0], [True, True])
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from downpour.config import VariableSource
from downpour.core.errors import DownpourError
from downpour.data.coarsen import block_mean, fit_grid
from downpour.data.io import load_field, time_step_hours

__all__ = ["accumulate", "coarsen_radar", "load_radar"]

_NS_PER_MIN = 60 * 10**9


def load_radar(
    src: VariableSource,
    *,
    step_minutes: int = 60,
    coarsen: int = 1,
    role: str = "nowcast.target",
) -> xr.DataArray:
    """Load a radar rain-rate sequence, accumulate it to the step and coarsen it.

    Parameters
    ----------
    src
        The radar file and variable (rain rate or amount; converted to mm/h).
    step_minutes
        Model time step; must be a multiple of the file's native step. Frames
        are averaged over windows ending on multiples of the step (module
        docstring: a window missing a frame is NaN, never a partial mean).
    coarsen
        Block size of the NaN-aware block mean (1 = keep the grid). A grid the
        factor does not divide is cropped evenly at both edges (attribute
        ``grid_fit``); a coarse cell with more than half its cells NaN is NaN.
    role
        Config key of the source, named in errors.

    Returns
    -------
    xarray.DataArray
        float32 mm/h, dims ``(time, y, x)``; ``time`` is each window's end;
        coordinates ``valid`` (time, y, x) bool (finite values), ``complete``
        (time,) bool and ``n_native`` (time,) frames found per window;
        attributes ``step_minutes``, ``native_step_minutes``, ``accumulation``,
        ``coarsen`` and ``grid_fit``.
    """
    da = load_field(src, role, target_units="mm/h")
    da = accumulate(da, step_minutes, key="nowcast.step_minutes")
    if coarsen > 1:
        da = coarsen_radar(da, coarsen, role=role)
    return da


def _native_minutes(times: np.ndarray, key: str, where: str = "the radar sequence") -> int:
    t = times.astype("datetime64[ns]").astype(np.int64)
    back = np.flatnonzero(np.diff(t) <= 0) if t.size > 1 else np.array([], dtype=np.int64)
    if back.size:
        first = np.datetime_as_string(times[back[0] + 1], unit="m")
        raise DownpourError(
            f"{key}: the time axis of {where} is not strictly increasing ({back.size} duplicate "
            f"or unsorted frames, the first at {first}); sort the file by time and remove "
            "duplicates"
        )
    hours = time_step_hours(times)
    if hours is None:
        raise DownpourError(
            f"{key}: cannot read the native time step of {where} "
            f"({t.size} frames, irregular or a single frame); give a regular time axis"
        )
    minutes = hours * 60.0
    if abs(minutes - round(minutes)) > 1e-6 or round(minutes) < 1:
        raise DownpourError(f"{key}: native time step {minutes} min is not a whole minute")
    return int(round(minutes))


def accumulate(
    da: xr.DataArray, step_minutes: int, *, key: str = "nowcast.step_minutes"
) -> xr.DataArray:
    """Mean rate over windows of native frames ending on multiples of the step.

    Parameters
    ----------
    da
        Rain rate, dims ``(time, y, x)``, NaN = no data.
    step_minutes
        Window length; a multiple of the native step read from the time axis.
    key
        Config key named in errors.

    Returns
    -------
    xarray.DataArray
        Dims ``(time, y, x)``, one frame per window that holds at least one
        native frame, labelled with the window's end; coordinates ``valid``,
        ``complete`` and ``n_native`` (see :func:`load_radar`).

    Raises
    ------
    DownpourError
        When ``step_minutes`` is not a multiple of the native step.
    """
    times = da["time"].values.astype("datetime64[ns]")
    native = _native_minutes(times, key, str(da.attrs.get("source", "the radar sequence")))
    if step_minutes < 1 or step_minutes % native:
        raise DownpourError(
            f"{key}: step {step_minutes} min is not a multiple of the radar's native step "
            f"{native} min; set '{key}' to a multiple of {native}"
        )
    k = step_minutes // native
    values = np.asarray(da.values)
    if k == 1:
        ends = times
        out = values.astype(np.float32, copy=True)
        counts = np.ones(times.size, dtype=np.int64)
    else:
        step_ns = np.int64(step_minutes) * _NS_PER_MIN
        t = times.astype(np.int64)
        window = -((-t) // step_ns)  # ceil: frame at the end time belongs to that window
        ids, first, counts = np.unique(window, return_index=True, return_counts=True)
        # sums over each run of frames; NaN at a pixel on any frame propagates
        sums = np.add.reduceat(values.astype(np.float64), first, axis=0)
        out = (sums / k).astype(np.float32)
        out[counts != k] = np.nan
        ends = (ids * step_ns).astype("datetime64[ns]")
    coords: dict[str, Any] = {c: da[c] for c in da.coords if set(da[c].dims) <= {"y", "x"}}
    coords["time"] = ("time", ends)
    coords["complete"] = ("time", counts == k)
    coords["n_native"] = ("time", counts)
    coords["valid"] = (("time", "y", "x"), np.isfinite(out))
    attrs = {k_: v for k_, v in da.attrs.items() if k_ != "step_hours"}
    attrs.update(
        units="mm/h",
        step_minutes=int(step_minutes),
        native_step_minutes=native,
        accumulation=(
            f"mean rate over {k} native {native}-min frames in (end - {step_minutes} min, end]; "
            "time = window end; a window missing a frame, or a pixel NaN on any frame, is NaN"
        ),
    )
    return xr.DataArray(out, dims=("time", "y", "x"), coords=coords, name=da.name, attrs=attrs)


def coarsen_radar(da: xr.DataArray, factor: int, *, role: str = "nowcast.target") -> xr.DataArray:
    """Block-mean coarsen a radar field, cropping the remainder explicitly.

    A coarse cell is the mean of the finite cells of its block, or NaN when
    more than half of the block is NaN (a cell exactly half NaN is kept).

    Parameters
    ----------
    da
        Dims ``(time, y, x)`` with 1-D ``y``/``x`` (or ``lat``/``lon``) coordinates.
    factor
        Block size.
    role
        Config key named in errors.

    Returns
    -------
    xarray.DataArray
        Dims ``(time, y // factor, x // factor)`` after cropping; ``valid``
        recomputed; attributes ``coarsen`` and ``grid_fit`` (what was cropped).
    """
    fitted, fit = fit_grid(da, factor, "crop", role=role)
    vals = np.asarray(fitted.values, dtype=np.float32)
    frac = block_mean(np.isfinite(vals).astype(np.float32), factor)
    out = block_mean(vals, factor)
    out[frac < 0.5] = np.nan
    coords: dict[str, Any] = {}
    for name in fitted.coords:
        c = fitted[name]
        if c.dims == ("time",):
            coords[str(name)] = c
        elif c.ndim == 1 and c.dims[0] in ("y", "x"):
            values = c.values.astype(np.float64).reshape(-1, factor).mean(1)
            coords[str(name)] = (c.dims[0], values, dict(c.attrs))
    coords["valid"] = (("time", "y", "x"), np.isfinite(out))
    attrs = dict(da.attrs)
    attrs.update(coarsen=int(factor), grid_fit=f"crop: {fit.describe()}")
    return xr.DataArray(out, dims=("time", "y", "x"), coords=coords, name=da.name, attrs=attrs)
