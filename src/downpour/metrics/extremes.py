"""Tail statistics: GPD fit of the daily domain maximum, streaming quantiles (docs/metrics.md).

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

from downpour.core.errors import DownpourError

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
    """Streaming, mergeable quantiles from a fixed histogram of float32 bit patterns.

    Bins: ``v <= 0``; ``0 < v < LOW`` (``LOW = 2⁻¹⁰ ≈ 9.8e-4``); 1024 bins of
    equal width in each octave ``[2ᵏ, 2ᵏ⁺¹)`` from ``LOW`` up to ``HIGH = 2¹⁷``
    (131,072), i.e. relative width between 4.9e-4 and 9.8e-4; one overflow bin.
    A value's bin is read from the bits of its float32 representation (the
    exponent and the top 10 mantissa bits: one shift, no logarithm), so float32
    values are binned exactly; other values are rounded to float32 first.
    Positive values below 1.2e-41 (float32 subnormals) count as 0. NaN and
    ±inf are ignored. The exact minimum and maximum are kept.

    A quantile (numpy's ``linear`` definition) is located in its bin and
    interpolated within it, so the result is within about one bin of
    ``numpy.quantile``: relative error < 1e-3 for values in ``[LOW, HIGH]``
    (absolute < 1e-3 below), provided the two neighbouring order statistics
    are not separated by a gap wider than a bin (true for P99 of many
    continuous values). Memory: 27,651 int64 counts. :meth:`state` and
    :meth:`from_state` save and restore a histogram exactly.
    """

    LOW = 2.0**-10
    HIGH = 2.0**17
    BINS_PER_OCTAVE = 1024
    _SHIFT = 23 - 10  # float32 mantissa bits below the top 10
    _FIRST = int(np.array(LOW, dtype=np.float32).view(np.int32)) >> _SHIFT
    #: Index of the overflow bin (the bins are 0 .. TOP).
    TOP = 2 + int(np.log2(HIGH / LOW)) * BINS_PER_OCTAVE

    def __init__(self) -> None:
        self.counts = np.zeros(self.TOP + 1, dtype=np.int64)
        self.vmin = np.inf
        self.vmax = -np.inf

    @property
    def n(self) -> int:
        """Number of values seen."""
        return int(self.counts.sum())

    def _bins(self, v: np.ndarray) -> np.ndarray:
        """Bin index + 1 of each value of a flat float array; 0 for NaN and ±inf."""
        finite = np.isfinite(v)
        if v.dtype != np.float32:
            big = float(np.finfo(np.float32).max)
            v = np.clip(v, -big, big).astype(np.float32)  # NaN stays NaN, ±inf is dropped
        g = v.view(np.int32) >> self._SHIFT  # exponent and top mantissa bits; < 0 for v < 0
        idx = g - (self._FIRST - 2)
        np.clip(idx, 1, self.TOP, out=idx)  # (0, LOW) -> 1, overflow -> TOP
        idx *= g > 0  # v <= 0 -> 0
        idx += 1
        idx *= finite
        return idx

    def update(self, values: Any) -> None:
        """Add the finite values of ``values`` (any shape; NaN and ±inf are ignored)."""
        v = np.asarray(values)
        if v.dtype not in (np.float32, np.float64):
            v = v.astype(np.float64)
        v = v.ravel()
        if v.size == 0:
            return
        counts = np.bincount(self._bins(v), minlength=self.counts.size + 1)
        if counts[0] == v.size:
            return
        self.counts += counts[1:]
        lo, hi = float(np.fmin.reduce(v)), float(np.fmax.reduce(v))
        if not (np.isfinite(lo) and np.isfinite(hi)):  # some ±inf: exclude them
            finite = v[np.isfinite(v)]
            lo, hi = float(finite.min()), float(finite.max())
        self.vmin = min(self.vmin, lo)
        self.vmax = max(self.vmax, hi)

    def merge(self, other: QuantileHistogram) -> QuantileHistogram:
        """Return the histogram of both inputs' values."""
        out = QuantileHistogram()
        out.counts = self.counts + other.counts
        out.vmin, out.vmax = min(self.vmin, other.vmin), max(self.vmax, other.vmax)
        return out

    def state(self) -> dict[str, np.ndarray]:
        """Arrays that :meth:`from_state` turns back into this histogram (e.g. for ``np.savez``).

        Returns
        -------
        dict
            ``counts`` int64 ``(TOP + 1,)``, ``range`` float64 ``[vmin, vmax]``
            and ``layout`` float64 ``[LOW, HIGH, BINS_PER_OCTAVE]``.
        """
        return {
            "counts": self.counts.copy(),
            "range": np.array([self.vmin, self.vmax], dtype=np.float64),
            "layout": np.array(self._layout(), dtype=np.float64),
        }

    @classmethod
    def from_state(cls, state: Any, where: str = "histogram state") -> QuantileHistogram:
        """Rebuild a histogram from :meth:`state` (a mapping of the same arrays).

        Parameters
        ----------
        state
            Mapping with ``counts``, ``range`` and ``layout``.
        where
            Names the source in error messages (e.g. the file).

        Raises
        ------
        DownpourError
            When an array is missing or the bin layout differs from this version's.
        """
        try:
            counts = np.asarray(state["counts"], dtype=np.int64)
            vmin, vmax = (float(x) for x in np.asarray(state["range"], dtype=np.float64))
            layout = np.asarray(state["layout"], dtype=np.float64)
        except (KeyError, ValueError, TypeError) as e:
            raise DownpourError(f"{where}: not a quantile histogram state ({e})") from e
        expected = np.array(cls._layout(), dtype=np.float64)
        if layout.shape != expected.shape or not np.array_equal(layout, expected):
            raise DownpourError(
                f"{where}: histogram bins {layout.tolist()} (low, high, bins per octave) differ "
                f"from "
                f"this version's {expected.tolist()}; recompute the state with this version"
            )
        if counts.shape != (cls.TOP + 1,) or (counts < 0).any():
            raise DownpourError(
                f"{where}: histogram counts must be {cls.TOP + 1} non-negative integers, "
                f"got shape {counts.shape}"
            )
        out = cls()
        out.counts, out.vmin, out.vmax = counts.copy(), vmin, vmax
        return out

    @classmethod
    def _layout(cls) -> list[float]:
        return [cls.LOW, cls.HIGH, cls.BINS_PER_OCTAVE]

    def _bin(self, j: int) -> tuple[float, float]:
        """Value range ``(lo, hi)`` of bin ``j``, clipped to the data's range."""
        if j == 0:
            lo, hi = self.vmin, 0.0
        elif j == 1:
            lo, hi = 0.0, self.LOW
        elif j == self.TOP:
            lo, hi = self.HIGH, self.vmax
        else:
            bits = (np.array([j, j + 1], dtype=np.int32) + (self._FIRST - 2)) << self._SHIFT
            lo, hi = (float(x) for x in bits.view(np.float32))
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
