"""Bootstrap confidence intervals that resample days (docs/metrics.md#downscaling-verification).

Every verification score is a function of sums over days of small per-day
statistics (contingency counts, Σ|e|, Σe², FSS sums, ...). A bootstrap
resample of the days is then a *weighted* sum of those per-day statistics,
the weight of a day being how often the resample drew it. This module draws
the weights and evaluates a score on all resamples at once:

- :func:`day_weights` draws ``(n_boot, n_days)`` multinomial counts (each row
  sums to ``n_days``) from an ``(n_boot, n_days)`` matrix of day indices drawn
  with replacement;
- :func:`bootstrap_days` evaluates ``statistic(weights)`` for the full sample
  (all weights 1) and for every resample, in fixed chunks of resamples to
  bound memory, and returns the percentile interval;
- :func:`bootstrap_sums` is the common case where the statistic is a function
  of weighted sums only (``sums[k] = weights @ per_day[k]``).

Conventions: the interval is the percentile interval
``[q_(1-level)/2, q_(1+level)/2]`` of the resampled scores. A resample whose
score is NaN (e.g. one without any event, where CSI is 0/0) cannot enter the
percentiles: it is left out and counted (``BootstrapResult.dropped``), so an
interval built from few resamples shows it. The interval is NaN when the
full-sample estimate is NaN or every resample is.
Results are reproducible: they depend only on ``seed``, ``n_boot`` and
``n_days`` (the chunk size is a fixed constant).

Examples
--------
>>> x = np.arange(10.0)
>>> r = bootstrap_sums({"s": x, "n": np.ones(10)}, lambda s: s["s"] / s["n"], n_boot=200)
>>> float(r.estimate)
4.5
>>> bool(r.low < 4.5 < r.high)
True
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from downpour.core.errors import DownpourError

__all__ = ["BootstrapResult", "bootstrap_days", "bootstrap_sums", "day_weights"]

#: Resamples evaluated together (fixed so that results depend only on the seed).
_CHUNK = 256

Statistic = Callable[[np.ndarray], "np.ndarray | Mapping[str, np.ndarray]"]


class BootstrapResult(NamedTuple):
    """A score with its bootstrap interval (arrays of the score's shape, or floats).

    ``dropped`` counts the resamples whose score was NaN and were left out of
    the interval (an int, or an int array of the score's shape).
    """

    estimate: np.ndarray | float
    low: np.ndarray | float
    high: np.ndarray | float
    dropped: np.ndarray | int = 0

    def at(self, *idx: int) -> dict[str, Any]:
        """Return one element as ``{"estimate", "low", "high", "dropped"}`` (plain numbers)."""
        out: dict[str, Any] = {
            k: float(np.asarray(getattr(self, k))[idx]) for k in ("estimate", "low", "high")
        }
        out["dropped"] = int(np.asarray(self.dropped)[idx])
        return out


def _check(n_days: int, n_boot: int, level: float) -> None:
    if n_days < 1:
        raise DownpourError("bootstrap: there are no days to resample (n_days=0)")
    if n_boot < 1:
        raise DownpourError(f"bootstrap: n_boot must be at least 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise DownpourError(f"bootstrap: level must lie in (0, 1), got {level}")


def _weight_chunks(n_days: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Yield float64 weight matrices ``(<=_CHUNK, n_days)`` covering ``n_boot`` resamples."""
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, _CHUNK):
        rows = min(_CHUNK, n_boot - start)
        idx = rng.integers(0, n_days, size=(rows, n_days))
        flat = idx + n_days * np.arange(rows)[:, None]
        counts = np.bincount(flat.ravel(), minlength=rows * n_days)
        yield counts.reshape(rows, n_days).astype(np.float64)


def day_weights(n_days: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """Draw bootstrap weights: how often each day appears in each resample.

    Parameters
    ----------
    n_days
        Number of days in the sample.
    n_boot
        Number of resamples.
    seed
        Seed of :func:`numpy.random.default_rng`.

    Returns
    -------
    numpy.ndarray
        Float64 array ``(n_boot, n_days)`` of non-negative integer counts; each
        row sums to ``n_days``. Identical to the weights :func:`bootstrap_days`
        uses with the same arguments.
    """
    _check(n_days, n_boot, 0.95)
    return np.concatenate(list(_weight_chunks(n_days, n_boot, seed)), axis=0)


def _interval(
    estimate: np.ndarray, samples: np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray]:
    tail = (1.0 - level) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices -> NaN
        low, high = np.nanquantile(samples, [tail, 1.0 - tail], axis=0)
    undefined = ~np.isfinite(estimate)
    return np.where(undefined, np.nan, low), np.where(undefined, np.nan, high)


def _scalar(x: np.ndarray) -> np.ndarray | float:
    return float(x) if np.ndim(x) == 0 else x


def bootstrap_days(
    statistic: Statistic,
    n_days: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> BootstrapResult | dict[str, BootstrapResult]:
    """Bootstrap a statistic of day weights, resampling days with replacement.

    Parameters
    ----------
    statistic
        Function of a weight matrix ``(B, n_days)`` (float64 counts) returning
        the score of each row, an array ``(B, ...)``; or a mapping of names to
        such arrays (all scores then share the same resamples).
    n_days
        Number of days.
    n_boot
        Number of resamples.
    seed
        Seed of :func:`numpy.random.default_rng`.
    level
        Confidence level of the percentile interval.

    Returns
    -------
    BootstrapResult or dict of BootstrapResult
        ``(estimate, low, high, dropped)`` with the score's trailing shape
        ``(...)`` (floats for scalar scores); a dict when ``statistic`` returns a
        mapping. ``estimate`` is the statistic of the full sample (all weights
        1); ``dropped`` the number of resamples whose score was NaN.

    Examples
    --------
    One event day in five: many resamples hold no event, their CSI is 0/0.

    >>> hits = np.array([2.0, 0, 0, 0, 0])
    >>> r = bootstrap_days(lambda w: (w @ hits) / (w @ hits), 5, n_boot=1000, seed=1)
    >>> (r.low, r.high), 250 < r.dropped < 400  # (4/5)^5 of the resamples miss the day
    ((1.0, 1.0), True)
    """
    _check(n_days, n_boot, level)
    with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 scores are NaN
        full = statistic(np.ones((1, n_days)))
        parts = [statistic(w) for w in _weight_chunks(n_days, n_boot, seed)]

    def result(est: np.ndarray, samples: list[np.ndarray]) -> BootstrapResult:
        est = np.asarray(est, dtype=np.float64)[0]
        drawn = np.concatenate(samples, axis=0).astype(np.float64)
        low, high = _interval(est, drawn, level)
        dropped = np.isnan(drawn).sum(axis=0)
        return BootstrapResult(
            _scalar(est),
            _scalar(low),
            _scalar(high),
            int(dropped) if dropped.ndim == 0 else dropped,
        )

    if isinstance(full, Mapping):
        return {k: result(full[k], [p[k] for p in parts]) for k in full}  # type: ignore[index]
    return result(full, parts)  # type: ignore[arg-type]


def bootstrap_sums(
    per_day: Mapping[str, np.ndarray],
    score: Callable[[Mapping[str, np.ndarray]], np.ndarray | Mapping[str, np.ndarray]],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> BootstrapResult | dict[str, BootstrapResult]:
    """Bootstrap a score that depends on the data only through sums over days.

    Parameters
    ----------
    per_day
        Per-day statistics, each an array ``(n_days, ...)`` (same ``n_days``).
    score
        Function of the summed statistics ``{k: (B, ...)}`` returning ``(B, ...)``
        (or a mapping of such arrays); it must work elementwise over ``B``.
    n_boot, seed, level
        As in :func:`bootstrap_days`.

    Returns
    -------
    BootstrapResult or dict of BootstrapResult
        As in :func:`bootstrap_days`.

    Examples
    --------
    CSI from per-day hits, false alarms and misses:

    >>> a, b, c = np.array([3, 0, 1]), np.array([1, 1, 0]), np.array([0, 2, 1])
    >>> r = bootstrap_sums({"a": a, "b": b, "c": c},
    ...                    lambda s: s["a"] / (s["a"] + s["b"] + s["c"]), n_boot=50)
    >>> float(r.estimate)  # 4 / (4 + 2 + 3)
    0.4444444444444444
    """
    stats = {k: np.asarray(v, dtype=np.float64) for k, v in per_day.items()}
    if not stats:
        raise DownpourError("bootstrap_sums: no per-day statistics given")
    lengths = {k: v.shape[0] if v.ndim else 0 for k, v in stats.items()}
    if len(set(lengths.values())) != 1:
        raise DownpourError(
            f"bootstrap_sums: per-day statistics have different numbers of days {lengths}"
        )
    n_days = next(iter(lengths.values()))

    def statistic(w: np.ndarray) -> np.ndarray | Mapping[str, np.ndarray]:
        return score({k: np.tensordot(w, v, axes=(1, 0)) for k, v in stats.items()})

    return bootstrap_days(statistic, n_days, n_boot=n_boot, seed=seed, level=level)
