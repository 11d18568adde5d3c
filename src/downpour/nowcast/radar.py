"""Radar rain-rate sequences for the nowcaster: loading, gaps, windows, transforms.

The pipeline is ``load_radar`` (file → (time, y, x) mm/h, optionally
accumulated to the model step and block-mean coarsened) → ``RadarSequenceDataset``
(windows of ``n_frames`` inputs + 1 target whose times are exactly one step
apart). ``make_embedded_radar`` generates a synthetic sequence of advecting
rain cells for tests and CPU runs.

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
>>> ds = make_embedded_radar(seed=0, hours=6)
>>> da = ds["precip_rate"]
>>> data = RadarSequenceDataset(da, n_frames=4, transform="log")
>>> item = data[0]
>>> item["inputs"].shape, item["target"].shape, item["temporal"].shape
(torch.Size([4, 64, 64]), torch.Size([1, 64, 64]), torch.Size([4]))
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import numpy as np
import torch
import xarray as xr
from torch.utils.data import Dataset

from downpour.config import VariableSource
from downpour.data.coarsen import block_mean, fit_grid
from downpour.data.io import load_field, time_step_hours
from downpour.core.errors import DownpourError

__all__ = [
    "DBR_FLOOR",
    "DBR_THRESHOLD",
    "RadarSequenceDataset",
    "accumulate",
    "coarsen_radar",
    "find_gaps",
    "inverse_rain_transform",
    "load_radar",
    "make_embedded_radar",
    "no_rain_value",
    "rain_transform",
    "sequence_windows",
    "temporal_encoding",
]

#: dBR assigned to rates below :data:`DBR_THRESHOLD` (mm/h), i.e. "no rain".
DBR_FLOOR = -15.0
#: Rates below this (mm/h) are set to :data:`DBR_FLOOR` by the dBR transform.
DBR_THRESHOLD = 0.1

TransformKind = Literal["log", "dbr", "none"]
ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

_NS_PER_MIN = 60 * 10**9


# ------------------------------------------------------------------ loading


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


def _native_minutes(times: np.ndarray, key: str) -> int:
    t = times.astype("datetime64[ns]").astype(np.int64)
    if t.size > 1 and np.any(np.diff(t) <= 0):
        raise DownpourError(
            f"{key}: the radar time axis is not strictly increasing (duplicate or unsorted "
            "frames); sort the file by time and remove duplicates"
        )
    hours = time_step_hours(times)
    if hours is None:
        raise DownpourError(
            f"{key}: cannot read the native time step of the radar sequence "
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
    native = _native_minutes(times, key)
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
            coords[str(name)] = (c.dims[0], c.values.astype(np.float64).reshape(-1, factor).mean(1))
    coords["valid"] = (("time", "y", "x"), np.isfinite(out))
    attrs = dict(da.attrs)
    attrs.update(coarsen=int(factor), grid_fit=f"crop: {fit.describe()}")
    return xr.DataArray(out, dims=("time", "y", "x"), coords=coords, name=da.name, attrs=attrs)


# ------------------------------------------------------------------ time axis


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


# ------------------------------------------------------------------ transforms


def _lib(x: ArrayT) -> Any:
    return torch if isinstance(x, torch.Tensor) else np


def rain_transform(x: ArrayT, kind: TransformKind) -> ArrayT:
    """Transform rain rates (mm/h) for the network; NaN stays NaN.

    ``log``: ``log1p(rate)``. ``dbr``: ``10·log10(rate)`` for rates ≥
    :data:`DBR_THRESHOLD` (0.1 mm/h), :data:`DBR_FLOOR` (−15 dBR) below, so
    "no rain" has one value below every rainy one (0.1 mm/h = −10 dBR).
    ``none``: unchanged.

    Parameters
    ----------
    x
        numpy array or torch tensor of rates, any shape.
    kind
        ``"log"``, ``"dbr"`` or ``"none"``.

    Returns
    -------
    Same type and shape as ``x``.

    Examples
    --------
    >>> rain_transform(np.array([0.0, 0.05, 1.0, 10.0]), "dbr")
    array([-15., -15.,   0.,  10.])
    """
    xp = _lib(x)
    if kind == "none":
        return x
    if kind == "log":
        return xp.log1p(x)
    if kind == "dbr":
        safe = xp.where(x >= DBR_THRESHOLD, x, xp.ones_like(x))
        out = xp.where(x >= DBR_THRESHOLD, 10.0 * xp.log10(safe), xp.full_like(x, DBR_FLOOR))
        return xp.where(xp.isnan(x), x, out)
    raise ValueError(f"unknown rain transform {kind!r}; valid: 'log', 'dbr', 'none'")


def inverse_rain_transform(y: ArrayT, kind: TransformKind) -> ArrayT:
    """Invert :func:`rain_transform`; dBR at or below the floor gives 0 mm/h.

    Round trips are exact (to float precision) for rates ≥ 0.1 mm/h; rates
    below 0.1 come back as 0 under ``dbr``.
    """
    xp = _lib(y)
    if kind == "none":
        return y
    if kind == "log":
        return xp.expm1(y)
    if kind == "dbr":
        return xp.where(y <= DBR_FLOOR, xp.zeros_like(y), 10.0 ** (y / 10.0))
    raise ValueError(f"unknown rain transform {kind!r}; valid: 'log', 'dbr', 'none'")


def no_rain_value(kind: TransformKind) -> float:
    """Return the transformed value of 0 mm/h: 0 for ``log``/``none``, −15 for ``dbr``."""
    return DBR_FLOOR if kind == "dbr" else 0.0


def temporal_encoding(times: np.ndarray) -> np.ndarray:
    """Sin/cos of hour-of-day and day-of-year of each timestamp (UTC).

    Hour angle ``2π·(seconds of day)/86400``; day angle
    ``2π·(day of year − 1 + fraction of day)/365.25``.

    Parameters
    ----------
    times
        datetime64 array, shape ``(N,)``.

    Returns
    -------
    numpy.ndarray
        float32 ``(N, 4)``: ``sin hour, cos hour, sin day, cos day``.

    Examples
    --------
    >>> enc = temporal_encoding(np.array(["2021-07-01T06:00"], dtype="datetime64[ns]"))
    >>> np.round(enc[0, :2], 6).tolist()
    [1.0, 0.0]
    """
    t = np.asarray(times).astype("datetime64[ns]")
    day = t.astype("datetime64[D]")
    frac = (t - day).astype("timedelta64[ns]").astype(np.float64) / 86400e9
    doy = (day - day.astype("datetime64[Y]")).astype(np.float64)  # 0-based
    ha = 2.0 * np.pi * frac
    da = 2.0 * np.pi * (doy + frac) / 365.25
    return np.stack([np.sin(ha), np.cos(ha), np.sin(da), np.cos(da)], axis=-1).astype(np.float32)


# ------------------------------------------------------------------ dataset


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


# ------------------------------------------------------------------ embedded


def make_embedded_radar(
    seed: int = 0,
    hours: int = 72,
    height: int = 64,
    width: int = 64,
    step_minutes: int = 5,
) -> xr.Dataset:
    """Generate a deterministic radar sequence of advecting, growing, decaying rain cells.

    Cells are anisotropic Gaussians on a periodic 2 km grid, moving with a
    common steering flow (direction uniform, 6-12 m/s) plus a per-cell
    perturbation (σ 1.5 m/s); each lives 1-4 h with a ``sin`` life cycle
    (growth then decay) and a peak of 5-80 mm/h (log-uniform). Births are
    uniform in time at a rate that keeps about five cells alive per
    64×64 area. The field is summed in a separable form
    (a batched matmul of (T, H, N) by (T, N, W)): no loops over pixels or cells.

    Parameters
    ----------
    seed
        Random seed; the same seed gives the same field.
    hours
        Length; ``hours * 60 // step_minutes`` frames from 2021-07-01 00:00 UTC.
    height, width
        Grid size.
    step_minutes
        Frame spacing.

    Returns
    -------
    xarray.Dataset
        ``precip_rate`` float32 mm/h, dims ``(time, y, x)``; 1-D ascending
        ``y``/``x`` in metres; attributes ``steering_u_ms``/``steering_v_ms``
        (x and y velocity) and ``grid_spacing_m``.
    """
    rng = np.random.default_rng(seed)
    dx_m = 2000.0
    n_t = hours * 60 // step_minutes
    t_h = np.arange(n_t) * step_minutes / 60.0  # hours
    density = 5.0 * (height * width) / 4096.0  # cells alive at once
    mean_life = 2.5
    n_cells = max(1, int(round(density / mean_life * (hours + 4.0))))
    birth = rng.uniform(-4.0, hours, n_cells)
    life = rng.uniform(1.0, 4.0, n_cells)
    peak = np.exp(rng.uniform(np.log(5.0), np.log(80.0), n_cells))
    sig_y = rng.uniform(1.5, 4.0, n_cells)  # pixels
    sig_x = sig_y * rng.uniform(0.6, 1.6, n_cells)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    speed = rng.uniform(6.0, 12.0)
    u, v = speed * np.cos(angle), speed * np.sin(angle)
    cu = u + rng.normal(0.0, 1.5, n_cells)
    cv = v + rng.normal(0.0, 1.5, n_cells)
    y0 = rng.uniform(0.0, height, n_cells)
    x0 = rng.uniform(0.0, width, n_cells)

    age = (t_h[:, None] - birth[None, :]) / life[None, :]  # (T, N) in life fractions
    amp = np.where((age > 0) & (age < 1), np.sin(np.pi * np.clip(age, 0, 1)), 0.0) * peak
    px_per_h = 3600.0 / dx_m
    since = t_h[:, None] - birth[None, :]
    cy = (y0 + cv * px_per_h * since) % height  # (T, N)
    cx = (x0 + cu * px_per_h * since) % width

    def profile(c: np.ndarray, n: int, sig: np.ndarray) -> np.ndarray:
        d = np.arange(n)[None, None, :] - c[:, :, None]
        d = (d + n / 2.0) % n - n / 2.0  # periodic distance
        return np.exp(-0.5 * (d / sig[None, :, None]) ** 2)

    gy = profile(cy, height, sig_y) * amp[:, :, None]  # (T, N, H)
    gx = profile(cx, width, sig_x)  # (T, N, W)
    field = np.matmul(gy.transpose(0, 2, 1), gx).astype(np.float32)  # Σ_n gy ⊗ gx

    start = np.datetime64("2021-07-01T00:00", "ns")
    times = start + (np.arange(n_t) * step_minutes).astype("timedelta64[m]")
    ys = (np.arange(height) + 0.5) * dx_m
    xs = (np.arange(width) + 0.5) * dx_m
    da = xr.DataArray(
        field,
        dims=("time", "y", "x"),
        coords={
            "time": times.astype("datetime64[ns]"),
            "y": ("y", ys, {"units": "m", "axis": "Y"}),
            "x": ("x", xs, {"units": "m", "axis": "X"}),
        },
        attrs={"units": "mm/h", "long_name": "rain rate"},
    )
    return xr.Dataset(
        {"precip_rate": da},
        attrs={
            "source": f"downpour embedded radar (seed {seed})",
            "steering_u_ms": float(u),
            "steering_v_ms": float(v),
            "grid_spacing_m": dx_m,
            "step_minutes": int(step_minutes),
        },
    )
