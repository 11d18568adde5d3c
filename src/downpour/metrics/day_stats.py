"""Per-day sufficient statistics of a batch of fields: the verification hot path.

:class:`downpour.metrics.accumulator.VerificationAccumulator` turns each
batch ``(days, y, x)`` of prediction and truth into a few numbers per day
(:data:`DAY_KEYS`, contingency counts, FSS sums) with :func:`day_stats`; every
score is a function of sums of these over days.

How it stays fast and exact
---------------------------
- The fields keep their dtype (float32 stays float32): validity, events and
  maxima are computed on it. A float64 threshold ``u`` is compared with
  float32 values through :func:`threshold_for`, the largest float32 not above
  ``u``, so ``x > u`` is decided exactly as in float64.
- Sums are accumulated in float64 from float64 copies of one block of days at
  a time (:data:`BLOCK_CELLS` cells, sized for the cache); float32 values,
  their differences and products are exact in float64.
- The correlation's per-day co-moments are centred on the day's mean (no
  ``Σp² − n·p̄²`` cancellation).
- Each threshold's event fields are computed once and serve the contingency
  counts and the FSS (:mod:`downpour.metrics.fss`: exact integer window counts).
- No Python loop runs over days or cells; loops run over blocks of days,
  thresholds and scales.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from downpour.metrics.fss import fss_day_sums

__all__ = [
    "BLOCK_CELLS",
    "DAY_KEYS",
    "INT_KEYS",
    "contingency",
    "count_cells",
    "day_stats",
    "threshold_for",
]

#: Cells (days × y × x) processed together: float64 blocks of 2 MiB.
BLOCK_CELLS = 1 << 18

#: Scalar per-day statistics (besides ``counts`` and ``fss``).
DAY_KEYS = (
    "n",
    "n_tail",
    "sum_abs",
    "sum_sq",
    "sum_abs_tail",
    "sum_p",
    "sum_t",
    "m_pp",
    "m_tt",
    "m_pt",
    "max_pred",
    "max_truth",
    "n_missing_truth",
    "n_bad_pred",
)
#: Integer keys: valid cells, tail cells, and the cells left out of the scores
#: (inside the mask, truth missing; inside the mask, truth present but the
#: prediction NaN or infinite), so that nothing is dropped without a count.
INT_KEYS = ("n", "n_tail", "n_missing_truth", "n_bad_pred")


def threshold_for(threshold: float, dtype: np.dtype) -> np.floating:
    """Return the threshold in ``dtype`` with ``x > result`` iff ``float(x) > threshold``.

    For float32 data this is the largest float32 not above ``threshold``
    (rounding to nearest could turn ``x > u`` into ``x > x`` for the float32
    ``x`` just above ``u``); for float64 data it is ``threshold`` itself.

    Examples
    --------
    >>> x = np.float32(10.05)  # 10.0500001907...
    >>> bool(x > threshold_for(10.05, np.dtype(np.float32)))
    True
    """
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return np.float64(threshold)
    with np.errstate(over="ignore"):
        cut = dtype.type(threshold)
    if float(cut) > threshold:
        cut = np.nextafter(cut, dtype.type(-np.inf))
    return cut


def count_cells(x: np.ndarray) -> np.ndarray:
    """Count the True cells of each day of a boolean ``(days, y, x)`` array: int64 ``(days,)``."""
    flat = x.reshape(x.shape[0], -1).view(np.uint8)
    return flat.sum(axis=1, dtype=np.int32 if flat.shape[1] < 2**31 else np.int64).astype(np.int64)


def contingency(pred_events: np.ndarray, truth_events: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Per-day hits, false alarms, misses, correct negatives: int64 ``(days, 4)``.

    ``pred_events`` and ``truth_events`` are boolean ``(days, y, x)`` (no event
    at invalid cells) and ``n`` the valid cells of each day.
    """
    a = count_cells(pred_events & truth_events)
    npe, nte = count_cells(pred_events), count_cells(truth_events)
    return np.stack([a, npe - a, nte - a, n - npe - nte + a], axis=-1)


def _validity(
    p: np.ndarray, t: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Return valid cells, both fields with NaN at invalid cells, and whether all is finite."""
    fin_p, fin_t = np.isfinite(p), np.isfinite(t)
    if fin_p.all() and fin_t.all():  # the usual case: only the static mask
        if mask is None:
            return np.ones(p.shape, dtype=bool), p, t, True
        nan_add = np.where(mask, 0.0, np.nan).astype(p.dtype)
        return np.broadcast_to(mask, p.shape).copy(), p + nan_add, t + nan_add, True
    valid = fin_p & fin_t
    if mask is not None:
        valid &= mask
    nan = p.dtype.type(np.nan)
    return valid, np.where(valid, p, nan), np.where(valid, t, nan), False


def _excluded(
    p: np.ndarray, t: np.ndarray, mask: np.ndarray | None, finite: bool
) -> dict[str, np.ndarray]:
    """Per-day counts of mask cells left out: truth missing, or prediction not finite."""
    days = p.shape[0]
    if finite:
        zero = np.zeros(days, dtype=np.int64)
        return {"n_missing_truth": zero, "n_bad_pred": zero.copy()}
    inside = np.ones(p.shape[1:], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    fin_t = np.isfinite(t)
    return {
        "n_missing_truth": count_cells(~fin_t & inside),
        "n_bad_pred": count_cells(fin_t & ~np.isfinite(p) & inside),
    }


def _zeroed64(x: np.ndarray, valid: np.ndarray, finite: bool) -> np.ndarray:
    """Float64 copy of ``x`` with 0 at invalid cells (a multiply when ``x`` is all finite)."""
    if finite:
        return np.multiply(x, valid, dtype=np.float64)
    return np.where(valid, x, np.float64(0.0))


def _continuous(
    p: np.ndarray,
    t: np.ndarray,
    pn: np.ndarray,
    tn: np.ndarray,
    valid: np.ndarray,
    finite: bool,
    tail: np.floating,
) -> dict[str, np.ndarray]:
    """Float64 sums of one block (``pn``, ``tn``: the fields with NaN at invalid cells)."""
    n = count_cells(valid)
    p64, t64 = _zeroed64(p, valid, finite), _zeroed64(t, valid, finite)
    axes = (1, 2)
    sum_p, sum_t = p64.sum(axes), t64.sum(axes)
    err = p64 - t64
    sum_sq = np.einsum("dij,dij->d", err, err)
    np.abs(err, out=err)
    sum_abs = err.sum(axes)
    with np.errstate(invalid="ignore"):
        tail_cells = tn > tail  # NaN (invalid) is no tail cell
    np.multiply(err, tail_cells, out=err)
    nn = np.maximum(n, 1).astype(np.float64)[:, None, None]
    p64 -= sum_p[:, None, None] / nn
    t64 -= sum_t[:, None, None] / nn
    p64 *= valid
    t64 *= valid
    return {
        "n": n,
        "n_tail": count_cells(tail_cells),
        "sum_abs": sum_abs,
        "sum_sq": sum_sq,
        "sum_abs_tail": err.sum(axes),
        "sum_p": sum_p,
        "sum_t": sum_t,
        "m_pp": np.einsum("dij,dij->d", p64, p64),
        "m_tt": np.einsum("dij,dij->d", t64, t64),
        "m_pt": np.einsum("dij,dij->d", p64, t64),
        "max_pred": np.fmax.reduce(pn.reshape(pn.shape[0], -1), axis=1).astype(np.float64),
        "max_truth": np.fmax.reduce(tn.reshape(tn.shape[0], -1), axis=1).astype(np.float64),
    }


def day_stats(
    p: np.ndarray,
    t: np.ndarray,
    mask: np.ndarray | None,
    thresholds: Sequence[float],
    scales: Sequence[int],
    tail: float,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Sufficient statistics of each day of one block of fields.

    Parameters
    ----------
    p, t
        Prediction and truth ``(days, y, x)``, both float32 or both float64;
        keep ``days × y × x`` near :data:`BLOCK_CELLS` for speed.
    mask
        Boolean ``(y, x)``, True = valid, or ``None``. Non-finite cells of
        either field are invalid as well.
    thresholds
        Event thresholds (event: ``value > threshold``).
    scales
        FSS window sizes in cells.
    tail
        Truth threshold of MAE_tail (NaN: no tail cell).

    Returns
    -------
    (dict, numpy.ndarray, numpy.ndarray)
        The statistics: :data:`DAY_KEYS` (each ``(days,)``; ``n``, ``n_tail``,
        ``n_missing_truth`` and ``n_bad_pred`` int64, the rest float64;
        ``max_*`` NaN on a day without valid cell),
        ``counts`` int64 ``(days, thresholds, 4)`` (a, b, c, d) and ``fss``
        float64 ``(days, thresholds, scales, 3)``; then prediction and truth
        with NaN at every invalid cell (for the quantile histograms).
    """
    valid, pn, tn, finite = _validity(p, t, mask)
    out = _continuous(p, t, pn, tn, valid, finite, threshold_for(tail, p.dtype))
    out.update(_excluded(p, t, mask, finite))
    n = out["n"]
    pred_events, truth_events, counts = [], [], []
    with np.errstate(invalid="ignore"):
        for thr in thresholds:
            cut = threshold_for(thr, p.dtype)
            pe, te = pn > cut, tn > cut  # NaN (invalid) is no event
            counts.append(contingency(pe, te, n))
            pred_events.append(pe)
            truth_events.append(te)
    out["counts"] = np.stack(counts, axis=1)
    out["fss"] = fss_day_sums(pred_events, truth_events, valid, scales, out["counts"])
    return out, pn, tn
