"""What a trained downscaler knows about its data: :class:`Facts`, decoded from its checkpoint.

A checkpoint written by ``downpour train srdrn`` or ``train cvae`` carries the
store facts (:func:`~downpour.downscaling.datamodule.read_store_info`,
docs/layouts.md#checkpoints): predictor channels and their variables and
units, both grids, the mask, the training period and the predictors'
training range and normalisation. ``downpour downscale`` needs nothing else
to apply the model to new predictor files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from downpour.core.errors import DownpourError
from downpour.data.normalize import Normalization
from downpour.data.static import build_static
from downpour.downscaling.datamodule import decode_array, mask_from_runs

__all__ = ["Facts", "same_dataset"]


@dataclass
class Facts:
    """What a trained model knows about its data, decoded from the checkpoint's store facts.

    Attributes
    ----------
    channels, predictors
        Channel names; per channel ``name``, ``variable``, ``kind``, ``units``, ``path``.
    latlon
        True: ``lat``/``lon`` are latitude/longitude; False: projected y/x.
    lat, lon, lat_lr, lon_lr
        High- and low-res cell centres, 1-D or 2-D.
    mask
        ``(H, W)`` bool valid cells.
    units, scale_factor
        Target units and grid ratio.
    train_period
        First and last real training day (ISO).
    lo, hi
        ``(C,)`` training minimum and maximum of each channel (physical units).
    static_channels, elevation
        Static channel names; the normalised elevation ``(H, W)`` when used.
    normalization
        The predictors' normalisation.
    """

    channels: list[str]
    predictors: list[dict[str, Any]]
    latlon: bool
    lat: np.ndarray
    lon: np.ndarray
    lat_lr: np.ndarray
    lon_lr: np.ndarray
    mask: np.ndarray
    units: str
    scale_factor: int
    train_period: tuple[str, str]
    lo: np.ndarray
    hi: np.ndarray
    static_channels: list[str]
    elevation: np.ndarray | None
    normalization: Normalization

    @classmethod
    def from_info(cls, info: dict[str, Any], where: str) -> Facts:
        """Decode the store facts of a checkpoint (or of a store)."""
        if "grid" not in info or "mask" not in info or "predictor_range" not in info:
            raise DownpourError(
                f"{where} records no grid, mask or training period (it was trained with an "
                "earlier downpour): retrain it, or pass --run RUN to take them from the run's store"
            )
        g = info["grid"]
        rng = info["predictor_range"]
        return cls(
            channels=[str(c) for c in info["channels"]],
            predictors=[dict(p) for p in info["predictors"]],
            latlon=g["coords"] == "latlon",
            lat=decode_array(g["lat"]),
            lon=decode_array(g["lon"]),
            lat_lr=decode_array(g["lat_lr"]),
            lon_lr=decode_array(g["lon_lr"]),
            mask=mask_from_runs(info["mask"]),
            units=str(info["units"]),
            scale_factor=int(info["scale_factor"]),
            train_period=(str(info["train_period"][0]), str(info["train_period"][1])),
            lo=np.asarray(rng["min"], dtype=np.float64),
            hi=np.asarray(rng["max"], dtype=np.float64),
            static_channels=[str(c) for c in info["static_channels"]],
            elevation=decode_array(info["elevation"]) if "elevation" in info else None,
            normalization=Normalization.from_dict(info["normalization"]),
        )

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the high-res grid."""
        return (int(self.mask.shape[0]), int(self.mask.shape[1]))

    def grid2d(self) -> tuple[np.ndarray, np.ndarray]:
        """High-res lat/lon (or y/x) as 2-D ``(H, W)`` arrays."""
        if self.lat.ndim == 2:
            return self.lat, self.lon
        return np.meshgrid(self.lat, self.lon, indexing="ij")

    def static(self) -> np.ndarray:
        """Return the normalised static fields ``(S, H, W)`` the cVAE was trained with."""
        lat2, lon2 = self.grid2d()
        static, names = build_static(self.mask, lat2, lon2, None, "lat" in self.static_channels)
        if self.elevation is not None:
            static = np.concatenate([static[:1], self.elevation[None], static[1:]])
            names = [names[0], "elevation", *names[1:]]
        if names != self.static_channels:
            raise DownpourError(
                f"the checkpoint's static channels {self.static_channels} cannot be rebuilt "
                f"from its facts ({names}); retrain with this version of downpour"
            )
        return static.astype(np.float32)


def same_dataset(a: Facts, b: Facts, what_a: str, what_b: str) -> None:
    """Refuse facts of two different datasets (channels, grid)."""
    same = (
        a.channels == b.channels
        and a.shape == b.shape
        and a.lat_lr.shape == b.lat_lr.shape
        and np.allclose(a.lat_lr, b.lat_lr)
        and np.allclose(a.lon_lr, b.lon_lr)
    )
    if not same:
        raise DownpourError(
            f"{what_a} was trained on channels {a.channels} on a {a.shape[0]}×{a.shape[1]} grid; "
            f"{what_b} holds {b.channels} on {b.shape[0]}×{b.shape[1]} (or other coordinates): "
            "use a checkpoint of this dataset"
        )
