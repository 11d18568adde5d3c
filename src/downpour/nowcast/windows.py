"""The time axis of a radar sequence: gaps, and windows of frames exactly one step apart.

:func:`sequence_windows` finds the windows of ``n_frames`` inputs + 1 target
whose times are exactly one step apart (a window never spans a gap,
:func:`find_gaps`); :class:`RadarSequenceDataset` serves them as transformed
tensors and :class:`NowcastWindows` as inputs + ``steps`` targets for the
unrolled training of :mod:`downpour.nowcast.module`.

Examples
--------
>>> from downpour.nowcast.synthetic import make_embedded_radar
>>> ds = make_embedded_radar(seed=0, hours=6)
>>> da = ds["precip_rate"]
>>> data = RadarSequenceDataset(da, n_frames=4, transform="log")
>>> item = data[0]
>>> item["inputs"].shape, item["target"].shape, item["temporal"].shape
(torch.Size([4, 64, 64]), torch.Size([1, 64, 64]), torch.Size([4]))
>>> iso_minute(da["time"].values[0])
'2021-07-01T00:00'
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr
from torch.utils.data import Dataset

from downpour.data.io import time_step_hours
from downpour.data.rain import (
    TransformKind,
    no_rain_value,
    rain_transform,
    temporal_encoding,
)

__all__ = [
    "NowcastWindows",
    "RadarSequenceDataset",
    "find_gaps",
    "iso_minute",
    "sequence_windows",
]


def iso_minute(t: Any) -> str:
    """Return a time as ISO text to the minute (``2021-07-01T06:00``), as messages show it."""
    return str(np.datetime_as_string(np.datetime64(t, "ns"), unit="m"))


def _as_ns(times: np.ndarray, step: np.timedelta64) -> tuple[np.ndarray, np.int64]:
    t = np.asarray(times).astype("datetime64[ns]").astype(np.int64)
    s = np.int64(np.timedelta64(step, "ns").astype(np.int64))
    if s <= 0:
        raise ValueError(f"step must be positive, got {step}")
    if t.size > 1 and np.any(np.diff(t) <= 0):
        raise ValueError("times must be strictly increasing")
    return t, s


def find_gaps(times: np.ndarray, step: np.timedelta64) -> list[tuple[np.datetime64, np.datetime64]]:
    """Return the missing time steps as ``(first missing, last missing)`` pairs.

    Parameters
    ----------
    times
        Strictly increasing datetime64 array.
    step
        Expected spacing.

    Returns
    -------
    list of (numpy.datetime64, numpy.datetime64)
        One pair per gap, both ends inclusive (a single missing frame gives
        ``(t, t)``).

    Examples
    --------
    >>> t = np.array(["2021-07-01T00:00", "2021-07-01T00:05", "2021-07-01T00:20"],
    ...              dtype="datetime64[ns]")
    >>> find_gaps(t, np.timedelta64(5, "m"))[0][0]
    np.datetime64('2021-07-01T00:10:00.000000000')
    """
    t, s = _as_ns(times, step)
    i = np.flatnonzero(np.diff(t) > s)
    starts = (t[i] + s).astype("datetime64[ns]")
    ends = (t[i + 1] - s).astype("datetime64[ns]")
    return list(zip(starts, ends, strict=True))


def sequence_windows(
    times: np.ndarray, n_frames: int, step: np.timedelta64
) -> tuple[np.ndarray, dict[str, Any]]:
    """Start indices of windows of ``n_frames`` inputs + 1 target, exactly ``step`` apart.

    Parameters
    ----------
    times
        Strictly increasing datetime64 array of length T.
    n_frames
        Input frames per window; a window covers ``n_frames + 1`` entries.
    step
        Required spacing between consecutive entries of a window.

    Returns
    -------
    (numpy.ndarray, dict)
        int64 start indices ``i`` (window = ``times[i : i + n_frames + 1]``) and
        a report: ``total`` (``max(T - n_frames, 0)`` index windows),
        ``kept``, ``dropped_for_gaps`` and ``gaps`` (ISO ``(start, end)`` of
        the missing steps, see :func:`find_gaps`).
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be ≥ 1, got {n_frames}")
    t, s = _as_ns(times, step)
    total = max(t.size - n_frames, 0)
    bad = np.concatenate([[0], np.cumsum(np.diff(t) != s)])  # bad steps before index j
    starts = np.arange(total, dtype=np.int64)
    starts = starts[bad[starts + n_frames] == bad[starts]]
    gaps = [
        (np.datetime_as_string(a, unit="s"), np.datetime_as_string(b, unit="s"))
        for a, b in find_gaps(times, step)
    ]
    report = {
        "total": int(total),
        "kept": int(starts.size),
        "dropped_for_gaps": int(total - starts.size),
        "gaps": gaps,
    }
    return starts, report


class RadarSequenceDataset(Dataset):
    """Windows of ``n_frames`` radar frames and the next frame as target.

    Parameters
    ----------
    da
        Rain rate in mm/h, dims ``(time, y, x)``, NaN = no data.
    n_frames
        Number of input frames.
    transform
        :func:`rain_transform` kind applied to inputs and target.
    step
        Spacing required inside a window; default: ``da.attrs["step_minutes"]``
        or the regular step of the time axis.

    Attributes
    ----------
    starts : numpy.ndarray
        Start index of each window (see :func:`sequence_windows`).
    report : dict
        The window report of :func:`sequence_windows`.

    Notes
    -----
    An item is a dict: ``inputs`` float32 ``(n_frames, H, W)``, ``target``
    float32 ``(1, H, W)``, ``valid`` bool ``(1, H, W)`` (finite in the target
    and in every input: the loss mask), ``time`` int64 ns of the target frame,
    ``temporal`` float32 ``(4,)`` (:func:`temporal_encoding` of the target
    time). No-data pixels are filled, after the transform, with the value of
    0 mm/h (0 for ``log``/``none``, −15 for ``dbr``) in inputs and target;
    the target's fill is masked out by ``valid``.
    """

    def __init__(
        self,
        da: xr.DataArray,
        n_frames: int,
        transform: TransformKind = "log",
        *,
        step: np.timedelta64 | None = None,
    ) -> None:
        if tuple(da.dims) != ("time", "y", "x"):
            raise ValueError(f"expected dims (time, y, x), got {da.dims}")
        times = da["time"].values.astype("datetime64[ns]")
        if step is None:
            minutes = da.attrs.get("step_minutes")
            if minutes is None:
                hours = time_step_hours(times)
                if hours is None:
                    raise ValueError("cannot infer the time step; pass step=")
                minutes = round(hours * 60)
            step = np.timedelta64(int(minutes), "m")
        self.n_frames = int(n_frames)
        self.transform: TransformKind = transform
        self.times = times
        self.starts, self.report = sequence_windows(times, self.n_frames, step)
        rate = np.asarray(da.values, dtype=np.float32)
        self._finite = np.isfinite(rate)
        x = rain_transform(rate, transform)
        self._x = np.where(self._finite, x, np.float32(no_rain_value(transform))).astype(np.float32)
        self._temporal = temporal_encoding(times)

    def __len__(self) -> int:
        return int(self.starts.size)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s = int(self.starts[i])
        e = s + self.n_frames
        valid = self._finite[s : e + 1].all(axis=0)[None]
        return {
            "inputs": torch.from_numpy(self._x[s:e].copy()),
            "target": torch.from_numpy(self._x[e : e + 1].copy()),
            "valid": torch.from_numpy(valid),
            "time": torch.tensor(self.times[e].astype(np.int64), dtype=torch.int64),
            "temporal": torch.from_numpy(self._temporal[e].copy()),
        }


class NowcastWindows(Dataset):
    """Windows of ``n_frames`` inputs and ``steps`` targets, exactly one step apart.

    Built on :class:`RadarSequenceDataset` (its gap
    handling and no-data fill); windows without any valid target cell are
    left out.

    Parameters
    ----------
    da
        Rain rate in mm/h, dims ``(time, y, x)`` (one block of the split).
    n_frames, steps
        Inputs and targets per window.
    transform
        ``nowcast.transform``.

    motion
        Also serve the motion of each window's input frames (``motion``,
        :func:`~downpour.nowcast.motion.window_motions`, computed once here).

    Notes
    -----
    An item: ``inputs`` ``(n_frames, H, W)`` and ``targets`` ``(steps, H, W)``
    float32 (transformed), ``valid`` bool ``(1, H, W)`` (finite in every
    frame of the window), ``temporal`` ``(steps, 4)`` (encoding of each
    target time), ``time`` int64 ns of the first target; with ``motion``,
    ``motion`` float32 ``(2, H, W)`` in pixels per step.
    """

    def __init__(
        self, da: xr.DataArray, n_frames: int, steps: int, transform: Any, motion: bool = False
    ) -> None:
        self.n_frames, self.steps = int(n_frames), int(steps)
        self.base = RadarSequenceDataset(da, self.n_frames + self.steps - 1, transform)
        finite = np.isfinite(np.asarray(da.values))
        span = self.n_frames + self.steps
        self.index = np.array(
            [j for j, s in enumerate(self.base.starts) if finite[s : s + span].all(axis=0).any()],
            dtype=np.int64,
        )
        self.report = dict(self.base.report, kept=int(self.index.size))
        self.motion = None
        if motion:
            from downpour.nowcast.motion import window_motions  # pysteps: only when asked

            rate = np.asarray(da.values, dtype=np.float64)
            self.motion = window_motions(rate, self.base.starts[self.index], self.n_frames)

    def __len__(self) -> int:
        return int(self.index.size)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        j = int(self.index[i])
        item = self.base[j]
        frames = torch.cat([item["inputs"], item["target"]], dim=0)
        s = int(self.base.starts[j])
        n = self.n_frames
        times = self.base.times[s + n : s + n + self.steps]
        out = {
            "inputs": frames[:n],
            "targets": frames[n:],
            "valid": item["valid"],
            "temporal": torch.from_numpy(temporal_encoding(times)),
            "time": torch.tensor(times[0].astype(np.int64), dtype=torch.int64),
        }
        if self.motion is not None:
            out["motion"] = torch.from_numpy(self.motion[i])
        return out
