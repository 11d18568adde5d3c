"""Baselines every downscaling user compares against: bicubic and BCSD-style.

Both take the low-res **precipitation** channel in physical units
(``(T, h, w)``, mm/day) and return the high-res field ``(T, H, W)`` with
``H = h·s``, ``W = w·s``; they are looked up by name in :data:`BASELINES`
(``downpour verify --baseline NAME``):

- ``bicubic``: :func:`bicubic` interpolation, clamped at 0. Nothing to fit.
- ``bcsd``: :class:`BCSD`, bicubic interpolation followed by per-cell
  empirical quantile mapping fitted on training days (docs/models.md).

:func:`precip_channel` finds the precipitation channel of a store.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.gamma(0.5, 4.0, size=(50, 2, 2)).astype(np.float32)
>>> y = np.repeat(np.repeat(x, 3, axis=1), 3, axis=2) * 2.0
>>> model = build_baseline("bcsd", scale=3).fit(x, y)
>>> model.predict(x).shape
(50, 6, 6)
>>> BASELINES.names()
['bcsd', 'bicubic']
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from downpour.core.errors import DownpourError
from downpour.core.registry import Registry

__all__ = [
    "BASELINES",
    "BCSD",
    "Baseline",
    "Bicubic",
    "bicubic",
    "build_baseline",
    "precip_channel",
]


class Baseline(Protocol):
    """What a baseline offers: ``fit`` on training days, ``predict`` any days."""

    requires_fit: bool

    def fit(
        self, x_lr: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None
    ) -> Baseline:  # pragma: no cover - protocol
        """Fit on low-res precipitation ``(T, h, w)`` and high-res truth ``(T, H, W)``."""
        ...

    def predict(self, x_lr: np.ndarray) -> np.ndarray:  # pragma: no cover - protocol
        """Return the high-res field ``(T, H, W)`` of low-res precipitation ``(T, h, w)``."""
        ...


BASELINES: Registry[type] = Registry("baseline")


def build_baseline(name: str, /, **kwargs: Any) -> Baseline:
    """Build the baseline registered as ``name`` (``"bicubic"``, ``"bcsd"``).

    Raises
    ------
    DownpourError
        If ``name`` is unknown; the message lists the valid names.
    """
    return BASELINES.get(name)(**kwargs)


# ---------------------------------------------------------------------- bicubic


def bicubic(
    x_lr: np.ndarray | torch.Tensor, scale: int, *, batch: int = 256
) -> np.ndarray | torch.Tensor:
    """Bicubic interpolation of low-res fields to the high-res grid, clamped at 0.

    ``torch.nn.functional.interpolate(mode="bicubic", align_corners=False)``:
    cell centres of the two grids are aligned as block centres (the convention
    of block-mean coarsening). Bicubic overshoots next to sharp edges; the
    negative values this gives are set to 0.

    Parameters
    ----------
    x_lr
        Low-res fields ``(..., h, w)`` (NumPy or torch), physical units.
    scale
        Integer scale factor s.
    batch
        Fields interpolated at a time (bounds memory for long series).

    Returns
    -------
    numpy.ndarray or torch.Tensor
        ``(..., h·s, w·s)``, same type as the input, float32 for NumPy input.
    """
    if scale < 1:
        raise ValueError(f"scale must be ≥ 1, got {scale}")
    is_numpy = not isinstance(x_lr, torch.Tensor)
    t = torch.as_tensor(np.asarray(x_lr, dtype=np.float32)) if is_numpy else x_lr
    if t.ndim < 2:
        raise ValueError(f"x_lr must have at least 2 dims (h, w), got shape {tuple(t.shape)}")
    lead, (h, w) = t.shape[:-2], t.shape[-2:]
    flat = t.reshape(-1, 1, h, w)
    parts = [
        F.interpolate(
            flat[i : i + batch], scale_factor=scale, mode="bicubic", align_corners=False
        ).clamp_min(0)
        for i in range(0, flat.shape[0], batch)
    ]
    out = (torch.cat(parts) if parts else flat.new_zeros(0, 1, h * scale, w * scale)).reshape(
        *lead, h * scale, w * scale
    )
    return out.numpy() if is_numpy else out


@BASELINES.register("bicubic")
class Bicubic:
    """Bicubic interpolation of the low-res precipitation (nothing is fitted).

    Parameters
    ----------
    scale
        Integer scale factor s.
    **_
        Ignored (the options of other baselines, so all build alike).
    """

    requires_fit = False

    def __init__(self, *, scale: int, **_: Any) -> None:
        self.scale = int(scale)

    def fit(self, x_lr: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None) -> Bicubic:
        """Do nothing (bicubic has no parameters); return ``self``."""
        return self

    def predict(self, x_lr: np.ndarray) -> np.ndarray:
        """Return :func:`bicubic` of ``x_lr (T, h, w)``: ``(T, h·s, w·s)`` float32."""
        return np.asarray(bicubic(np.asarray(x_lr, dtype=np.float32), self.scale))


# ------------------------------------------------------------------------- BCSD


@BASELINES.register("bcsd")
class BCSD:
    """BCSD-style statistical downscaling: bicubic, then per-cell empirical quantile mapping.

    Fitting (training days only): at every valid high-res cell k, the n
    training values of the bicubic field ``c`` and of the truth ``y`` are
    summarised by ``Q = min(n, n_quantiles)`` quantiles at the levels
    ``p_j = (j + ½) / Q`` (Hazen plotting positions; with ``Q = n`` the
    tables are the sorted values themselves, so training day ranks map one to
    one). Mapping a new value ``v``: its position among the ``c`` levels is
    found (linear between levels; equal to the middle of a run of tied
    levels) and the ``y`` quantile at that position is returned; above the
    top level the top ratio is kept (``v · y_top / c_top``); below the lowest
    level the lowest ``y`` is returned.

    Dry days: at cell k let ``m_k`` be the number of training days whose truth
    is dry (``< wet_threshold``). The cell's dry cut is the midpoint between
    the ``m_k``-th and ``(m_k+1)``-th smallest training values of ``c``;
    every value at or below the cut becomes exactly 0. The training days
    mapped to dry are therefore exactly ``m_k`` (the truth's dry-day
    frequency) whenever those two values differ, which is the usual case
    since interpolated coarse rain is wet more often than the fine truth
    (drizzle spread by averaging). When the interpolated field is exactly 0
    on more than ``m_k`` days (a tie across the cut), all those days stay
    dry: the cell is then drier than the truth by the excess of tied zeros.

    Parameters
    ----------
    scale
        Integer scale factor s.
    wet_threshold
        Dry means truth below this (mm/day; the store's ``wet_threshold``).
    n_quantiles
        At most this many quantile levels per cell (memory: ``2 · Q · cells``
        float32 values).

    Attributes
    ----------
    c_table, y_table
        ``(Q, K)`` quantiles of the interpolated field and the truth at the K valid cells.
    dry_cut
        ``(K,)`` value of the interpolated field at or below which a day is dry
        (−inf for a cell never dry).
    mask
        ``(H, W)`` cells that were fitted.
    """

    requires_fit = True

    def __init__(self, *, scale: int, wet_threshold: float = 0.1, n_quantiles: int = 1000) -> None:
        if n_quantiles < 2:
            raise ValueError(f"n_quantiles must be ≥ 2, got {n_quantiles}")
        self.scale = int(scale)
        self.wet_threshold = float(wet_threshold)
        self.n_quantiles = int(n_quantiles)
        self.c_table: np.ndarray | None = None
        self.y_table: np.ndarray | None = None
        self.dry_cut: np.ndarray | None = None
        self.mask: np.ndarray | None = None

    def fit(self, x_lr: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None) -> BCSD:
        """Fit the per-cell mapping on training days.

        Parameters
        ----------
        x_lr
            Low-res precipitation of the training days, ``(n, h, w)``, mm/day.
        y
            High-res truth of the same days, ``(n, H, W)``, mm/day.
        mask
            Valid cells ``(H, W)``; default every cell.

        Returns
        -------
        BCSD
            ``self``, fitted.
        """
        c = np.asarray(bicubic(np.asarray(x_lr, dtype=np.float32), self.scale))
        y = np.asarray(y, dtype=np.float32)
        if c.shape != y.shape or c.ndim != 3:
            raise ValueError(
                f"x_lr {tuple(np.shape(x_lr))} × scale {self.scale} must match y {y.shape} "
                "as (days, y, x)"
            )
        n = c.shape[0]
        if n < 2:
            raise DownpourError(f"BCSD needs at least 2 training days to fit, got {n}")
        mask = np.ones(y.shape[1:], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        c_sorted = np.sort(c[:, mask], axis=0)
        y_cells = y[:, mask]
        if not (np.isfinite(c_sorted).all() and np.isfinite(y_cells).all()):
            raise DownpourError("BCSD: training fields hold NaN/inf on valid cells; mask them")
        dry = (y_cells < self.wet_threshold).sum(axis=0)
        y_sorted = np.sort(y_cells, axis=0)
        q = min(n, self.n_quantiles)
        self.c_table = _hazen_table(c_sorted, q)
        self.y_table = _hazen_table(y_sorted, q)
        cols = np.arange(c_sorted.shape[1])
        below = c_sorted[np.clip(dry - 1, 0, n - 1), cols]
        above = c_sorted[np.clip(dry, 0, n - 1), cols]
        cut = np.where(dry == n, np.inf, 0.5 * (below + above))
        self.dry_cut = np.where(dry == 0, -np.inf, cut).astype(np.float32)
        self.mask = mask
        return self

    def predict(self, x_lr: np.ndarray, *, batch: int = 128) -> np.ndarray:
        """Downscale ``x_lr (T, h, w)`` to ``(T, H, W)`` float32 mm/day.

        Cells outside the fitted mask keep the bicubic value.
        """
        if self.c_table is None or self.y_table is None or self.dry_cut is None:
            raise RuntimeError("BCSD.predict before fit")
        out = np.asarray(bicubic(np.asarray(x_lr, dtype=np.float32), self.scale))
        if out.shape[1:] != self.mask.shape:
            raise ValueError(
                f"x_lr {tuple(np.shape(x_lr))} × scale {self.scale} gives {out.shape[1:]}, "
                f"but BCSD was fitted on {self.mask.shape}"
            )
        for start in range(0, out.shape[0], batch):
            v = out[start : start + batch][:, self.mask].astype(np.float64)
            mapped = _quantile_map(v, self.c_table, self.y_table)
            mapped = np.where(v <= self.dry_cut, 0.0, np.maximum(mapped, 0.0))
            out[start : start + batch, self.mask] = mapped
        return out


def _hazen_table(sorted_values: np.ndarray, q: int) -> np.ndarray:
    """Quantiles ``(q, K)`` at levels ``(j + ½)/q`` of columns sorted along axis 0 ``(n, K)``.

    Hazen positions: level p sits at index ``p·n − ½``, linear in between, so
    with ``q = n`` the table is ``sorted_values`` itself.
    """
    n = sorted_values.shape[0]
    if q == n:
        return sorted_values.astype(np.float32)
    pos = np.clip((np.arange(q) + 0.5) / q * n - 0.5, 0, n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = (pos - lo)[:, None]
    table = sorted_values[lo] * (1 - frac) + sorted_values[hi] * frac
    return table.astype(np.float32)


def _search_columns(table: np.ndarray, v: np.ndarray, *, right: bool) -> np.ndarray:
    """Column-wise ``searchsorted``: for ``table (Q, K)`` sorted per column and ``v (T, K)``.

    A vectorised binary search (``ceil(log2(Q + 1))`` passes over ``(T, K)``).
    Returns int64 ``(T, K)``: the number of levels ``< v`` (``right=False``)
    or ``≤ v`` (``right=True``).
    """
    q = table.shape[0]
    cols = np.arange(table.shape[1])[None, :]
    lo = np.zeros(v.shape, dtype=np.int64)
    hi = np.full(v.shape, q, dtype=np.int64)
    for _ in range(int(np.ceil(np.log2(q + 1)))):
        mid = (lo + hi) // 2
        val = table[np.minimum(mid, q - 1), cols]
        go_right = (val <= v if right else val < v) & (lo < hi)
        lo = np.where(go_right, mid + 1, lo)
        hi = np.where(go_right, hi, mid)
    return lo


def _quantile_map(v: np.ndarray, c_table: np.ndarray, y_table: np.ndarray) -> np.ndarray:
    """Map ``v (T, K)`` through per-column quantile tables ``(Q, K)`` (see :class:`BCSD`)."""
    q = c_table.shape[0]
    cols = np.arange(c_table.shape[1])[None, :]
    c = c_table.astype(np.float64)
    a = _search_columns(c_table, v, right=False)  # levels < v
    b = _search_columns(c_table, v, right=True)  # levels ≤ v
    lo = np.clip(a - 1, 0, q - 2)
    c_lo, c_hi = c[lo, cols], c[lo + 1, cols]
    gap = c_hi - c_lo
    between = lo + np.where(gap > 0, (v - c_lo) / np.where(gap > 0, gap, 1.0), 0.5)
    pos = np.where(b > a, 0.5 * (a + b - 1), between)  # a run of tied levels: its middle
    pos = np.clip(pos, 0, q - 1)
    i = np.minimum(np.floor(pos).astype(np.int64), q - 2)
    frac = pos - i
    y = y_table.astype(np.float64)
    out = y[i, cols] * (1 - frac) + y[i + 1, cols] * frac
    c_top, y_top = c[-1][None, :], y[-1][None, :]
    ratio = np.where(c_top > 0, y_top / np.where(c_top > 0, c_top, 1.0), 1.0)
    above = np.where(c_top > 0, v * ratio, y_top + (v - c_top))
    return np.where(a == q, above, out)


# ------------------------------------------------------------------ the channel


def precip_channel(ds: xr.Dataset) -> int:
    """Index of the predictors' precipitation channel in a prepared store.

    The precipitation channel is the first whose source kind is ``precip``:
    ``downpour prepare`` records it as ``x_log1p = true`` in the
    ``normalization`` attribute (the coarsened target ``pr_coarse`` in a
    perfect-prognosis store is one).

    Raises
    ------
    DownpourError
        No channel is precipitation.
    """
    norm = ds.attrs.get("normalization")
    norm = json.loads(norm) if isinstance(norm, str) else (norm or {})
    logs = [bool(v) for v in norm.get("x_log1p", [])]
    names = [str(c) for c in ds["channel"].values] if "channel" in ds.coords else []
    if True not in logs:
        raise DownpourError(
            f"the store has no precipitation predictor channel (channels: "
            f"{', '.join(names) or '?'}); bicubic and BCSD interpolate low-res precipitation: "
            "give a predictor with kind: precip in data.predictors (or none, to coarsen the "
            "target) and run `downpour prepare` again"
        )
    return logs.index(True)
