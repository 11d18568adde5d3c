"""Streaming deterministic verification of precipitation fields (DESIGN.md §8.2).

Conventions
-----------
- Fields are ``(days, y, x)`` arrays (numpy, torch or xarray; a 2-D field is
  one day). Float32 stays float32 (no float64 copy of a batch; events are
  decided exactly as in float64, see
  :func:`downpour.metrics.day_stats.threshold_for`); other types become float64.
  Sums are accumulated in float64.
- An **event** is ``value > threshold`` (strict) everywhere: contingency
  tables, FSS indicator fields, MAE_tail (truth > tail threshold).
- A cell is **valid** when the mask is True (land) *and* truth and prediction
  are both finite. Invalid cells are excluded from every score; ``mask`` is a
  boolean array broadcastable to ``(y, x)`` (0/1 numbers are accepted).
- Contingency counts per threshold and day: hits ``a`` (pred and truth
  events), false alarms ``b`` (pred only), misses ``c`` (truth only), correct
  negatives ``d``. Scores: CSI ``a/(a+b+c)``; POD ``H = a/(a+c)``; ``far`` is
  the false-alarm **ratio** ``b/(a+b)``; ``pofd`` is the false-alarm **rate**
  ``F = b/(b+d)`` (probability of false detection, DESIGN's F); SEDI from H
  and F clipped to ``[1e-6, 1 - 1e-6]``; ``frequency_bias = (a+b)/(a+c)``.
  An undefined ratio (0/0) is NaN.
- Continuous scores pool every valid cell of every day: Pearson correlation,
  MAE, RMSE, MAE_tail (MAE over valid cells where truth > ``tail_threshold``,
  by default the ``"P95"`` threshold), and the P99 bias: the 0.99 quantile of
  all pooled valid prediction values (dry cells included) minus that of the
  truth, from a streaming log-binned histogram
  (:class:`downpour.metrics.extremes.QuantileHistogram`, relative precision 2e-3).
- FSS as pysteps (Roberts & Lean 2008, pooled over days): indicator fields
  (event and valid, i.e. invalid cells are 0) are smoothed with
  ``scipy.ndimage.uniform_filter(size=(1, s, s), mode="constant", cval=0)``
  (zero padding at the domain edge; odd or even ``s`` as pysteps), and
  ``FSS = 1 − Σ(Pf−Po)² / (ΣPf² + ΣPo²)`` with the sums over valid cells only.
  With every cell valid this is exactly pysteps' ``fss`` for ``>`` events.
  The sums are computed from exact integer window counts
  (:mod:`downpour.metrics.fss`), not with a floating-point filter.
- Streaming: :class:`VerificationAccumulator` keeps per-day sufficient
  statistics (O(days × thresholds × scales), computed by
  :func:`downpour.metrics.day_stats.day_stats`) and two fixed histograms;
  merging concatenates days (refusing a time stamp present in both) and
  orders them by time when every day has one, so partial accumulators merged
  in any order equal one pass over the period: counts and histograms exactly,
  scores to rounding, bootstrap intervals exactly (they resample day
  positions). :meth:`VerificationAccumulator.save` / ``load`` keep a state in
  an ``.npz`` file, so the pieces of a long archive can be verified in
  separate jobs and merged. Every score is a function of day-weighted sums of the
  per-day statistics, which is what the bootstrap resamples
  (:mod:`downpour.metrics.bootstrap`): CSI, POD, FAR, POFD, SEDI, frequency
  bias, correlation, MAE, RMSE, MAE_tail and FSS get 95% intervals; the P99
  bias and the GPD tail fit do not.
- The correlation combines per-day centred co-moments with Chan's parallel
  formula (no ``Σp² − n·p̄²`` cancellation).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from downpour.core.errors import DownpourError
from downpour.metrics.bootstrap import BootstrapResult, bootstrap_days
from downpour.metrics.day_stats import (
    BLOCK_CELLS,
    DAY_KEYS,
    contingency,
    count_cells,
    day_stats,
    threshold_for,
)
from downpour.metrics.extremes import QuantileHistogram, compare_gpd_tails
from downpour.metrics.fss import fss_day_sums

__all__ = [
    "DEFAULT_SCALES",
    "VerificationAccumulator",
    "categorical_scores",
    "contingency_counts",
    "fss_sums",
    "paired_difference",
    "sedi",
    "verify_arrays",
    "verify_dataset",
]

#: FSS neighbourhood sizes (pixels) used when none are given.
DEFAULT_SCALES: tuple[int, ...] = (1, 3, 9, 27)

_SEDI_CLIP = 1e-6
_CATEGORICAL = ("csi", "pod", "far", "pofd", "sedi", "frequency_bias")
_CONTINUOUS = ("correlation", "mae", "rmse", "mae_tail")


# ------------------------------------------------------------------------ inputs


def _to_numpy(x: Any) -> np.ndarray:
    """Numpy view of a numpy array, torch tensor (any dtype) or xarray object."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch
        x = x.detach().cpu()
        if x.dtype.is_floating_point and x.element_size() < 4:  # half, bfloat16
            x = x.float()
        return x.numpy()
    if isinstance(x, xr.DataArray):
        return np.asarray(x.values)
    return np.asarray(x)


def _as_days(x: Any, name: str) -> np.ndarray:
    """Float32 or float64 ``(days, y, x)`` (float32 and float64 input keep their type)."""
    a = _to_numpy(x)
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float32 if a.dtype == np.float16 else np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise DownpourError(f"verification: {name} must be (days, y, x) or (y, x), got {a.shape}")
    return a


def _as_pair(pred: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    """Prediction and truth as ``(days, y, x)`` of one float type (float64 unless both float32)."""
    p, t = _as_days(pred, "prediction"), _as_days(truth, "truth")
    if p.dtype != t.dtype:
        p, t = p.astype(np.float64, copy=False), t.astype(np.float64, copy=False)
    return p, t


def _as_mask(mask: Any) -> np.ndarray | None:
    """Boolean ``(y, x)`` mask (True = valid) from a bool or 0/1 array, or None."""
    if mask is None:
        return None
    m = _to_numpy(mask)
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


def _check_shapes(p: np.ndarray, t: np.ndarray, mask: np.ndarray | None) -> None:
    if p.shape != t.shape:
        raise DownpourError(
            f"verification: prediction shape {p.shape} and truth shape {t.shape} differ; "
            "both must be (days, y, x) on the same grid and days"
        )
    if mask is not None and mask.shape != p.shape[1:]:
        raise DownpourError(
            f"verification: mask shape {mask.shape} does not match the grid {p.shape[1:]}"
        )


def _valid(p: np.ndarray, t: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    _check_shapes(p, t, mask)
    valid = np.isfinite(p) & np.isfinite(t)
    if mask is not None:
        valid &= mask
    return valid


def _as_times(time: Any, days: int) -> np.ndarray:
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


def _day(stamp: np.datetime64) -> str:
    return str(np.datetime_as_string(stamp, unit="D"))


# ------------------------------------------------------------- building blocks


def sedi(pod: Any, pofd: Any) -> np.ndarray:
    """Symmetric extremal dependence index from hit rate H and false-alarm rate F.

    ``SEDI = (ln F − ln H − ln(1−F) + ln(1−H)) / (ln F + ln H + ln(1−F) + ln(1−H))``
    with H and F clipped to ``[1e-6, 1 − 1e-6]``; NaN where H or F is NaN.

    Parameters
    ----------
    pod, pofd
        Arrays (or floats) of the same shape: H = a/(a+c) and F = b/(b+d).

    Returns
    -------
    numpy.ndarray
        SEDI, same shape.
    """
    h = np.clip(np.asarray(pod, dtype=np.float64), _SEDI_CLIP, 1.0 - _SEDI_CLIP)
    f = np.clip(np.asarray(pofd, dtype=np.float64), _SEDI_CLIP, 1.0 - _SEDI_CLIP)
    lf, lh, l1f, l1h = np.log(f), np.log(h), np.log1p(-f), np.log1p(-h)
    return (lf - lh - l1f + l1h) / (lf + lh + l1f + l1h)


def categorical_scores(a: Any, b: Any, c: Any, d: Any) -> dict[str, np.ndarray]:
    """Scores of contingency counts (elementwise; 0/0 gives NaN).

    Parameters
    ----------
    a, b, c, d
        Hits, false alarms, misses, correct negatives; arrays of one shape.

    Returns
    -------
    dict
        ``csi``, ``pod`` (H), ``far`` (false-alarm *ratio* b/(a+b)), ``pofd``
        (false-alarm *rate* F = b/(b+d)), ``sedi`` and ``frequency_bias``
        ((a+b)/(a+c)), each float64 of the counts' shape.
    """
    a, b, c, d = (np.asarray(v, dtype=np.float64) for v in (a, b, c, d))
    with np.errstate(divide="ignore", invalid="ignore"):
        pod = a / (a + c)
        pofd = b / (b + d)
        return {
            "csi": a / (a + b + c),
            "pod": pod,
            "far": b / (a + b),
            "pofd": pofd,
            "sedi": sedi(pod, pofd),
            "frequency_bias": (a + b) / (a + c),
        }


def _events(
    p: np.ndarray, t: np.ndarray, valid: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Event fields ``value > threshold`` of prediction and truth, and-ed with ``valid``."""
    cut = threshold_for(threshold, p.dtype)
    with np.errstate(invalid="ignore"):
        return valid & (p > cut), valid & (t > cut)


def contingency_counts(pred: Any, truth: Any, threshold: float, mask: Any = None) -> np.ndarray:
    """Per-day contingency counts for the event ``value > threshold``.

    Parameters
    ----------
    pred, truth
        Fields ``(days, y, x)``; NaN cells are excluded.
    threshold
        Event threshold (strict ``>``).
    mask
        Boolean ``(y, x)``, True = valid; ``None`` for every cell.

    Returns
    -------
    numpy.ndarray
        Int64 ``(days, 4)``: hits a, false alarms b, misses c, correct negatives d.
    """
    p, t = _as_pair(pred, truth)
    valid = _valid(p, t, _as_mask(mask))
    return contingency(*_events(p, t, valid, threshold), count_cells(valid))


def fss_sums(
    pred: Any, truth: Any, threshold: float, scales: Iterable[int], mask: Any = None
) -> np.ndarray:
    """Per-day FSS sums ``(Σ(Pf−Po)², ΣPf², ΣPo²)`` for each scale.

    ``FSS = 1 − Σ(Pf−Po)² / (ΣPf² + ΣPo²)`` after summing over days (see the
    module docstring for the edge and mask conventions).

    Parameters
    ----------
    pred, truth
        Fields ``(days, y, x)``.
    threshold
        Event threshold (strict ``>``).
    scales
        Square window sizes in pixels (1 = no smoothing).
    mask
        Boolean ``(y, x)``, True = valid; ``None`` for every cell.

    Returns
    -------
    numpy.ndarray
        Float64 ``(days, len(scales), 3)``.
    """
    p, t = _as_pair(pred, truth)
    valid = _valid(p, t, _as_mask(mask))
    pe, te = _events(p, t, valid, threshold)
    counts = contingency(pe, te, count_cells(valid))[:, None]
    return fss_day_sums([pe], [te], valid, _check_scales(scales), counts)[:, 0]


def _check_scales(scales: Iterable[int]) -> tuple[int, ...]:
    out = tuple(int(s) for s in scales)
    if not out or any(s < 1 for s in out):
        raise DownpourError(f"verification: FSS scales must be positive integers, got {out}")
    return out


# -------------------------------------------------------------- per-day stats


def _correlation(pd: Mapping[str, np.ndarray], w: np.ndarray) -> np.ndarray:
    """Pooled Pearson correlation for day weights ``w`` (B, days): Chan's formula."""
    nd = pd["n"].astype(np.float64)
    n = w @ nd
    mean_p, mean_t = (w @ pd["sum_p"]) / n, (w @ pd["sum_t"]) / n
    day_p, day_t = pd["sum_p"] / np.maximum(nd, 1.0), pd["sum_t"] / np.maximum(nd, 1.0)
    wn = w * nd
    dp, dt = day_p[None, :] - mean_p[:, None], day_t[None, :] - mean_t[:, None]
    cpp = w @ pd["m_pp"] + (wn * dp * dp).sum(1)
    ctt = w @ pd["m_tt"] + (wn * dt * dt).sum(1)
    cpt = w @ pd["m_pt"] + (wn * dp * dt).sum(1)
    denom = cpp * ctt
    r = cpt / np.sqrt(np.where(denom > 0, denom, np.nan))
    return np.clip(r, -1.0, 1.0)


def _scores(pd: Mapping[str, np.ndarray], w: np.ndarray) -> dict[str, np.ndarray]:
    """Every bootstrappable score for day weights ``w`` (B, days): arrays ``(B, ...)``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        counts = np.tensordot(w, pd["counts"].astype(np.float64), axes=(1, 0))
        out = categorical_scores(*np.moveaxis(counts, -1, 0))  # each (B, T)
        n = w @ pd["n"].astype(np.float64)
        out["mae"] = (w @ pd["sum_abs"]) / n
        out["rmse"] = np.sqrt((w @ pd["sum_sq"]) / n)
        out["mae_tail"] = (w @ pd["sum_abs_tail"]) / (w @ pd["n_tail"].astype(np.float64))
        out["correlation"] = _correlation(pd, w)
        f = np.tensordot(w, pd["fss"], axes=(1, 0))  # (B, T, S, 3)
        out["fss"] = 1.0 - f[..., 0] / (f[..., 1] + f[..., 2])
    return out


def _same(x: float, y: float) -> bool:
    return x == y or (np.isnan(x) and np.isnan(y))


# ------------------------------------------------------------------ accumulator


class VerificationAccumulator:
    """Streaming verification: ``update`` batches of days, ``merge``, ``compute``.

    ``save`` and ``load`` keep the whole state in an ``.npz`` file
    (:mod:`downpour.downscaling.verify_state`), so that pieces of a long
    period verified in separate jobs can be merged.

    Parameters
    ----------
    thresholds
        Event thresholds by name, e.g. ``{"P95": 12.1, "P99": 31.0, "10mm": 10.0}``.
    scales
        FSS window sizes in pixels.
    tail_threshold
        Truth threshold of MAE_tail; default ``thresholds["P95"]`` (MAE_tail is
        NaN when neither is given).
    mask
        Boolean ``(y, x)`` (or 0/1), True = valid land cell; ``None`` = all cells.
        Time-varying gaps are expressed as NaN in the fields.

    Examples
    --------
    >>> acc = VerificationAccumulator({"5mm": 5.0}, scales=(1, 3))
    >>> acc.update(np.full((2, 4, 4), 6.0), np.full((2, 4, 4), 7.0))
    >>> acc.compute()["categorical"]["5mm"]["csi"]
    1.0
    """

    def __init__(
        self,
        thresholds: Mapping[str, float],
        *,
        scales: Iterable[int] = DEFAULT_SCALES,
        tail_threshold: float | None = None,
        mask: Any = None,
    ) -> None:
        if not thresholds:
            raise DownpourError(
                "verification: no thresholds given; pass e.g. {'P95': 12.0, '10mm': 10.0}"
            )
        self.thresholds = {str(k): float(v) for k, v in thresholds.items()}
        bad = {k: v for k, v in self.thresholds.items() if not np.isfinite(v)}
        if bad:
            raise DownpourError(f"verification: thresholds must be finite numbers, got {bad}")
        self.scales = _check_scales(scales)
        if tail_threshold is None:
            tail_threshold = self.thresholds.get("P95", float("nan"))
        self.tail_threshold = float(tail_threshold)
        self.mask = _as_mask(mask)
        nt, ns = len(self.thresholds), len(self.scales)
        empty = {
            k: np.zeros(0, dtype=np.int64 if k in ("n", "n_tail") else np.float64) for k in DAY_KEYS
        }
        empty["counts"] = np.zeros((0, nt, 4), dtype=np.int64)
        empty["fss"] = np.zeros((0, nt, ns, 3))
        self._parts: list[dict[str, np.ndarray]] = [empty]  # concatenated on demand
        self._times: list[np.ndarray] = []
        self.hist_pred = QuantileHistogram()
        self.hist_truth = QuantileHistogram()

    @property
    def _per_day(self) -> dict[str, np.ndarray]:
        if len(self._parts) > 1:
            self._parts = [{k: np.concatenate([p[k] for p in self._parts]) for k in self._parts[0]}]
        return self._parts[0]

    @property
    def n_days(self) -> int:
        """Number of days accumulated."""
        return sum(int(p["n"].shape[0]) for p in self._parts)

    @property
    def per_day(self) -> dict[str, np.ndarray]:
        """Per-day sufficient statistics, each ``(days, ...)`` (do not modify)."""
        return dict(self._per_day)

    @property
    def times(self) -> np.ndarray:
        """Time stamp of each day (NaT where ``update`` got none), shape ``(days,)``."""
        if not self._times:
            return np.zeros(0, dtype="datetime64[ns]")
        return np.concatenate(self._times)

    def update(self, pred: Any, truth: Any, time: Any = None) -> None:
        """Add a batch of days.

        Parameters
        ----------
        pred, truth
            Fields ``(days, y, x)`` (or one ``(y, x)`` day): numpy, torch or
            xarray; float32 is not copied to float64. The days are processed in
            blocks of about :data:`~downpour.metrics.day_stats.BLOCK_CELLS` cells.
        time
            Optional time stamps ``(days,)`` (datetime64), kept with the
            per-day statistics; :meth:`merge` orders and checks days by them.
        """
        p, t = _as_pair(pred, truth)
        _check_shapes(p, t, self.mask)
        stamps = _as_times(time, p.shape[0])
        thresholds = tuple(self.thresholds.values())
        step = max(1, BLOCK_CELLS // max(1, p.shape[1] * p.shape[2]))
        for i in range(0, p.shape[0], step):  # blocks of days that fit the cache
            stats, pn, tn = day_stats(
                np.ascontiguousarray(p[i : i + step]), np.ascontiguousarray(t[i : i + step]),
                self.mask, thresholds, self.scales, self.tail_threshold,
            )  # fmt: skip
            self._parts.append(stats)
            self.hist_pred.update(pn)
            self.hist_truth.update(tn)
        self._times.append(stamps)

    def merge(self, other: VerificationAccumulator) -> VerificationAccumulator:
        """Return an accumulator holding the days of both.

        When every day of both has a time stamp, the days are ordered by time,
        so merging pieces in any order gives the accumulator of one pass over
        the whole period (bootstrap intervals included); otherwise the days of
        ``self`` come first.

        Raises
        ------
        DownpourError
            For different thresholds, scales, tail threshold or mask, or when a
            time stamp is in both (the same day verified twice).
        """
        if (
            other.thresholds != self.thresholds
            or other.scales != self.scales
            or not _same(other.tail_threshold, self.tail_threshold)
            or (self.mask is None) != (other.mask is None)
            or (self.mask is not None and not np.array_equal(self.mask, other.mask))
        ):
            raise DownpourError(
                "verification: cannot merge accumulators with different thresholds, scales, "
                f"tail threshold or mask ({self.thresholds}, {self.scales} vs "
                f"{other.thresholds}, {other.scales})"
            )
        ta, tb = self.times, other.times
        both = np.intersect1d(ta[~np.isnat(ta)], tb[~np.isnat(tb)])
        if both.size:
            raise DownpourError(
                f"verification: cannot merge: {both.size} day(s) are in both accumulators, "
                f"the first {_day(both[0])}; verify non-overlapping periods"
            )
        out = VerificationAccumulator(
            self.thresholds, scales=self.scales, tail_threshold=self.tail_threshold, mask=self.mask
        )
        per_day = {k: np.concatenate([v, other._per_day[k]]) for k, v in self._per_day.items()}
        times = np.concatenate([ta, tb])
        if times.size and not np.isnat(times).any():
            order = np.argsort(times, kind="stable")
            per_day = {k: v[order] for k, v in per_day.items()}
            times = times[order]
        out._restore(
            per_day,
            times,
            self.hist_pred.merge(other.hist_pred),
            self.hist_truth.merge(other.hist_truth),
        )
        return out

    def _restore(
        self,
        per_day: dict[str, np.ndarray],
        times: np.ndarray,
        hist_pred: QuantileHistogram,
        hist_truth: QuantileHistogram,
    ) -> None:
        """Replace the accumulated days (used by :meth:`merge` and :meth:`load`)."""
        self._parts, self._times = [per_day], [times]
        self.hist_pred, self.hist_truth = hist_pred, hist_truth

    def save(self, path: str | Path) -> Path:
        """Write the whole state to an ``.npz`` file (atomically); :meth:`load` reads it back.

        See :func:`downpour.downscaling.verify_state.save_state`: a round trip is exact.

        Returns
        -------
        pathlib.Path
            ``path``.
        """
        from downpour.downscaling.verify_state import save_state

        return save_state(self, path)

    @classmethod
    def load(cls, path: str | Path) -> VerificationAccumulator:
        """Read an accumulator written by :meth:`save`.

        Raises
        ------
        DownpourError
            When the file is missing, is not such a state, or was written by
            another layout version.
        """
        from downpour.downscaling.verify_state import load_state

        return load_state(path)

    def _checked(self) -> dict[str, np.ndarray]:
        if self.n_days == 0:
            raise DownpourError("verification: no days were accumulated; nothing to verify")
        if int(self._per_day["n"].sum()) == 0:
            raise DownpourError(
                f"verification: no valid cell in {self.n_days} days: every cell is masked or "
                "NaN in the prediction or the truth"
            )
        return self._per_day

    def compute(self, *, tail_fit: bool = True) -> dict[str, Any]:
        """All scores of the accumulated days.

        Parameters
        ----------
        tail_fit
            Also fit the GPD tails of the daily domain maxima (key ``"gpd"``,
            see :func:`downpour.metrics.extremes.compare_gpd_tails`).

        Returns
        -------
        dict
            ``n_days``, ``thresholds``, ``scales``; ``categorical[name]`` with
            counts ``a b c d`` and ``csi pod far pofd sedi frequency_bias``;
            ``continuous`` with ``correlation mae rmse mae_tail n_valid n_tail
            tail_threshold p99_pred p99_truth p99_bias``; ``fss[name][scale]``;
            ``gpd``. Plain Python numbers (JSON-ready; FSS scale keys are ints).
        """
        pd = self._checked()
        est = {k: v[0] for k, v in _scores(pd, np.ones((1, self.n_days))).items()}
        totals = pd["counts"].sum(axis=0)
        categorical = {
            name: {
                **dict(zip("abcd", (int(x) for x in totals[i]), strict=True)),
                **{k: float(est[k][i]) for k in _CATEGORICAL},
            }
            for i, name in enumerate(self.thresholds)
        }
        p99_pred, p99_truth = self.hist_pred.quantile(0.99), self.hist_truth.quantile(0.99)
        continuous = {k: float(est[k]) for k in _CONTINUOUS}
        continuous.update(
            n_valid=int(pd["n"].sum()),
            n_tail=int(pd["n_tail"].sum()),
            tail_threshold=self.tail_threshold,
            p99_pred=p99_pred,
            p99_truth=p99_truth,
            p99_bias=p99_pred - p99_truth,
        )
        out: dict[str, Any] = {
            "n_days": self.n_days,
            "thresholds": dict(self.thresholds),
            "scales": list(self.scales),
            "categorical": categorical,
            "continuous": continuous,
            "fss": {
                name: {s: float(est["fss"][i, j]) for j, s in enumerate(self.scales)}
                for i, name in enumerate(self.thresholds)
            },
        }
        if tail_fit:
            out["gpd"] = compare_gpd_tails(pd["max_pred"], pd["max_truth"])
        return out

    def compute_with_intervals(
        self, n_boot: int = 1000, seed: int = 0, *, level: float = 0.95, tail_fit: bool = True
    ) -> dict[str, Any]:
        """:meth:`compute` plus bootstrap intervals that resample days.

        Returns
        -------
        dict
            The :meth:`compute` dict with ``"intervals"``: ``categorical[name][score]``,
            ``continuous[score]`` and ``fss[name][scale]``, each
            ``{"estimate", "low", "high"}``; plus ``n_boot``, ``seed``, ``level``.
        """
        pd = self._checked()
        out = self.compute(tail_fit=tail_fit)
        boot = bootstrap_days(
            lambda w: _scores(pd, w), self.n_days, n_boot=n_boot, seed=seed, level=level
        )
        assert isinstance(boot, dict)

        def leaf(r: BootstrapResult, *idx: int) -> dict[str, float]:
            return {k: float(np.asarray(v)[idx]) for k, v in r._asdict().items()}

        out["intervals"] = {
            "categorical": {
                name: {k: leaf(boot[k], i) for k in _CATEGORICAL}
                for i, name in enumerate(self.thresholds)
            },
            "continuous": {k: leaf(boot[k]) for k in _CONTINUOUS},
            "fss": {
                name: {s: leaf(boot["fss"], i, j) for j, s in enumerate(self.scales)}
                for i, name in enumerate(self.thresholds)
            },
            "n_boot": n_boot,
            "seed": seed,
            "level": level,
        }
        return out


def paired_difference(
    a: VerificationAccumulator,
    b: VerificationAccumulator,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Score differences ``a − b`` of two predictions of the same days, with paired intervals.

    Both accumulators must hold the same days in the same order (the same
    truth); each bootstrap resample draws one set of days for both, so the
    interval of the difference accounts for their correlation. A difference
    whose interval excludes 0 is significant at ``level``.

    Returns
    -------
    dict
        ``categorical[name][score]``, ``continuous[score]`` and
        ``fss[name][scale]``, each ``{"estimate", "low", "high", "significant"}``.
    """
    pa, pb = a._checked(), b._checked()
    if a.n_days != b.n_days or not np.array_equal(a.times.astype("int64"), b.times.astype("int64")):
        raise DownpourError(
            "paired_difference: the two predictions must cover the same days in the same order "
            f"({a.n_days} vs {b.n_days} days)"
        )
    if list(a.thresholds) != list(b.thresholds) or a.scales != b.scales:
        raise DownpourError("paired_difference: thresholds and scales must be the same")

    def diff(w: np.ndarray) -> dict[str, np.ndarray]:
        sa, sb = _scores(pa, w), _scores(pb, w)
        return {k: sa[k] - sb[k] for k in sa}

    boot = bootstrap_days(diff, a.n_days, n_boot=n_boot, seed=seed, level=level)
    assert isinstance(boot, dict)

    def leaf(r: BootstrapResult, *idx: int) -> dict[str, Any]:
        est, low, high = (float(np.asarray(v)[idx]) for v in r)
        return {"estimate": est, "low": low, "high": high, "significant": bool(low > 0 or high < 0)}

    return {
        "categorical": {
            name: {k: leaf(boot[k], i) for k in _CATEGORICAL} for i, name in enumerate(a.thresholds)
        },
        "continuous": {k: leaf(boot[k]) for k in _CONTINUOUS},
        "fss": {
            name: {s: leaf(boot["fss"], i, j) for j, s in enumerate(a.scales)}
            for i, name in enumerate(a.thresholds)
        },
        "n_boot": n_boot,
        "seed": seed,
        "level": level,
    }


# ------------------------------------------------------------------ entry points


def _finish(
    acc: VerificationAccumulator, n_boot: int, seed: int, level: float, tail_fit: bool
) -> dict[str, Any]:
    if n_boot > 0:
        return acc.compute_with_intervals(n_boot, seed, level=level, tail_fit=tail_fit)
    return acc.compute(tail_fit=tail_fit)


def verify_arrays(
    pred: Any,
    truth: Any,
    mask: Any,
    thresholds: Mapping[str, float],
    *,
    scales: Iterable[int] = DEFAULT_SCALES,
    tail_threshold: float | None = None,
    batch_days: int = 64,
    n_boot: int = 0,
    seed: int = 0,
    level: float = 0.95,
    tail_fit: bool = True,
) -> dict[str, Any]:
    """Verify in-memory fields ``(days, y, x)``, in batches of ``batch_days``.

    Parameters
    ----------
    pred, truth
        Fields ``(days, y, x)`` (numpy, torch or xarray), same shape.
    mask
        Boolean ``(y, x)``, True = valid; ``None`` = every cell.
    thresholds, scales, tail_threshold
        As in :class:`VerificationAccumulator`.
    batch_days
        Days per batch (bounds the temporaries of the FSS filters).
    n_boot
        Bootstrap resamples; 0 gives no intervals.
    seed, level
        Bootstrap seed and confidence level.
    tail_fit
        Include the GPD tail comparison.

    Returns
    -------
    dict
        :meth:`VerificationAccumulator.compute` (or ``compute_with_intervals``).
    """
    p, t = _as_days(pred, "prediction"), _as_days(truth, "truth")
    if p.shape != t.shape:
        _valid(p, t, None)  # raises the shape error
    acc = VerificationAccumulator(
        thresholds, scales=scales, tail_threshold=tail_threshold, mask=mask
    )
    for i in range(0, p.shape[0], max(1, batch_days)):
        acc.update(p[i : i + batch_days], t[i : i + batch_days])
    return _finish(acc, n_boot, seed, level, tail_fit)


def _name(da: xr.DataArray, default: str) -> str:
    return str(da.name) if da.name is not None else default


def _check_pair(pred: xr.DataArray, truth: xr.DataArray, time_dim: str) -> xr.DataArray:
    """Check dims, grid and time axis; return ``pred`` in ``truth``'s dim order."""
    pn, tn = _name(pred, "prediction"), _name(truth, "truth")
    for da, nm in ((pred, pn), (truth, tn)):
        if da.ndim != 3 or time_dim not in da.dims:
            raise DownpourError(
                f"verification: '{nm}' must have dims ({time_dim}, y, x), got {da.dims}"
            )
    if set(pred.dims) != set(truth.dims):
        raise DownpourError(
            f"verification: prediction '{pn}' dims {pred.dims} differ from truth '{tn}' dims "
            f"{truth.dims}"
        )
    pred = pred.transpose(*truth.dims)
    grid_p = {d: pred.sizes[d] for d in pred.dims if d != time_dim}
    grid_t = {d: truth.sizes[d] for d in truth.dims if d != time_dim}
    if grid_p != grid_t:
        raise DownpourError(
            f"verification: prediction '{pn}' grid {grid_p} differs from truth '{tn}' grid {grid_t}"
        )
    for dim in truth.dims:
        if dim == time_dim or dim not in pred.coords or dim not in truth.coords:
            continue
        a, b = pred[dim].values, truth[dim].values
        if a.shape != b.shape or not np.allclose(a, b):
            raise DownpourError(
                f"verification: prediction '{pn}' and truth '{tn}' have different '{dim}' "
                "coordinates; put both on the same grid first"
            )
    tp, tt = pred[time_dim].values, truth[time_dim].values
    if tp.shape != tt.shape or not np.array_equal(tp, tt):
        if tp.shape != tt.shape:
            detail = f"{tp.size} vs {tt.size} time steps"
        else:
            i = int(np.argmax(tp != tt))
            detail = f"first difference at position {i}: {tp[i]} vs {tt[i]}"
        raise DownpourError(
            f"verification: the time coordinates of prediction '{pn}' and truth '{tn}' differ "
            f"({detail}); select the same days in both, e.g. truth.sel({time_dim}=pred.{time_dim})"
        )
    return pred


def verify_dataset(
    pred: xr.DataArray,
    truth: xr.DataArray,
    mask: Any,
    thresholds: Mapping[str, float],
    *,
    batch_days: int = 64,
    scales: Iterable[int] = DEFAULT_SCALES,
    tail_threshold: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    tail_fit: bool = True,
    time_dim: str = "time",
) -> dict[str, Any]:
    """Verify two DataArrays ``(time, y, x)``, streaming ``batch_days`` at a time.

    Only one batch of each array is loaded at a time (a dask-backed array is
    computed batch by batch), so a multi-year test set never sits in memory.

    Parameters
    ----------
    pred, truth
        DataArrays with dims ``(time_dim, y, x)`` in any order and identical
        time coordinates; spatial coordinates, where both have them, must agree.
    mask
        Boolean (or 0/1) ``(y, x)`` array or DataArray, True = valid; ``None`` = all.
    thresholds, scales, tail_threshold
        As in :class:`VerificationAccumulator`.
    batch_days
        Days loaded per batch.
    n_boot, seed, level
        Bootstrap intervals over days (``n_boot=0``: none).
    tail_fit
        Include the GPD tail comparison.
    time_dim
        Name of the time dimension.

    Returns
    -------
    dict
        As :func:`verify_arrays`, plus ``"period"``: first and last time stamp.

    Raises
    ------
    DownpourError
        For mismatched dims, grids or time coordinates (naming both arrays),
        a mask without valid cell, or no valid data.
    """
    pred = _check_pair(pred, truth, time_dim)
    if isinstance(mask, xr.DataArray):
        space = [d for d in truth.dims if d != time_dim]
        if set(mask.dims) != set(space):
            raise DownpourError(
                f"verification: mask dims {mask.dims} do not match the grid dims {tuple(space)} "
                f"of truth '{_name(truth, 'truth')}'"
            )
        mask = mask.transpose(*space).values
    truth = truth.transpose(time_dim, ...)
    pred = pred.transpose(time_dim, ...)
    acc = VerificationAccumulator(
        thresholds, scales=scales, tail_threshold=tail_threshold, mask=mask
    )
    times = truth[time_dim].values
    step = max(1, batch_days)
    for i in range(0, times.size, step):
        sl = {time_dim: slice(i, i + step)}
        acc.update(pred.isel(sl).values, truth.isel(sl).values, time=times[i : i + step])
    out = _finish(acc, n_boot, seed, level, tail_fit)
    out["period"] = [str(times[0]), str(times[-1])] if times.size else []
    return out
