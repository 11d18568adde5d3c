"""Rain rates in a network's space: log1p or dBR transforms, and the temporal encoding.

The nowcaster works in a transformed space (``nowcast.transform``):
``log`` (``log1p(rate)``), ``dbr`` (``10·log10(rate)``, floored at
:data:`DBR_FLOOR` below :data:`DBR_THRESHOLD`) or ``none``. Each kind has one
value for "no rain" (:func:`no_rain_value`), used to fill no-data cells. The
target time of a prediction enters the network as the sin/cos of its hour of
day and day of year (:func:`temporal_encoding`).

Examples
--------
>>> x = rain_transform(np.array([0.0, 1.0, 10.0]), "log")
>>> inverse_rain_transform(x, "log").round(6).tolist()
[0.0, 1.0, 10.0]
>>> no_rain_value("dbr"), no_rain_value("log")
(-15.0, 0.0)
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import numpy as np
import torch

__all__ = [
    "DBR_FLOOR",
    "DBR_THRESHOLD",
    "WET",
    "TransformKind",
    "inverse_rain_transform",
    "no_rain_value",
    "rain_transform",
    "temporal_encoding",
]

#: dBR assigned to rates below :data:`DBR_THRESHOLD` (mm/h), i.e. "no rain".
DBR_FLOOR = -15.0
#: Rates below this (mm/h) are set to :data:`DBR_FLOOR` by the dBR transform.
DBR_THRESHOLD = 0.1
#: Wet-pixel threshold (mm/h) of the training statistics, forecast diagnostics and range checks.
WET = 0.1

TransformKind = Literal["log", "dbr", "none"]
ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


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
