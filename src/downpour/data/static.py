"""Static fields S: land-sea mask, elevation, normalised latitude/longitude."""

from __future__ import annotations

import numpy as np

__all__ = ["build_static"]


def build_static(
    mask: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    elevation: np.ndarray | None = None,
    latlon: bool = True,
) -> tuple[np.ndarray, list[str]]:
    """Stack the static channels, already normalised.

    Parameters
    ----------
    mask
        Valid (land) cells, bool, shape ``(H, W)``.
    lat, lon
        Cell-centre coordinates, shape ``(H, W)`` (or projected y/x).
    elevation
        Elevation in metres, shape ``(H, W)``, NaN allowed (taken as 0 m);
        ``None`` leaves the channel out.
    latlon
        Add latitude and longitude scaled to [-1, 1] over the domain.

    Returns
    -------
    (numpy.ndarray, list of str)
        float32 array of shape ``(S, H, W)`` and the channel names:
        ``mask`` (0/1), ``elevation`` (z-score over valid cells), ``lat``, ``lon``.
    """
    chans = [mask.astype(np.float32)]
    names = ["mask"]
    if elevation is not None:
        e = np.nan_to_num(elevation.astype(np.float64), nan=0.0)
        land = e[mask] if mask.any() else e.ravel()
        std = land.std()
        chans.append(((e - land.mean()) / (std if std > 1e-9 else 1.0)).astype(np.float32))
        names.append("elevation")
    if latlon:
        for name, c in (("lat", lat), ("lon", lon)):
            lo, hi = float(np.nanmin(c)), float(np.nanmax(c))
            scaled = 2.0 * (c - lo) / (hi - lo) - 1.0 if hi > lo else np.zeros_like(c)
            chans.append(np.asarray(scaled, dtype=np.float32))
            names.append(name)
    return np.stack(chans), names
