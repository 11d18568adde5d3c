"""Scores of event probabilities from day-weighted sums: Brier, BSS, ROC area, reliability.

Definitions: docs/metrics.md#probabilistic-verification.

:class:`downpour.metrics.probability.ProbabilityAccumulator` keeps, per day
and event, the valid cells ``n``, the squared-error sum ``Σ(p − o)²``, the
cells and observed events of every probability bin of :func:`bin_index`,
and ``Σp`` per reliability-diagram bin. Every score here is a function of
day-weighted sums of those (:func:`event_scores`), so all-ones weights give
the estimate and bootstrap counts a resample (:mod:`downpour.metrics.bootstrap`).

Bins. Exact 0 and exact 1 have bins of their own; between them the interior
edges ``e_1 < … < e_m`` (:func:`bin_edges`) are spaced evenly in
``logit(p)`` from 1e-6 to 1 − 1e-6 (200 bins by default: each about 14 %
wide relative to ``p`` near 0, so the forecasts of a rare event, mostly below
0.01, are not lumped into one bin), joined with the edges of the reliability
diagram (so that diagram bins are unions of fine bins). Bin 0 holds
``p = 0``, bin 1 ``0 < p < e_1``, bin ``k + 1`` ``e_k ≤ p < e_{k+1}``, bin
``m + 1`` ``e_m ≤ p < 1`` and bin ``m + 2`` ``p = 1``.

ROC area: the trapezoid area under the ROC curve whose points are the
decisions "event when the bin is ≥ k". It equals the Mann–Whitney
probability that an event cell's bin is above a non-event cell's, pairs in
the same bin counting ½. The exact area (pairs counted by their exact
probabilities) differs only through event/non-event pairs that share an
interior bin without sharing the probability, each worth at most ½, so
``|AUC_binned − AUC_exact| ≤ ½ Σ_interior e_k·m_k / (E·M)`` (``e_k``, ``m_k``:
events and non-events in bin ``k``; ``E``, ``M``: their totals); this bound
is reported as ``roc_auc_bin_error``. It is 0 for a 0/1 forecast.

Examples
--------
>>> edges = bin_edges(4, [0.0, 0.5, 1.0])
>>> edges.round(6).tolist()
[1e-06, 0.000999, 0.5, 0.999001, 0.999999]
>>> bin_index(np.array([0.0, 1e-7, 0.3, 0.5, 0.9999999, 1.0]), edges).tolist()
[0, 1, 3, 4, 6, 7]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from downpour.core.errors import DownpourError

__all__ = [
    "DEFAULT_BINS",
    "DIAGRAM_EDGES",
    "EVENT_SCORES",
    "P_MIN",
    "bin_edges",
    "bin_index",
    "check_diagram_edges",
    "diagram_index",
    "event_scores",
    "reliability_diagram",
]

#: Bootstrapped scores per event (keys of :func:`event_scores`).
EVENT_SCORES = ("brier", "brier_reference", "bss", "roc_auc", "base_rate")
#: Interior fine bins, evenly spaced in logit(p) between :data:`P_MIN` and 1 − :data:`P_MIN`.
DEFAULT_BINS = 200
#: Range of the logit-spaced edges.
P_MIN = 1e-6
#: Edges of the reliability diagram: 1-2-5 steps up to 0.1 (rare events), then tenths.
DIAGRAM_EDGES = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, *(np.arange(1, 11) / 10).tolist())


def check_diagram_edges(edges: Sequence[float]) -> np.ndarray:
    """Diagram edges as float64: strictly increasing from 0 to 1, at least one bin."""
    d = np.asarray(edges, dtype=np.float64).ravel()
    if d.size < 2 or d[0] != 0.0 or d[-1] != 1.0 or np.any(np.diff(d) <= 0):
        raise DownpourError(
            f"probability verification: diagram edges must rise strictly from 0 to 1, got "
            f"{d.tolist()}"
        )
    return d


def bin_edges(bins: int | Sequence[float], diagram_edges: Sequence[float]) -> np.ndarray:
    """Interior edges of the fine bins, float64 ``(m,)`` strictly inside ``(0, 1)``.

    Parameters
    ----------
    bins
        Number of bins evenly spaced in ``logit(p)`` between 1e-6 and 1 − 1e-6,
        or explicit interior edges (e.g. those of a saved state).
    diagram_edges
        Edges of the reliability diagram, added to the fine edges.
    """
    if isinstance(bins, int | np.integer):
        if bins < 1:
            raise DownpourError(f"probability verification: bins must be positive, got {bins}")
        lim = np.log(P_MIN / (1.0 - P_MIN))
        inner = 1.0 / (1.0 + np.exp(-np.linspace(lim, -lim, int(bins) + 1)))
    else:
        inner = np.asarray(bins, dtype=np.float64).ravel()
    edges = np.union1d(inner, check_diagram_edges(diagram_edges)[1:-1])
    if edges.size == 0 or not (np.all(edges > 0) and np.all(edges < 1)):
        raise DownpourError(
            f"probability verification: bin edges must lie inside (0, 1), got {edges.tolist()}"
        )
    return edges


def bin_index(p: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Fine bin of each ``p`` in ``[0, 1]`` (module docstring): int64, 0 … ``len(edges) + 2``."""
    p = np.asarray(p, dtype=np.float64)
    inner = 1 + np.searchsorted(edges, p, side="right")
    return np.where(p <= 0.0, 0, np.where(p >= 1.0, edges.size + 2, inner))


def diagram_index(edges: np.ndarray, diagram_edges: np.ndarray) -> np.ndarray:
    """Diagram bin of every fine bin, int64 ``(len(edges) + 3,)`` (a fine bin lies in one)."""
    lower = np.concatenate([[0.0, 0.0], edges, [1.0]])  # lower edge of each fine bin
    d = diagram_edges.size - 1
    return np.clip(np.searchsorted(diagram_edges, lower, side="right") - 1, 0, d - 1)


def event_scores(
    cols: Mapping[str, np.ndarray], w: np.ndarray, climatology: np.ndarray
) -> dict[str, np.ndarray]:
    """Scores of every event for day weights ``w`` ``(B, days)``: arrays ``(B, events)``.

    Parameters
    ----------
    cols
        Per-day statistics: ``n`` ``(days,)``, ``sum_sq`` ``(days, events)``,
        ``count_bins`` and ``event_bins`` ``(days, events, bins)``.
    w
        Day weights ``(B, days)``.
    climatology
        Reference probability per event ``(events,)``; NaN = the (resampled)
        base rate of the sample itself.

    Returns
    -------
    dict
        ``brier`` (mean ``(p − o)²``), ``brier_reference`` (that of the
        constant reference probability), ``bss`` (``1 − brier/brier_reference``,
        NaN when the reference is perfect), ``roc_auc`` (NaN without events or
        without non-events), ``roc_auc_bin_error`` (the bound of the module
        docstring) and ``base_rate``.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        n = (w @ cols["n"].astype(np.float64))[:, None]
        counts = np.tensordot(w, cols["count_bins"].astype(np.float64), axes=(1, 0))
        events = np.tensordot(w, cols["event_bins"].astype(np.float64), axes=(1, 0))
        non = counts - events
        n_ev, n_non = events.sum(axis=-1), non.sum(axis=-1)
        base = n_ev / n
        brier = (w @ cols["sum_sq"]) / n
        c = np.where(np.isnan(climatology), base, climatology)
        ref = ((n - n_ev) * c * c + n_ev * (1.0 - c) ** 2) / n
        bss = np.where(ref > 0, 1.0 - brier / ref, np.nan)
        above = n_ev[..., None] - np.cumsum(events, axis=-1)  # events in higher bins
        pairs = n_ev * n_non
        auc = (non * (above + 0.5 * events)).sum(axis=-1) / pairs
        err = 0.5 * (non * events)[..., 1:-1].sum(axis=-1) / pairs
    defined = pairs > 0
    return {
        "brier": brier,
        "brier_reference": ref,
        "bss": bss,
        "roc_auc": np.where(defined, auc, np.nan),
        "roc_auc_bin_error": np.where(defined, err, np.nan),
        "base_rate": base,
    }


def reliability_diagram(
    counts: np.ndarray, events: np.ndarray, sum_p: np.ndarray, diagram_edges: np.ndarray
) -> dict[str, Any]:
    """Return the reliability diagram of one event from its totals.

    Parameters
    ----------
    counts, events, sum_p
        Totals over days per diagram bin ``(D,)``: cells, observed events, sum
        of forecast probabilities.
    diagram_edges
        ``(D + 1,)`` edges from 0 to 1: bin ``i`` is ``[d_i, d_{i+1})``, the
        last one closed (``p = 1`` included).

    Returns
    -------
    dict
        Lists of length D (JSON-ready): ``bin_lower``, ``bin_upper``,
        ``mean_probability`` (mean forecast probability of the bin's cells),
        ``observed_frequency`` (fraction of them with an event), ``count``;
        the means are NaN for an empty bin.

    Examples
    --------
    >>> d = reliability_diagram(np.array([3, 1]), np.array([1, 1]), np.array([0.0, 1.0]),
    ...                         np.array([0.0, 0.5, 1.0]))
    >>> d["observed_frequency"], d["mean_probability"]
    ([0.3333333333333333, 1.0], [0.0, 1.0])
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        freq, mean_p = events / counts, sum_p / counts
    return {
        "bin_lower": diagram_edges[:-1].tolist(),
        "bin_upper": diagram_edges[1:].tolist(),
        "mean_probability": [float(x) for x in mean_p],
        "observed_frequency": [float(x) for x in freq],
        "count": [int(x) for x in counts],
    }
