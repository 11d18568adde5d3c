"""Distributional output in ``downpour verify``: quantile heads, exceedance probabilities.

A quantile SRDRN predicts ``(time, quantile, y, x)``. :func:`split_heads`
turns it into point forecasts, so that every head gets the deterministic
scores of :mod:`downpour.downscaling.verify` (CSI, POD, FAR, SEDI, frequency
bias, correlation, MAE, FSS): the median head under the model's own name
(the head scored as its point forecast) and each other head as
``"<name> q<τ>"``. :func:`accumulate_probabilistic` scores the distribution
(docs/metrics.md#probabilistic-verification):

- every quantile model with a :class:`~downpour.metrics.quantiles.QuantileAccumulator`:
  pinball score and quantile reliability per τ (ties of the truth with a head,
  e.g. both 0 on dry cells, by the rule stated there), and the exceedance
  probabilities at P95 and P99 derived from the heads
  (:func:`~downpour.metrics.exceedance.exceedance_probability`): Brier score,
  Brier skill score against the **training climatology**
  (:func:`training_climatology`), ROC area, reliability diagram;
- every deterministic forecast (SRDRN, bicubic, BCSD) as a 0/1 probability
  forecast ``1(pred > threshold)`` with the same scores, so that the BSS of
  the quantile model and of BCSD compare on the same days and cells.

:func:`score_probabilistic` adds bootstrap intervals over days and paired
differences: each quantile model against BCSD and against the deterministic
SRDRN of the same training data (``qsrdrn_real`` ↔ ``srdrn_real``) on the
event scores, and augmented against real-only on the pinball score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from downpour.core.errors import DownpourError
from downpour.downscaling.store import labels, open_store
from downpour.metrics.probabilistic_pairs import (
    paired_event_difference,
    paired_quantile_difference,
)
from downpour.metrics.probability import ProbabilityAccumulator
from downpour.metrics.quantiles import QuantileAccumulator
from downpour.models.srdrn import median_head

__all__ = [
    "EVENTS",
    "accumulate_probabilistic",
    "head_name",
    "probabilistic_pairs",
    "score_probabilistic",
    "split_heads",
    "training_climatology",
]

#: Thresholds (names in the store's ``thresholds``) whose exceedance probabilities are scored.
EVENTS = ("P95", "P99")


def head_name(model: str, tau: float) -> str:
    """Return the name a non-median head is scored under, e.g. ``"qsrdrn_real q0.99"``.

    Examples
    --------
    >>> head_name("qsrdrn_real", 0.99)
    'qsrdrn_real q0.99'
    """
    return f"{model} q{float(tau):g}"


def split_heads(
    predictions: Mapping[str, xr.DataArray],
) -> tuple[dict[str, xr.DataArray], dict[str, xr.DataArray]]:
    """Split predictions into point forecasts and quantile forecasts.

    Parameters
    ----------
    predictions
        ``{name: (time, y, x)}`` or, for a quantile model, ``(time, quantile, y, x)``
        with the levels as the ``quantile`` coordinate.

    Returns
    -------
    (dict, dict)
        Point forecasts ``{name: (time, y, x)}``: deterministic models as
        given, the median head of a quantile model under its name and each of
        its other heads under :func:`head_name`; and the quantile models
        ``{name: (time, quantile, y, x)}``.

    Examples
    --------
    >>> q = xr.DataArray(np.zeros((2, 3, 1, 1)), dims=("time", "quantile", "y", "x"),
    ...                  coords={"quantile": [0.5, 0.9, 0.99]})
    >>> point, quant = split_heads({"q": q, "d": q.isel(quantile=0, drop=True)})
    >>> list(point), list(quant)
    (['q', 'q q0.9', 'q q0.99', 'd'], ['q'])
    """
    point: dict[str, xr.DataArray] = {}
    quant: dict[str, xr.DataArray] = {}
    for name, pred in predictions.items():
        if "quantile" not in pred.dims:
            point[name] = pred
            continue
        taus = [float(t) for t in pred["quantile"].values]
        mid = median_head(taus)
        quant[name] = pred
        point[name] = pred.isel(quantile=mid, drop=True)
        for k, tau in enumerate(taus):
            if k != mid:
                point[head_name(name, tau)] = pred.isel(quantile=k, drop=True)
    return point, quant


def training_climatology(
    store: str | Path,
    thresholds: Mapping[str, float],
    mask: np.ndarray,
    *,
    batch_days: int = 64,
) -> dict[str, float]:
    """Return the base rate of each event ``y > t`` over valid cells of the real training days.

    The reference forecast of the Brier skill score: a forecaster who knows
    only the training climate issues this probability everywhere, every day.

    Parameters
    ----------
    store
        The real store.
    thresholds
        ``{name: threshold}`` in the store's units.
    mask
        ``(y, x)`` valid cells.
    batch_days
        Days read at a time.

    Returns
    -------
    dict
        ``{name: fraction}``.

    Raises
    ------
    DownpourError
        The store has no real training day with a valid cell.
    """
    ds = open_store(store)
    try:
        split = labels(np.asarray(ds["split"].values))
        real = ~np.asarray(ds["is_synthetic"].values).astype(bool)
        rows = np.flatnonzero((split == "train") & real)
        thr = np.array([float(v) for v in thresholds.values()], dtype=np.float64)
        hits = np.zeros(thr.size, dtype=np.int64)
        n = 0
        for start in range(0, rows.size, batch_days):
            y = np.asarray(ds["target"].isel(time=rows[start : start + batch_days]).values)
            vals = y[:, mask]
            vals = vals[np.isfinite(vals)]
            n += vals.size
            hits += (vals[:, None] > thr.astype(vals.dtype)[None]).sum(axis=0)
    finally:
        ds.close()
    if n == 0:
        raise DownpourError(f"{store}: no valid cell on any real training day for the climatology")
    return {name: float(h / n) for name, h in zip(thresholds, hits, strict=True)}


def accumulate_probabilistic(
    quantile_preds: Mapping[str, xr.DataArray],
    point_preds: Mapping[str, xr.DataArray],
    truth: xr.DataArray,
    mask: np.ndarray,
    events: Mapping[str, float],
    climatology: Mapping[str, float],
    *,
    batch_days: int = 64,
) -> tuple[dict[str, QuantileAccumulator], dict[str, ProbabilityAccumulator]]:
    """Accumulate quantile models and deterministic models as 0/1 forecasts, streaming over days.

    Parameters
    ----------
    quantile_preds
        ``{name: (time, quantile, y, x)}`` (see :func:`split_heads`).
    point_preds
        ``{name: (time, y, x)}`` of the deterministic models (not the heads).
    truth
        ``(time, y, x)``, the days of every prediction in the same order.
    mask
        ``(y, x)`` valid cells.
    events
        ``{name: threshold}`` of the exceedance events.
    climatology
        ``{name: training base rate}``, the reference of the Brier skill score.
    batch_days
        Days loaded per batch.

    Returns
    -------
    (dict, dict)
        ``{name: QuantileAccumulator}`` and ``{name: ProbabilityAccumulator}``.
    """
    times = np.asarray(truth["time"].values)
    for name, pred in {**quantile_preds, **point_preds}.items():
        pt = np.asarray(pred["time"].values)
        if pt.shape != times.shape or (pt != times).any():
            raise DownpourError(
                f"verification: prediction {name!r} covers other days than the truth "
                f"({pt.size} vs {times.size} days); predict the same split of the same store"
            )
    qaccs = {
        name: QuantileAccumulator(
            [float(t) for t in pred["quantile"].values],
            thresholds=events,
            climatology=climatology,
            mask=mask,
        )
        for name, pred in quantile_preds.items()
    }
    paccs = {
        name: ProbabilityAccumulator(events, climatology=climatology, mask=mask)
        for name in point_preds
    }
    for i in range(0, times.size, batch_days):
        sl = slice(i, i + batch_days)
        t = np.asarray(truth.isel(time=sl).values)
        for name, pred in quantile_preds.items():
            q = pred.isel(time=sl).transpose("time", "quantile", ...)
            qaccs[name].update(np.asarray(q.values), t, time=times[sl])
        for name, pred in point_preds.items():
            paccs[name].update_deterministic(np.asarray(pred.isel(time=sl).values), t, times[sl])
    return qaccs, paccs


def probabilistic_pairs(
    quantile_names: Sequence[str], point_names: Sequence[str]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Default comparisons: event-score pairs and pinball pairs (``a − b``).

    Each quantile model against ``bcsd`` and against the deterministic SRDRN
    trained on the same data (``qsrdrn_x`` ↔ ``srdrn_x``); quantile models
    ``…_augmented`` against ``…_real`` on the pinball score.

    Examples
    --------
    >>> probabilistic_pairs(["qsrdrn_real", "qsrdrn_augmented"], ["srdrn_real", "bcsd"])
    ([('qsrdrn_real', 'bcsd'), ('qsrdrn_real', 'srdrn_real'), ('qsrdrn_augmented', 'bcsd')], \
[('qsrdrn_augmented', 'qsrdrn_real')])
    """
    events: list[tuple[str, str]] = []
    for q in quantile_names:
        if "bcsd" in point_names:
            events.append((q, "bcsd"))
        twin = q[1:] if q.startswith("q") else None
        if twin in point_names:
            events.append((q, twin))
    pinball = [
        (q, q[: -len("_augmented")] + "_real")
        for q in quantile_names
        if q.endswith("_augmented") and q[: -len("_augmented")] + "_real" in quantile_names
    ]
    return events, pinball


def score_probabilistic(
    qaccs: Mapping[str, QuantileAccumulator],
    paccs: Mapping[str, ProbabilityAccumulator],
    *,
    events: Mapping[str, float] | None = None,
    climatology: Mapping[str, float] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Scores with bootstrap intervals and paired differences (:func:`probabilistic_pairs`).

    Returns
    -------
    dict
        ``events`` and ``climatology`` (as given, for the record),
        ``quantile_models[name]`` (:meth:`QuantileAccumulator.compute_with_intervals`),
        ``probability_models[name]`` (0/1 forecasts,
        :meth:`ProbabilityAccumulator.compute_with_intervals`),
        ``probability_differences["a − b"]`` (:func:`paired_event_difference`)
        and ``quantile_differences["a − b"]`` (:func:`paired_quantile_difference`).
    """
    everything: dict[str, QuantileAccumulator | ProbabilityAccumulator] = {**paccs, **qaccs}
    event_pairs, pinball_pairs = probabilistic_pairs(list(qaccs), list(paccs))
    return {
        "events": dict(events or {}),
        "climatology": dict(climatology or {}),
        "quantile_models": {n: a.compute_with_intervals(n_boot, seed) for n, a in qaccs.items()},
        "probability_models": {n: a.compute_with_intervals(n_boot, seed) for n, a in paccs.items()},
        "probability_differences": {
            f"{a} − {b}": paired_event_difference(
                everything[a], everything[b], n_boot=n_boot, seed=seed
            )
            for a, b in event_pairs
        },
        "quantile_differences": {
            f"{a} − {b}": paired_quantile_difference(qaccs[a], qaccs[b], n_boot=n_boot, seed=seed)
            for a, b in pinball_pairs
        },
    }
