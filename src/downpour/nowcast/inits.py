"""Init times of a nowcast: which frames can start a forecast, and checks with clear errors.

``init`` is the time of the **last observed frame**; lead ``k`` is valid at
``init + k · step``. The ``n_frames`` frames ending at ``init`` must exist,
be exactly one step apart and be clean: complete (no missing native frame)
and not all NaN.

Examples
--------
>>> import xarray as xr
>>> t = np.datetime64("2021-07-01T00:00", "ns") + np.arange(5) * np.timedelta64(1, "h")
>>> t = np.delete(t, 2)  # 02:00 missing
>>> da = xr.DataArray(np.ones((4, 2, 2)), dims=("time", "y", "x"), coords={"time": t},
...                   attrs={"step_minutes": 60})
>>> [iso_minute(v) for v in valid_inits(da, 2)]
['2021-07-01T01:00', '2021-07-01T04:00']
>>> init_index(da, "2021-07-01T04:00", 2)
3
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from downpour.core.errors import DownpourError
from downpour.nowcast.windows import iso_minute

__all__ = ["check_window", "init_index", "step_ns", "valid_inits"]

_NS_PER_MIN = 60 * 10**9


def step_ns(da: xr.DataArray) -> int:
    """Return the model step of a source in nanoseconds.

    ``attrs["step_minutes"]`` when present, else the median spacing of the time axis.
    """
    minutes = da.attrs.get("step_minutes")
    if minutes is None:
        t = da["time"].values.astype("datetime64[ns]").astype(np.int64)
        if t.size < 2:
            raise DownpourError("nowcast source: cannot tell the time step of a single frame")
        return int(np.median(np.diff(t)))
    return int(minutes) * _NS_PER_MIN


def _clean(da: xr.DataArray, frames: slice = slice(None)) -> np.ndarray:
    """Whether each frame is complete (coordinate ``complete``, if present) and not all NaN."""
    clean = np.isfinite(np.asarray(da.values[frames])).any(axis=(1, 2))
    if "complete" in da.coords:
        clean &= np.asarray(da["complete"].values[frames], dtype=bool)
    return clean


def valid_inits(da: xr.DataArray, n_frames: int) -> np.ndarray:
    """Return the times that can start a forecast (``n_frames`` clean frames end there).

    A frame is clean when it is complete (coordinate ``complete``, if present)
    and holds at least one finite value.

    Returns
    -------
    numpy.ndarray
        datetime64[ns] init times, increasing.
    """
    t = da["time"].values.astype("datetime64[ns]")
    clean = _clean(da)
    step = step_ns(da)
    run = np.zeros(t.size, dtype=np.int64)
    ti = t.astype(np.int64)
    for i in range(t.size):  # one pass over frames, not pixels
        joined = i > 0 and ti[i] - ti[i - 1] == step
        run[i] = (run[i - 1] + 1 if joined else 1) if clean[i] else 0
    return t[run >= n_frames]


def _ranges(times: np.ndarray, step: int) -> str:
    if times.size == 0:
        return "none"
    ti = times.astype("datetime64[ns]").astype(np.int64)
    cut = np.flatnonzero(np.diff(ti) != step) + 1
    parts = [
        f"{iso_minute(seg[0])} .. {iso_minute(seg[-1])}" if seg.size > 1 else iso_minute(seg[0])
        for seg in np.split(times, cut)
    ]
    shown = parts if len(parts) <= 6 else [*parts[:3], "...", *parts[-2:]]
    return ", ".join(shown)


def init_index(da: xr.DataArray, init: Any, n_frames: int) -> int:
    """Index of ``init`` in ``da.time``, checked to start a forecast.

    Raises
    ------
    DownpourError
        When ``init`` is not a frame of the source, or the ``n_frames`` frames
        ending at it are not clean and consecutive; the message lists the
        valid init times.
    """
    try:
        t0 = np.datetime64(init, "ns") if not isinstance(init, np.datetime64) else init
        t0 = t0.astype("datetime64[ns]")
    except ValueError:
        raise DownpourError(f"--init {init!r} is not a date-time (e.g. 2021-07-03T12:00)") from None
    times = da["time"].values.astype("datetime64[ns]")
    ok = valid_inits(da, n_frames)
    if not (ok == t0).any():
        step = step_ns(da)
        pos = int(np.searchsorted(times, t0))
        if pos >= times.size or times[pos] != t0:
            where = "is not a frame of the source"
        elif pos < n_frames - 1:
            where = f"has only {pos + 1} frame(s) up to it; the model needs {n_frames}"
        else:
            where = (
                f"does not have {n_frames} complete, consecutive frames ending at it (a gap "
                "or missing data)"
            )
        raise DownpourError(
            f"--init {iso_minute(t0)} {where} ({times.size} frames {iso_minute(times[0])} .. "
            f"{iso_minute(times[-1])}, every {step // _NS_PER_MIN} min); valid init times: "
            f"{_ranges(ok, step)}"
        )
    return int(np.searchsorted(times, t0))


def check_window(da: xr.DataArray, i: int, n_frames: int) -> None:
    """Check that the ``n_frames`` frames ending at index ``i`` can start a forecast.

    The test of :func:`valid_inits` on one window (clean frames exactly one
    step apart), without a pass over the whole sequence.

    Raises
    ------
    DownpourError
        When they cannot: the message of :func:`init_index` (listing the
        valid init times), or an index outside the source.
    """
    times = da["time"].values.astype("datetime64[ns]")
    if not 0 <= i < times.size:
        raise DownpourError(f"nowcast: init index {i} is outside the source's {times.size} frames")
    first = i - n_frames + 1
    if first >= 0:
        window = slice(first, i + 1)
        gaps = np.diff(times[window].astype(np.int64)) != step_ns(da)
        if _clean(da, window).all() and not gaps.any():
            return
    init_index(da, times[i], n_frames)  # not a valid init: raises, naming the valid ones
