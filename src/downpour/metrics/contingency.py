"""Contingency tables of events and the scores made of them: CSI, POD, FAR, POFD, SEDI, FSS sums.

An **event** is ``value > threshold`` (strict). Contingency counts per
threshold and day: hits ``a`` (pred and truth events), false alarms ``b``
(pred only), misses ``c`` (truth only), correct negatives ``d``; cells that
are masked or NaN in either field count nowhere. Scores: CSI ``a/(a+b+c)``;
POD ``H = a/(a+c)``; ``far`` is the false-alarm **ratio** ``b/(a+b)``;
``pofd`` is the false-alarm **rate** ``F = b/(b+d)``; SEDI from H and F
clipped to ``[1e-6, 1 - 1e-6]``; ``frequency_bias = (a+b)/(a+c)``. An
undefined ratio (0/0) is NaN. See :mod:`downpour.metrics.verification` for
every convention, FSS included.

Examples
--------
>>> pred = np.array([[[10.0, 5.0, 12.0], [20.0, 3.0, 11.0]]])
>>> truth = np.array([[[0.0, 12.0, 15.0], [4.0, 3.0, 9.0]]])
>>> counts = contingency_counts(pred, truth, 10.0)
>>> counts.tolist()
[[1, 2, 1, 2]]
>>> round(float(categorical_scores(*counts[0])["csi"]), 3)
0.25
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from downpour.metrics.day_stats import contingency, count_cells, threshold_for
from downpour.metrics.fss import fss_day_sums
from downpour.metrics.inputs import as_mask, as_pair, check_scales, valid_cells

__all__ = ["categorical_scores", "contingency_counts", "fss_sums", "sedi"]

_SEDI_CLIP = 1e-6


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
    p, t = as_pair(pred, truth)
    valid = valid_cells(p, t, as_mask(mask))
    return contingency(*_events(p, t, valid, threshold), count_cells(valid))


def fss_sums(
    pred: Any, truth: Any, threshold: float, scales: Iterable[int], mask: Any = None
) -> np.ndarray:
    """Per-day FSS sums ``(Σ(Pf−Po)², ΣPf², ΣPo²)`` for each scale.

    ``FSS = 1 − Σ(Pf−Po)² / (ΣPf² + ΣPo²)`` after summing over days (see
    :mod:`downpour.metrics.verification` for the edge and mask conventions).

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
    p, t = as_pair(pred, truth)
    valid = valid_cells(p, t, as_mask(mask))
    pe, te = _events(p, t, valid, threshold)
    counts = contingency(pe, te, count_cells(valid))[:, None]
    return fss_day_sums([pe], [te], valid, check_scales(scales), counts)[:, 0]
