"""Grids: fitting to the scale factor, NaN-aware block means, low-res coordinates.

The high-res grid must be an exact multiple of the scale factor so that each
low-res cell covers one block of ``factor × factor`` high-res cells. When it
is not, the grid is cropped or padded explicitly (``data.grid_fit``), never
silently misaligned. Predictors on their own grid are regridded in
:mod:`downpour.data.regrid`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import xarray as xr

from downpour.core.errors import DownpourError

__all__ = ["GridFit", "block_mean", "coarsen_coords", "fit_grid"]


@dataclass(frozen=True)
class GridFit:
    """How a grid was fitted to the scale factor.

    Attributes
    ----------
    mode
        ``"none"``, ``"crop"`` or ``"pad"``.
    before, after
        Rows/columns removed (crop) or added (pad) at the start and end:
        ``((y_start, y_end), (x_start, x_end))``.
    shape
        Resulting (H, W).
    """

    mode: str
    before: tuple[int, int]
    after: tuple[int, int]
    shape: tuple[int, int]

    def describe(self) -> str:
        """Return a one-line description for the data card."""
        if self.mode == "none":
            return "none (scale factor divides the grid)"
        (y0, x0), (y1, x1) = self.before, self.after
        verb = "cropped" if self.mode == "crop" else "padded"
        return f"{verb} rows {y0}+{y1}, columns {x0}+{x1} → {self.shape[0]}×{self.shape[1]}"


def fit_grid(
    da: xr.DataArray,
    factor: int,
    mode: Literal["error", "crop", "pad"],
    role: str = "data.target",
) -> tuple[xr.DataArray, GridFit]:
    """Crop or pad the last two dims so that ``factor`` divides them.

    Cropping removes the remainder evenly from both edges (the extra row or
    column from the end); padding adds NaN cells (outside the mask) evenly and
    extends the coordinates linearly.

    Parameters
    ----------
    da
        Field with dims ``(..., y, x)``.
    factor
        Scale factor.
    mode
        ``"error"`` refuses a grid the factor does not divide.
    role
        Config key named in errors.

    Returns
    -------
    (xarray.DataArray, GridFit)
        The fitted field and what was done.
    """
    h, w = da.sizes["y"], da.sizes["x"]
    if h < factor or w < factor:
        raise DownpourError(
            f"{role}: the grid {h}×{w} of {da.attrs.get('source', da.name)} is smaller than the "
            f"scale factor {factor}; lower data.scale_factor or use a larger domain"
        )
    ry, rx = h % factor, w % factor
    if ry == 0 and rx == 0:
        return da, GridFit("none", (0, 0), (0, 0), (h, w))
    if mode == "error":
        raise DownpourError(
            f"{role}: scale factor {factor} does not divide the grid {h}×{w} of "
            f"{da.attrs.get('source', da.name)}; set data.grid_fit to 'crop' "
            f"(to {h - ry}×{w - rx}) or 'pad' (to {h + (-h) % factor}×{w + (-w) % factor}), "
            "or choose a scale factor that divides both sizes"
        )
    if mode == "crop":
        y0, x0 = ry // 2, rx // 2
        y1, x1 = ry - y0, rx - x0
        out = da.isel(y=slice(y0, h - y1), x=slice(x0, w - x1))
        return out, GridFit("crop", (y0, x0), (y1, x1), (out.sizes["y"], out.sizes["x"]))
    py, px = (-h) % factor, (-w) % factor
    y0, x0 = py // 2, px // 2
    y1, x1 = py - y0, px - x0
    out = da.pad(y=(y0, y1), x=(x0, x1), constant_values=np.nan)
    for name in ("lat", "lon", "y", "x"):
        if name in da.coords:
            out = out.assign_coords({name: _extend(da[name], (y0, y1), (x0, x1))})
    return out, GridFit("pad", (y0, x0), (y1, x1), (out.sizes["y"], out.sizes["x"]))


def _extend(coord: xr.DataArray, ypad: tuple[int, int], xpad: tuple[int, int]) -> xr.DataArray:
    """Extend a 1-D or 2-D coordinate linearly into padded cells."""
    pads = {"y": ypad, "x": xpad}
    out = coord
    for dim in coord.dims:
        before, after = pads[str(dim)]
        if before == after == 0:
            continue
        out = out.pad({dim: (before, after)}, mode="reflect", reflect_type="odd")
    return out


def block_mean(a: np.ndarray, factor: int) -> np.ndarray:
    """NaN-aware mean over ``factor × factor`` blocks of the last two axes.

    Parameters
    ----------
    a
        Array of shape ``(..., H, W)`` with H and W multiples of ``factor``.
    factor
        Block size.

    Returns
    -------
    numpy.ndarray
        Shape ``(..., H // factor, W // factor)``; the mean of the finite
        cells of each block, NaN where a block has none.

    Examples
    --------
    >>> block_mean(np.array([[1.0, 3.0], [np.nan, 5.0]]), 2)
    array([[3.]])
    """
    h, w = a.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(f"factor {factor} does not divide {h}×{w}; fit the grid first")
    blocks = a.reshape(*a.shape[:-2], h // factor, factor, w // factor, factor)
    finite = np.isfinite(blocks)
    total = np.where(finite, blocks, 0).sum(axis=(-3, -1), dtype=np.float64)
    count = finite.sum(axis=(-3, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / count
    return out.astype(a.dtype if np.issubdtype(a.dtype, np.floating) else np.float64)


def coarsen_coords(da: xr.DataArray, factor: int) -> dict[str, tuple]:
    """Return the low-res coordinates (block means of ``lat``/``lon`` or ``y``/``x``).

    Returns
    -------
    dict
        Coordinate name → ``(dims, values)`` on dims ``y_lr``/``x_lr``.
    """
    out: dict[str, tuple] = {}
    for name in ("lat", "lon", "y", "x"):
        if name not in da.coords:
            continue
        c = da[name]
        if c.ndim == 2:
            out[f"{name}_lr"] = (("y_lr", "x_lr"), block_mean(c.values.astype(np.float64), factor))
        else:
            v = c.values.astype(np.float64)
            out[f"{name}_lr"] = (f"{c.dims[0]}_lr", v.reshape(-1, factor).mean(axis=1))
    return out
