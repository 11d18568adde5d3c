"""Input checks shared by the verification scores: fields, masks and FSS scales.

Fields are ``(days, y, x)`` arrays (numpy, torch or xarray; a 2-D field is one
day). Float32 and float64 keep their type (no float64 copy of a float32
batch); other types become float64 (float16 becomes float32). A mask is
boolean (or 0/1) ``(y, x)``, True = valid cell. Time stamps become
datetime64[ns] (NaT where there is none). See
:mod:`downpour.metrics.verification` for the conventions of the scores.

Examples
--------
>>> p, t = as_pair(np.zeros((2, 3), dtype=np.float32), np.ones((2, 3)))
>>> p.shape, p.dtype, t.dtype
((1, 2, 3), dtype('float64'), dtype('float64'))
>>> as_mask([[1, 0, 1]])
array([[ True, False,  True]])
>>> check_scales([1, 3.0])
(1, 3)
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import xarray as xr

from downpour.core.errors import DownpourError

__all__ = [
    "as_days",
    "as_mask",
    "as_pair",
    "as_times",
    "check_scales",
    "check_shapes",
    "to_numpy",
    "valid_cells",
]


def to_numpy(x: Any) -> np.ndarray:
    """Numpy view of a numpy array, torch tensor (any dtype) or xarray object."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch
        x = x.detach().cpu()
        if x.dtype.is_floating_point and x.element_size() < 4:  # half, bfloat16
            x = x.float()
        return x.numpy()
    if isinstance(x, xr.DataArray):
        return np.asarray(x.values)
    return np.asarray(x)


def as_days(x: Any, name: str) -> np.ndarray:
    """Float32 or float64 ``(days, y, x)`` (float32 and float64 input keep their type)."""
    a = to_numpy(x)
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float32 if a.dtype == np.float16 else np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise DownpourError(f"verification: {name} must be (days, y, x) or (y, x), got {a.shape}")
    return a


def as_pair(pred: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    """Prediction and truth as ``(days, y, x)`` of one float type (float64 unless both float32)."""
    p, t = as_days(pred, "prediction"), as_days(truth, "truth")
    if p.dtype != t.dtype:
        p, t = p.astype(np.float64, copy=False), t.astype(np.float64, copy=False)
    return p, t


def as_mask(mask: Any) -> np.ndarray | None:
    """Boolean ``(y, x)`` mask (True = valid) from a bool or 0/1 array, or None."""
    if mask is None:
        return None
    m = to_numpy(mask)
    if m.dtype != bool:
        m = np.asarray(m, dtype=np.float64)
        m = np.where(np.isfinite(m), m, 0.0)
        if not np.all((m == 0.0) | (m == 1.0)):
            raise DownpourError(
                "verification: the mask must be boolean or 0/1 (True/1 = valid land cell); "
                "threshold a land fraction first, e.g. mask=land_fraction > 0.5"
            )
        m = m == 1.0
    while m.ndim > 2 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2:
        raise DownpourError(f"verification: the mask must be (y, x), got shape {m.shape}")
    if not m.any():
        raise DownpourError("verification: the mask has no valid (True) cell; nothing to verify")
    return m


def check_shapes(p: np.ndarray, t: np.ndarray, mask: np.ndarray | None) -> None:
    """Refuse prediction and truth of different shapes, or a mask off their grid."""
    if p.shape != t.shape:
        raise DownpourError(
            f"verification: prediction shape {p.shape} and truth shape {t.shape} differ; "
            "both must be (days, y, x) on the same grid and days"
        )
    if mask is not None and mask.shape != p.shape[1:]:
        raise DownpourError(
            f"verification: mask shape {mask.shape} does not match the grid {p.shape[1:]}"
        )


def valid_cells(p: np.ndarray, t: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Cells where the mask is True and prediction and truth are both finite."""
    check_shapes(p, t, mask)
    valid = np.isfinite(p) & np.isfinite(t)
    if mask is not None:
        valid &= mask
    return valid


def as_times(time: Any, days: int) -> np.ndarray:
    """Time stamps ``(days,)`` as datetime64[ns] (NaT for ``None``).

    cftime dates are converted through their ISO text; dates with no
    proleptic-Gregorian equivalent (30 February of a 360-day calendar) become
    NaT with a warning: such days are neither ordered nor checked for
    duplicates when accumulators are merged.
    """
    if time is None:
        return np.full(days, np.datetime64("NaT"), dtype="datetime64[ns]")
    stamps = np.atleast_1d(np.asarray(time))
    if stamps.shape != (days,):
        raise DownpourError(f"verification: got {stamps.shape} time stamps for {days} days")
    try:
        return stamps.astype("datetime64[ns]")
    except (TypeError, ValueError):
        pass
    try:
        return np.array([np.datetime64(t.isoformat(), "ns") for t in stamps])
    except (AttributeError, TypeError, ValueError):
        warnings.warn(
            f"verification: time stamps of type {type(stamps[0]).__name__} are not dates "
            "numpy can hold; the days are kept without time stamp (NaT)",
            stacklevel=3,
        )
        return np.full(days, np.datetime64("NaT"), dtype="datetime64[ns]")


def check_scales(scales: Iterable[int]) -> tuple[int, ...]:
    """FSS window sizes as a tuple of positive ints."""
    out = tuple(int(s) for s in scales)
    if not out or any(s < 1 for s in out):
        raise DownpourError(f"verification: FSS scales must be positive integers, got {out}")
    return out
