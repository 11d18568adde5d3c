"""Normalisation fitted on the training split only.

Precipitation (the target and every predictor of kind ``precip``) is
transformed with ``log1p``; every predictor channel is then z-scored with the
mean and standard deviation of its (transformed) training values. The target
stays in ``log1p`` space (non-negative, zero stays zero, so masks and dry
pixels keep their meaning); its training mean/std in that space are stored
for reference.

The same object works on NumPy arrays and torch tensors, so datasets,
models and sampling share one definition.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np
import torch

__all__ = ["Normalization", "fit_normalization"]

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def _log1p(a: Array) -> Array:
    return torch.log1p(a) if isinstance(a, torch.Tensor) else np.log1p(a)


def _expm1(a: Array) -> Array:
    return torch.expm1(a) if isinstance(a, torch.Tensor) else np.expm1(a)


@dataclass(frozen=True)
class Normalization:
    """Transforms between physical units and network space.

    Attributes
    ----------
    channels
        Predictor channel names, in store order.
    x_log1p
        Per channel, whether ``log1p`` is applied before the z-score.
    x_mean, x_std
        Per-channel mean and standard deviation (after ``log1p`` where set)
        over the training days.
    y_mean, y_std
        Mean and standard deviation of ``log1p(y)`` over valid cells of the
        training days (for reference; the target is not z-scored).
    units
        Physical units of the target (``"mm/day"`` or ``"mm/h"``).
    """

    channels: tuple[str, ...]
    x_log1p: tuple[bool, ...]
    x_mean: tuple[float, ...]
    x_std: tuple[float, ...]
    y_mean: float
    y_std: float
    units: str = "mm/day"

    # ------------------------------------------------------------------ x
    def _x_stats(self, like: Array) -> tuple[Array, Array, Array]:
        shape = (len(self.channels), 1, 1)
        mean = np.asarray(self.x_mean, dtype=np.float32).reshape(shape)
        std = np.asarray(self.x_std, dtype=np.float32).reshape(shape)
        log = np.asarray(self.x_log1p).reshape(shape)
        if isinstance(like, torch.Tensor):
            dev = like.device
            return (
                torch.from_numpy(mean).to(dev),
                torch.from_numpy(std).to(dev),
                torch.from_numpy(log).to(dev),
            )
        return mean, std, log

    def normalize_x(self, x: Array) -> Array:
        """Physical predictors → network space.

        Parameters
        ----------
        x
            Array or tensor of shape ``(..., C, h, w)`` with C = ``len(channels)``.
        """
        mean, std, log = self._x_stats(x)
        if isinstance(x, torch.Tensor):
            t = torch.where(log, torch.log1p(x.clamp_min(0)), x)
        else:
            t = np.where(log, np.log1p(np.maximum(x, 0)), x)
        return (t - mean) / std

    def denormalize_x(self, x: Array) -> Array:
        """Network-space predictors → physical units (inverse of :meth:`normalize_x`)."""
        mean, std, log = self._x_stats(x)
        t = x * std + mean
        if isinstance(x, torch.Tensor):
            return torch.where(log, torch.expm1(t), t)
        return np.where(log, np.expm1(t), t)

    # ------------------------------------------------------------------ y
    def normalize_y(self, y: Array) -> Array:
        """Precipitation (physical units, ≥ 0) → ``log1p`` space. Any shape."""
        return _log1p(y)

    def denormalize_y(self, y: Array) -> Array:
        """``log1p`` space → precipitation in physical units, clamped at 0. Any shape."""
        out = _expm1(y)
        return out.clamp_min(0) if isinstance(out, torch.Tensor) else np.maximum(out, 0)

    # ---------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def to_json(self) -> str:
        """Return the JSON text stored in the store attributes and checkpoints."""
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalization:
        """Rebuild from :meth:`to_dict` output."""
        return cls(
            channels=tuple(d["channels"]),
            x_log1p=tuple(bool(v) for v in d["x_log1p"]),
            x_mean=tuple(float(v) for v in d["x_mean"]),
            x_std=tuple(float(v) for v in d["x_std"]),
            y_mean=float(d["y_mean"]),
            y_std=float(d["y_std"]),
            units=str(d.get("units", "mm/day")),
        )

    @classmethod
    def from_json(cls, text: str) -> Normalization:
        """Rebuild from :meth:`to_json` output."""
        return cls.from_dict(json.loads(text))


def fit_normalization(
    x_train: np.ndarray,
    y_train: np.ndarray,
    mask: np.ndarray,
    channels: tuple[str, ...],
    x_log1p: tuple[bool, ...],
    units: str = "mm/day",
) -> Normalization:
    """Fit the normalisation on training days only.

    Parameters
    ----------
    x_train
        Predictors of the training days, shape ``(T, C, h, w)``, physical units.
        NaN cells are ignored.
    y_train
        Target of the training days, shape ``(T, H, W)``, physical units.
    mask
        Valid target cells, shape ``(H, W)``.
    channels, x_log1p
        Channel names and which channels are precipitation.
    units
        Target units.

    Returns
    -------
    Normalization
        Statistics from exactly the arrays given (the caller passes training
        days only; nothing else reaches this function).
    """
    x = np.asarray(x_train, dtype=np.float64)
    log = np.asarray(x_log1p, dtype=bool)[None, :, None, None]
    x = np.where(log, np.log1p(np.maximum(x, 0)), x)
    mean = np.nanmean(x, axis=(0, 2, 3))
    std = np.nanstd(x, axis=(0, 2, 3))
    std = np.where(std > 1e-12, std, 1.0)
    ly = np.log1p(np.asarray(y_train, dtype=np.float64)[:, mask])
    return Normalization(
        channels=tuple(channels),
        x_log1p=tuple(bool(v) for v in x_log1p),
        x_mean=tuple(float(v) for v in mean),
        x_std=tuple(float(v) for v in std),
        y_mean=float(ly.mean()) if ly.size else 0.0,
        y_std=float(ly.std()) if ly.size else 1.0,
        units=units,
    )
