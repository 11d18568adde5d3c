"""Paired differences of probabilistic scores of two forecasts of the same days.

Definitions: docs/metrics.md#probabilistic-verification.

As :func:`downpour.metrics.verification.paired_difference` for the
deterministic scores: both forecasts must hold the same days (same time
stamps, same order) and the same valid cells on every day; each bootstrap
resample draws one set of days for both, so the interval of ``a − b``
accounts for their correlation, and a difference is **significant** when its
interval excludes 0.

- :func:`paired_event_difference`: Brier score, Brier skill score and ROC area
  per event, e.g. the exceedance probabilities of a quantile SRDRN against
  BCSD as a 0/1 forecast (both
  :class:`~downpour.metrics.probability.ProbabilityAccumulator`; a
  :class:`~downpour.metrics.quantiles.QuantileAccumulator` stands for its
  ``probabilities``);
- :func:`paired_quantile_difference`: the pinball score per level of two
  quantile forecasts at the same levels;
- :func:`paired_crps_difference`: the CRPS of an ensemble against a
  deterministic forecast's MAE (its CRPS), as a difference and a ratio.

Examples
--------
>>> from downpour.metrics.probability import ProbabilityAccumulator
>>> truth = np.array([[[7.0, 1.0]], [[0.0, 9.0]]])
>>> a, b = (ProbabilityAccumulator({"5mm": 5.0}) for _ in range(2))
>>> a.update(np.array([[[0.9, 0.1]], [[0.2, 0.7]]]), truth)
>>> b.update_deterministic(np.array([[[6.0, 6.0]], [[0.0, 0.0]]]), truth)
>>> d = paired_event_difference(a, b, n_boot=100)["events"]["5mm"]["brier"]
>>> round(d["estimate"], 4)  # (0.01 + 0.01 + 0.04 + 0.09)/4 − (0 + 1 + 0 + 1)/4
-0.4625
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from downpour.core.errors import DownpourError
from downpour.metrics.accumulator import VerificationAccumulator
from downpour.metrics.bootstrap import BootstrapResult, bootstrap_days
from downpour.metrics.day_table import DayTableScores, day_label
from downpour.metrics.ensemble_verification import EnsembleAccumulator
from downpour.metrics.probability import ProbabilityAccumulator
from downpour.metrics.probability_scores import event_scores
from downpour.metrics.quantiles import QuantileAccumulator, quantile_scores, tau_key

__all__ = [
    "PAIRED_EVENT_SCORES",
    "paired_crps_difference",
    "paired_event_difference",
    "paired_quantile_difference",
]

#: Event scores whose paired differences are reported.
PAIRED_EVENT_SCORES = ("brier", "bss", "roc_auc")


def _check_pair(a: DayTableScores, b: DayTableScores, what: str) -> tuple[dict, dict]:
    """Per-day statistics of both; an error unless the days and valid cells are the same."""
    ca, cb = a._checked(), b._checked()
    if a.n_days != b.n_days or not np.array_equal(a.times.astype("int64"), b.times.astype("int64")):
        raise DownpourError(
            f"{what}: the two forecasts must cover the same days in the same order "
            f"({a.n_days} vs {b.n_days} days)"
        )
    differ = np.flatnonzero(ca["n"] != cb["n"])
    if differ.size:
        k = int(differ[0])
        day = f"day {k}" if np.isnat(a.times[k]) else day_label(a.times[k])
        raise DownpourError(
            f"{what}: the two forecasts were scored on different cells on {differ.size} day(s), "
            f"the first {day} ({int(ca['n'][k])} vs {int(cb['n'][k])} valid cells; non-finite "
            f"forecasts inside the mask: {int(ca['n_bad_pred'][k])} vs "
            f"{int(cb['n_bad_pred'][k])}); compare forecasts only on the cells both predict"
        )
    return ca, cb


def _boot(
    diff: Callable[[np.ndarray], dict[str, np.ndarray]],
    n_days: int,
    n_boot: int,
    seed: int,
    level: float,
) -> tuple[dict[str, BootstrapResult], Callable[..., dict[str, Any]]]:
    boot = bootstrap_days(diff, n_days, n_boot=n_boot, seed=seed, level=level)
    assert isinstance(boot, dict)

    def leaf(r: BootstrapResult, *idx: int) -> dict[str, Any]:
        out = r.at(*idx)
        return {**out, "significant": bool(out["low"] > 0 or out["high"] < 0)}

    return boot, leaf


def paired_event_difference(
    a: ProbabilityAccumulator | QuantileAccumulator,
    b: ProbabilityAccumulator | QuantileAccumulator,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Differences ``a − b`` of Brier score, BSS and ROC area per event, with paired intervals.

    Parameters
    ----------
    a, b
        Probability accumulators (or quantile accumulators with thresholds)
        over the same days and cells, with the same events and climatology.
    n_boot, seed, level
        As in :func:`downpour.metrics.bootstrap.bootstrap_days`.

    Returns
    -------
    dict
        ``events[name][score]`` for :data:`PAIRED_EVENT_SCORES`, each
        ``{"estimate", "low", "high", "dropped", "significant"}``; ``n_boot``,
        ``seed``, ``level``. A lower Brier score is better: a significant
        negative Brier difference (or positive BSS or ROC difference) favours ``a``.
    """
    pa, pb = (x.probabilities if isinstance(x, QuantileAccumulator) else x for x in (a, b))
    if pa is None or pb is None:
        raise DownpourError("paired_event_difference: a quantile accumulator has no thresholds")
    if pa.events != pb.events or not np.array_equal(pa.climatology, pb.climatology, equal_nan=True):
        raise DownpourError(
            f"paired_event_difference: events and climatology must be the same ({pa.events}, "
            f"{pa.climatology.tolist()} vs {pb.events}, {pb.climatology.tolist()})"
        )
    ca, cb = _check_pair(pa, pb, "paired_event_difference")

    def diff(w: np.ndarray) -> dict[str, np.ndarray]:
        sa, sb = event_scores(ca, w, pa.climatology), event_scores(cb, w, pb.climatology)
        return {k: sa[k] - sb[k] for k in PAIRED_EVENT_SCORES}

    boot, leaf = _boot(diff, pa.n_days, n_boot, seed, level)
    return {
        "events": {
            name: {k: leaf(boot[k], i) for k in PAIRED_EVENT_SCORES}
            for i, name in enumerate(pa.events)
        },
        "n_boot": n_boot,
        "seed": seed,
        "level": level,
    }


def paired_quantile_difference(
    a: QuantileAccumulator,
    b: QuantileAccumulator,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Differences ``a − b`` of the pinball score per level, with paired intervals.

    Returns
    -------
    dict
        ``quantiles[tau_key(τ)]["pinball"]`` = ``{"estimate", "low", "high",
        "dropped", "significant"}``; ``n_boot``, ``seed``, ``level``. A
        significant negative difference favours ``a``.
    """
    if not np.array_equal(a.taus, b.taus):
        raise DownpourError(
            f"paired_quantile_difference: levels differ ({a.taus.tolist()} vs {b.taus.tolist()})"
        )
    ca, cb = _check_pair(a, b, "paired_quantile_difference")

    def diff(w: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "pinball": quantile_scores(ca, w, a.taus)["pinball"]
            - quantile_scores(cb, w, b.taus)["pinball"]
        }

    boot, leaf = _boot(diff, a.n_days, n_boot, seed, level)
    return {
        "quantiles": {
            tau_key(t): {"pinball": leaf(boot["pinball"], j)} for j, t in enumerate(a.taus)
        },
        "n_boot": n_boot,
        "seed": seed,
        "level": level,
    }


def paired_crps_difference(
    ens: EnsembleAccumulator,
    ref: VerificationAccumulator | EnsembleAccumulator,
    *,
    estimator: str = "ecdf",
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Mean CRPS of an ensemble minus a reference's, with a paired bootstrap interval over days.

    Parameters
    ----------
    ens
        The ensemble's accumulator.
    ref
        A deterministic forecast's :class:`VerificationAccumulator` (its CRPS is
        its MAE, ``Σ|e| / n``), or an :class:`EnsembleAccumulator` (its ECDF
        CRPS; with K = 1 exactly the MAE of the one member).
    estimator
        CRPS of ``ens``: ``"ecdf"`` or ``"fair"``.
    n_boot, seed, level
        As in :func:`downpour.metrics.bootstrap.bootstrap_days`.

    Returns
    -------
    dict
        ``difference`` (``ens − ref``, negative favours the ensemble) and
        ``ratio`` (``ens / ref``), each ``{"estimate", "low", "high",
        "dropped", "significant"}`` (significant: the interval excludes 0 for
        the difference, 1 for the ratio); ``ensemble`` and ``reference``
        (the two scores with intervals on the same resamples); ``estimator``,
        ``n_boot``, ``seed``, ``level``.

    Raises
    ------
    DownpourError
        When the two cover different days, or different valid cells on a day.
    """
    if estimator not in ("ecdf", "fair"):
        raise DownpourError(f"paired_crps_difference: unknown estimator {estimator!r}")
    ce, cr = _check_pair(ens, ref, "paired_crps_difference")  # type: ignore[arg-type]
    se = ce[f"crps_{estimator}"]
    sr = cr["sum_abs"] if isinstance(ref, VerificationAccumulator) else cr["crps_ecdf"]
    n = ce["n"].astype(np.float64)

    def scores(w: np.ndarray) -> dict[str, np.ndarray]:
        a, b = (w @ se) / (w @ n), (w @ sr) / (w @ n)
        return {"ensemble": a, "reference": b, "difference": a - b, "ratio": a / b}

    boot, leaf = _boot(scores, ens.n_days, n_boot, seed, level)
    ratio = boot["ratio"].at()
    return {
        "difference": leaf(boot["difference"]),
        "ratio": {**ratio, "significant": bool(ratio["low"] > 1 or ratio["high"] < 1)},
        "ensemble": boot["ensemble"].at(),
        "reference": boot["reference"].at(),
        "estimator": estimator,
        "n_boot": n_boot,
        "seed": seed,
        "level": level,
    }
