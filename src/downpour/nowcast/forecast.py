"""Nowcasts as datasets: roll the model forward, the baselines, forecast from a checkpoint, write.

``forecast`` loads a checkpoint and rolls the model forward from an init
time, feeding its predictions back (:func:`run_forecast`);
``persistence_forecast`` and ``extrapolation_forecast`` (pysteps Lucas-Kanade
optical flow + semi-Lagrangian extrapolation) are the baselines;
``write_forecast`` stores any of them. Each goes through one method of
:data:`~downpour.nowcast.forecasters.FORECASTERS` (:func:`nowcast`).
Verification lives in :mod:`downpour.nowcast.verify`.

Conventions
-----------
- ``init`` is the time of the **last observed frame**; lead ``k`` is valid at
  ``init + k · step``. The ``n_frames`` frames ending at ``init`` must exist,
  be exactly one step apart and be complete (no missing native frame;
  :mod:`downpour.nowcast.inits`).
- A forecast is an ``xr.Dataset`` with ``precip_rate`` (mm/h, dims
  ``(lead_time, y, x)``), coordinates ``lead_time`` (timedelta), ``time``
  (valid time, along ``lead_time``), ``init_time`` and the source's ``y``/``x``
  (or ``lat``/``lon``); cells outside the radar domain (NaN at ``init``) are
  NaN; per-lead ``domain_max``, ``domain_mean``, ``wet_fraction`` diagnostics.
- Range check: a lead whose max exceeds ``range_factor`` × the training max,
  or whose domain mean exceeds ``range_factor`` × the largest training
  frame mean (exploding), or whose wet fraction (> 0.1 mm/h) or max drops
  below 5% of the init frame's while that had rain (vanishing), raises a
  :class:`~downpour.nowcast.range_check.RolloutRangeWarning` naming the lead
  and the numbers; the messages are also kept in ``attrs["range_warnings"]``.

Examples
--------
>>> t = np.datetime64("2021-07-01T00:00", "ns") + np.arange(3) * np.timedelta64(1, "h")
>>> da = xr.DataArray(np.arange(12.0).reshape(3, 2, 2), dims=("time", "y", "x"),
...                   coords={"time": t}, attrs={"step_minutes": 60})
>>> ds = persistence_forecast(da, init="2021-07-01T01:00", steps=2)
>>> ds["precip_rate"].dims, ds["domain_max"].values.tolist()
(('lead_time', 'y', 'x'), [7.0, 7.0])
>>> str(ds["time"].values[0])[:16]
'2021-07-01T02:00'
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from torch import nn

from downpour.config import VariableSource
from downpour.core.errors import DownpourError
from downpour.core.files import write_dataset
from downpour.data.rain import WET
from downpour.nowcast.events import load_nowcast_source
from downpour.nowcast.forecasters import FORECASTERS, require_pysteps
from downpour.nowcast.inits import init_index, step_ns
from downpour.nowcast.range_check import RolloutRangeWarning, range_messages
from downpour.nowcast.train import load_nowcaster
from downpour.nowcast.windows import iso_minute

__all__ = [
    "extrapolation_forecast",
    "forecast",
    "forecast_dataset",
    "nowcast",
    "persistence_forecast",
    "run_forecast",
    "write_forecast",
]

_NS_PER_MIN = 60 * 10**9


def forecast_dataset(rate: np.ndarray, da: xr.DataArray, i: int, method: str) -> xr.Dataset:
    """Wrap ``(K, H, W)`` mm/h leads from frame ``i`` of ``da`` as the forecast dataset.

    Negative rates are clipped to 0 and cells outside the radar domain (NaN
    at frame ``i``) set to NaN; layout in the module docstring.
    """
    step = step_ns(da)
    k = rate.shape[0]
    domain = np.isfinite(np.asarray(da.values[i]))
    rate = np.where(domain, np.clip(rate, 0.0, None), np.nan).astype(np.float32)
    init = da["time"].values[i].astype("datetime64[ns]")
    leads = (np.arange(1, k + 1, dtype=np.int64) * step).astype("timedelta64[ns]")
    coords: dict[str, Any] = {
        str(c): da[c] for c in da.coords if set(da[c].dims) <= {"y", "x"} and da[c].dims
    }
    coords.update(lead_time=("lead_time", leads), time=("lead_time", init + leads))
    coords["init_time"] = init
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN leads
        diag = {
            "domain_max": np.nanmax(rate, axis=(1, 2)),
            "domain_mean": np.nanmean(rate, axis=(1, 2)),
            "wet_fraction": np.nanmean(np.where(domain, rate > WET, np.nan), axis=(1, 2)),
        }
    data = {
        "precip_rate": (
            ("lead_time", "y", "x"),
            rate,
            {"units": "mm/h", "long_name": f"rain rate, {method} nowcast"},
        ),
        **{
            name: ("lead_time", v.astype(np.float32), {"units": "mm/h"}) for name, v in diag.items()
        },
    }
    data["wet_fraction"][2]["units"] = "1"
    attrs = {
        "method": method,
        "init_time": iso_minute(init),
        "step_minutes": int(step // _NS_PER_MIN),
        "source": str(da.attrs.get("source", "")),
        "convention": "init_time = last observed frame; valid time = init_time + lead_time",
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)


def nowcast(method: str, da: xr.DataArray, i: int, steps: int, **context: Any) -> xr.Dataset:
    """Run a registered method from frame ``i`` of ``da`` and wrap its leads as a forecast.

    Parameters
    ----------
    method
        A name in :data:`~downpour.nowcast.forecasters.FORECASTERS` (an
        unknown name raises, listing the valid ones).
    da
        Rain rate in mm/h, dims ``(time, y, x)``, at the model step.
    i
        Index of the init frame (:func:`~downpour.nowcast.inits.init_index`).
    steps
        Number of leads.
    **context
        The methods' keywords (:mod:`downpour.nowcast.forecasters`).

    Returns
    -------
    xarray.Dataset
        The forecast (module docstring), ``attrs["method"] = method``.
    """
    rate = FORECASTERS.get(method)(da, i, steps, **context)
    return forecast_dataset(rate, da, i, method)


def run_forecast(
    net: nn.Module,
    da: xr.DataArray,
    *,
    init: Any,
    steps: int,
    n_frames: int,
    transform: Any,
    stats: dict[str, float] | None = None,
    range_factor: float = 2.0,
    prob_match: bool = False,
    prob_match_smooth: int = 3,
) -> xr.Dataset:
    """Roll ``net`` forward ``steps`` steps from ``init``, feeding predictions back.

    The ``model`` method of :data:`~downpour.nowcast.forecasters.FORECASTERS`, with
    the init time checked and the range checks of :mod:`downpour.nowcast.range_check`.

    Parameters
    ----------
    net
        Maps ``(1, n_frames, H, W)`` transformed frames and ``(1, 4)`` temporal
        encoding of the target time to the next frame ``(1, 1, H, W)``.
    da
        Rain rate in mm/h, dims ``(time, y, x)``, at the model step.
    init
        Time of the last observed frame (see the module docstring).
    steps
        Number of leads.
    n_frames, transform
        The network's input frames and rain transform.
    stats
        Training statistics for the range check (none: no check).
    range_factor
        Limit factor of :func:`~downpour.nowcast.range_check.check_rollout_range`.
    prob_match
        Give every prediction, before it is fed back, the value distribution
        of the init frame over the radar domain
        (:func:`~downpour.nowcast.forecasters.probability_match`, ranking the
        ``prob_match_smooth`` × ``prob_match_smooth`` mean of the prediction).

    Returns
    -------
    xarray.Dataset
        The forecast (module docstring); a :class:`RolloutRangeWarning` is
        issued for a lead out of range.
    """
    if steps < 1:
        raise DownpourError(f"nowcast: the forecast needs at least one step, got {steps}")
    i = init_index(da, init, n_frames)
    ds = nowcast(
        "model", da, i, steps, net=net, n_frames=n_frames, transform=transform,
        prob_match=prob_match, prob_match_smooth=prob_match_smooth,
    )  # fmt: skip
    ds.attrs["prob_match"] = int(prob_match)
    if stats is not None:
        msgs = range_messages(ds, da, i, stats, range_factor)
        ds.attrs["range_warnings"] = json.dumps(msgs)
        for msg in msgs:
            warnings.warn(msg, RolloutRangeWarning, stacklevel=2)
    return ds


def _steps_for(hours: float | None, da: xr.DataArray, i: int) -> int:
    step = step_ns(da)
    if hours is None:  # to the end of the sequence
        end = da["time"].values[-1].astype("datetime64[ns]").astype(np.int64)
        start = da["time"].values[i].astype("datetime64[ns]").astype(np.int64)
        return int((end - start) // step)
    steps = hours * 60 * _NS_PER_MIN / step
    if abs(steps - round(steps)) > 1e-6:
        raise DownpourError(
            f"--hours {hours:g} is not a whole number of {step // _NS_PER_MIN}-min steps"
        )
    return int(round(steps))


def forecast(
    checkpoint: str | Path,
    *,
    init: Any,
    hours: float | None = None,
    source: VariableSource | xr.DataArray | None = None,
    event: str | None = None,
) -> xr.Dataset:
    """Nowcast from a checkpoint: roll the model forward from ``init`` for ``hours``.

    Parameters
    ----------
    checkpoint
        A nowcast checkpoint (``RUN/checkpoints/nowcast/*.ckpt``).
    init
        Time of the last observed frame (string or datetime64).
    hours
        Forecast length; ``None``: to the end of the source's time axis.
    source
        Radar file or DataArray (mm/h at the model step); default: the
        checkpoint's ``nowcast.target`` (or the embedded generator).
    event
        Name of one of the checkpoint's events (needed when ``nowcast.target``
        lists several and no ``source`` is given).

    Returns
    -------
    xarray.Dataset
        See :func:`run_forecast`.
    """
    net, cfg, stats = load_nowcaster(checkpoint)
    nc = cfg.nowcast
    da = load_nowcast_source(nc, source, event)
    i = init_index(da, init, nc.n_frames)
    steps = _steps_for(hours, da, i)
    if steps < 1:
        raise DownpourError(
            f"--init {iso_minute(da['time'].values[i])} is the last frame of the source: nothing "
            "to forecast to its end; give --hours"
        )
    ds = run_forecast(
        net,
        da,
        init=da["time"].values[i],
        steps=steps,
        n_frames=nc.n_frames,
        transform=nc.transform,
        stats=stats,
        range_factor=nc.range_factor,
        prob_match=nc.prob_match,
        prob_match_smooth=nc.prob_match_smooth,
    )
    ds.attrs["checkpoint"] = str(checkpoint)
    return ds


def persistence_forecast(da: xr.DataArray, *, init: Any, steps: int) -> xr.Dataset:
    """Repeat the last observed frame at every lead (layout of :func:`run_forecast`)."""
    return nowcast("persistence", da, init_index(da, init, 1), steps)


def extrapolation_forecast(
    da: xr.DataArray, *, init: Any, steps: int, n_frames: int = 4
) -> xr.Dataset:
    """Nowcast by pysteps optical-flow extrapolation (Lucas-Kanade, semi-Lagrangian).

    The motion field is estimated from the ``n_frames`` frames ending at
    ``init`` in dBR (``pysteps.motion.get_method("LK")``), and the init frame
    (mm/h, no-data as 0) is advected ``steps`` steps
    (``pysteps.nowcasts.get_method("extrapolation")``). Needs pysteps (and
    OpenCV for Lucas-Kanade).
    """
    require_pysteps()
    i = init_index(da, init, max(2, n_frames))
    return nowcast("extrapolation", da, i, steps, n_frames=n_frames)


def write_forecast(ds: xr.Dataset, path: str | Path, fmt: str | None = None) -> Path:
    """Write a forecast atomically as zarr (v3) or NetCDF.

    Parameters
    ----------
    ds
        A forecast dataset.
    path
        Destination; ``fmt=None`` picks NetCDF for a ``.nc`` suffix, zarr otherwise.
    fmt
        ``"zarr"`` or ``"netcdf"``.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    fmt = fmt or ("netcdf" if path.suffix == ".nc" else "zarr")
    if fmt not in ("zarr", "netcdf"):
        raise DownpourError(f"--format {fmt!r}: valid formats are zarr, netcdf")
    return write_dataset(ds, path, fmt, "precip_rate")
