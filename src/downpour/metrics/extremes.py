"""Tail statistics: GPD fit of the daily domain maximum, streaming quantiles (§8.2).

The tail of a precipitation product is summarised by a peaks-over-threshold
fit of its *daily domain-maximum* series:

1. ``series[i]`` is the maximum over the valid (mask True, finite) cells of
   day ``i`` (:func:`daily_domain_max`); a day without valid cell is NaN and
   is dropped;
2. wet days are the days whose domain maximum exceeds ``wet_threshold``
   (default 0.1, strictly greater);
3. the threshold ``u`` is the P99 (``numpy.quantile``, linear interpolation)
   of the wet days' maxima, or their P95 when there are fewer than
   ``min_wet_days`` (default 50) wet days;
4. the exceedances ``x - u`` of the maxima ``x > u`` (strict) are fitted by
   maximum likelihood with :func:`scipy.stats.genpareto.fit` with the location
   fixed at 0. ``shape`` is scipy's ``c``, i.e. ξ (ξ > 0: heavy tail).

With fewer than ``min_exceedances`` (default 3) exceedances no fit is
attempted and ``shape``/``scale`` are NaN (``n_exceedances`` says why); a
short test period may well end there.

:func:`compare_gpd_tails` fits truth and prediction separately (each above its
own threshold) and reports prediction − truth differences.

:class:`QuantileHistogram` gives mergeable streaming quantiles (the P99 bias of
:mod:`downpour.metrics.verification`) without keeping the values.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> series = 20 + stats.genpareto.rvs(0.1, scale=5, size=2000, random_state=rng)
>>> fit = gpd_tail_fit(series)
>>> fit.n_exceedances, fit.quantile
(20, 0.99)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from scipy import stats

from downpour.errors import DownpourError

__all__ = [
    "GPDTail",
    "QuantileHistogram",
    "compare_gpd_tails",
    "daily_domain_max",
    "gpd_tail_fit",
]


class GPDTail(NamedTuple):
    """Result of :func:`gpd_tail_fit`.

    Attributes
    ----------
    shape
        GPD shape ξ (scipy's ``c``); NaN when no fit was possible.
    scale
        GPD scale σ (same units as the data); NaN when no fit was possible.
    threshold
        The threshold ``u`` (NaN when there is no wet day).
    n_exceedances
        Number of daily maxima strictly above ``u``.
    quantile
        The quantile that defined ``u`` (0.99, or 0.95 for few wet days).
    n_wet_days
        Number of wet days in the series.
    """

    shape: float
    scale: float
    threshold: float
    n_exceedances: int
    quantile: float
    n_wet_days: int


def daily_domain_max(fields: Any, mask: Any = None) -> np.ndarray:
    """Maximum of each day over the valid cells.

    Parameters
    ----------
    fields
        Array ``(days, y, x)`` (numpy, torch or xarray).
    mask
        Boolean array broadcastable to ``(y, x)``/``(days, y, x)``, True = valid
        (land); ``None`` means every cell. NaN cells are excluded as well.

    Returns
    -------
    numpy.ndarray
        Float64 array ``(days,)``; NaN for a day without valid cell.
    """
    f = np.asarray(fields.detach().cpu().double() if hasattr(fields, "detach") else fields)
    f = f.astype(np.float64, copy=False)
    if f.ndim != 3:
        raise DownpourError(f"daily_domain_max: fields must be (days, y, x), got shape {f.shape}")
    valid = np.isfinite(f)
    if mask is not None:
        valid &= np.broadcast_to(np.asarray(mask, dtype=bool), f.shape)
    out = np.where(valid, f, -np.inf).max(axis=(1, 2))
    return np.where(valid.any(axis=(1, 2)), out, np.nan)


def gpd_tail_fit(
    series: Any,
    *,
    wet_threshold: float = 0.1,
    min_wet_days: int = 50,
    quantile: float = 0.99,
    fallback_quantile: float = 0.95,
    min_exceedances: int = 3,
) -> GPDTail:
    """Fit a GPD to the daily domain maxima above their P99 (P95 for few wet days).

    Parameters
    ----------
    series
        Daily domain maxima, shape ``(days,)``; NaN days are dropped.
    wet_threshold
        A day is wet when its maximum is strictly above this value.
    min_wet_days
        Below this many wet days, ``fallback_quantile`` defines the threshold.
    quantile, fallback_quantile
        Quantiles of the wet-day maxima used as threshold.
    min_exceedances
        Minimum number of exceedances to attempt a fit.

    Returns
    -------
    GPDTail
        Shape ξ, scale, threshold, number of exceedances, quantile, wet days.
    """
    x = np.asarray(series, dtype=np.float64).ravel()
    wet = x[np.isfinite(x) & (x > wet_threshold)]
    q = quantile if wet.size >= min_wet_days else fallback_quantile
    if wet.size == 0:
        return GPDTail(np.nan, np.nan, np.nan, 0, q, 0)
    u = float(np.quantile(wet, q))
    excess = wet[wet > u] - u
    if excess.size < min_exceedances:
        return GPDTail(np.nan, np.nan, u, int(excess.size), q, int(wet.size))
    c, _, scale = stats.genpareto.fit(excess, floc=0.0)
    return GPDTail(float(c), float(scale), u, int(excess.size), q, int(wet.size))


def compare_gpd_tails(pred_series: Any, truth_series: Any, **kwargs: Any) -> dict[str, Any]:
    """Fit the GPD tail of prediction and truth and report their differences.

    Parameters
    ----------
    pred_series, truth_series
        Daily domain maxima ``(days,)`` of prediction and truth (see
        :func:`daily_domain_max`); each is fitted above its own threshold.
    **kwargs
        Passed to :func:`gpd_tail_fit`.

    Returns
    -------
    dict
        ``{"pred": {...}, "truth": {...}, "shape_diff": ξ_pred − ξ_truth,
        "scale_diff": σ_pred − σ_truth, "threshold_diff": u_pred − u_truth}``;
        the per-product dicts hold the fields of :class:`GPDTail`.
    """
    pred = gpd_tail_fit(pred_series, **kwargs)
    truth = gpd_tail_fit(truth_series, **kwargs)
    return {
        "pred": pred._asdict(),
        "truth": truth._asdict(),
        "shape_diff": pred.shape - truth.shape,
        "scale_diff": pred.scale - truth.scale,
        "threshold_diff": pred.threshold - truth.threshold,
    }


class QuantileHistogram:
    """Streaming, mergeable quantiles from a fixed log-spaced histogram.

    Bins: ``v <= 0``; ``0 < v < 1e-3``; geometric bins of ratio 1.001 from
    1e-3 up to >= 1e5; one overflow bin. The exact minimum and maximum are
    kept. A quantile (numpy's ``linear`` definition) is located in its bin and
    interpolated within it, so the result is within about one bin of
    ``numpy.quantile``: relative error < 2e-3 for values in [1e-3, 1e5]
    (absolute < 1e-3 below), provided the two neighbouring order statistics
    are not separated by a gap wider than a bin (true for P99 of many
    continuous values). Memory: 18,433 int64 counts.
    """

    LOW = 1e-3
    RATIO = 1.001
    N_LOG = int(np.ceil(np.log(1e8) / np.log(1.001)))

    def __init__(self) -> None:
        self.counts = np.zeros(self.N_LOG + 3, dtype=np.int64)
        self.vmin = np.inf
        self.vmax = -np.inf

    @property
    def n(self) -> int:
        """Number of values seen."""
        return int(self.counts.sum())

    def update(self, values: Any) -> None:
        """Add the finite values of ``values`` (any shape)."""
        v = np.asarray(values, dtype=np.float64).ravel()
        v = v[np.isfinite(v)]
        if v.size == 0:
            return
        idx = np.where(v > 0.0, 1, 0)
        big = v >= self.LOW
        k = np.floor(np.log(v[big] / self.LOW) / np.log(self.RATIO)).astype(np.int64)
        idx[big] = 2 + np.clip(k, 0, self.N_LOG)
        self.counts += np.bincount(idx, minlength=self.counts.size)
        self.vmin = min(self.vmin, float(v.min()))
        self.vmax = max(self.vmax, float(v.max()))

    def merge(self, other: QuantileHistogram) -> QuantileHistogram:
        """Return the histogram of both inputs' values."""
        out = QuantileHistogram()
        out.counts = self.counts + other.counts
        out.vmin, out.vmax = min(self.vmin, other.vmin), max(self.vmax, other.vmax)
        return out

    def _bin(self, j: int) -> tuple[float, float]:
        if j == 0:
            lo, hi = self.vmin, 0.0
        elif j == 1:
            lo, hi = 0.0, self.LOW
        elif j == self.N_LOG + 2:
            lo, hi = self.LOW * self.RATIO**self.N_LOG, self.vmax
        else:
            lo, hi = self.LOW * self.RATIO ** (j - 2), self.LOW * self.RATIO ** (j - 1)
        lo, hi = max(lo, self.vmin), min(hi, self.vmax)
        return lo, max(lo, hi)

    def quantile(self, q: float) -> float:
        """Approximate ``numpy.quantile(values, q)``; NaN when empty."""
        n = self.n
        if n == 0:
            return float("nan")
        h = (n - 1) * q
        cum = np.cumsum(self.counts)
        j = int(np.searchsorted(cum, int(np.floor(h)), side="right"))
        before = cum[j] - self.counts[j]
        frac = min(max((h - before + 0.5) / self.counts[j], 0.0), 1.0)
        lo, hi = self._bin(j)
        return float(lo + frac * (hi - lo))
