"""Time splits and heavy-event labels.

Test days never reach training, the synthetic samples or any statistic:
every statistic downstream is computed from the days labelled ``"train"``.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from downpour.config import SplitRange, SplitsConfig
from downpour.core.errors import DownpourError

__all__ = ["SPLITS", "assign_splits", "check_splits", "domain_statistic", "heavy_labels"]

SPLITS = ("train", "val", "test")


def _intervals(r: SplitRange) -> list[tuple[dt.date, dt.date]]:
    if r.years is not None:
        return [(dt.date(y, 1, 1), dt.date(y, 12, 31)) for y in sorted(set(r.years))]
    assert r.start is not None and r.end is not None
    return [(r.start, r.end)]


def check_splits(splits: SplitsConfig) -> None:
    """Refuse splits whose date ranges overlap.

    Raises
    ------
    DownpourError
        Naming the two splits and the overlapping dates.
    """
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            for s0, e0 in _intervals(getattr(splits, a)):
                for s1, e1 in _intervals(getattr(splits, b)):
                    lo, hi = max(s0, s1), min(e0, e1)
                    if lo <= hi:
                        raise DownpourError(
                            f"data.splits: '{a}' ({getattr(splits, a).describe()}) and '{b}' "
                            f"({getattr(splits, b).describe()}) overlap on {lo}..{hi}; "
                            "every day may belong to one split only"
                        )


def _member(times: np.ndarray, r: SplitRange) -> np.ndarray:
    days = times.astype("datetime64[D]")
    if r.years is not None:
        years = days.astype("datetime64[Y]").astype(int) + 1970
        return np.isin(years, np.asarray(sorted(set(r.years))))
    start = np.datetime64(r.start, "D")
    end = np.datetime64(r.end, "D")
    return (days >= start) & (days <= end)


def assign_splits(times: np.ndarray, splits: SplitsConfig, source: str) -> np.ndarray:
    """Label every time step with its split.

    Parameters
    ----------
    times
        datetime64 array, shape ``(T,)``.
    splits
        The configured splits (checked for overlaps first).
    source
        File description for error messages.

    Returns
    -------
    numpy.ndarray
        Object array of shape ``(T,)`` with ``"train"``, ``"val"``, ``"test"``
        or ``""`` for days in no split.

    Raises
    ------
    DownpourError
        When splits overlap or a split has no days in the data.
    """
    check_splits(splits)
    labels = np.full(times.shape, "", dtype=object)
    first = np.datetime_as_string(times.min(), unit="D") if times.size else "?"
    last = np.datetime_as_string(times.max(), unit="D") if times.size else "?"
    for name in SPLITS:
        member = _member(times, getattr(splits, name))
        if not member.any():
            raise DownpourError(
                f"data.splits.{name} ({getattr(splits, name).describe()}) has no days in "
                f"{source}, which covers {first}..{last}; change data.splits.{name}"
            )
        labels[member] = name
    return labels


def domain_statistic(y: np.ndarray, mask: np.ndarray, statistic: str) -> np.ndarray:
    """Per-day domain statistic over valid cells.

    Parameters
    ----------
    y
        Target, shape ``(T, H, W)``.
    mask
        Valid cells, shape ``(H, W)``.
    statistic
        ``"mean"``, ``"p99"`` or ``"max"``.

    Returns
    -------
    numpy.ndarray
        Shape ``(T,)``, float64.
    """
    vals = y[:, mask].astype(np.float64)
    if statistic == "mean":
        return vals.mean(axis=1)
    if statistic == "max":
        return vals.max(axis=1)
    if statistic == "p99":
        return np.percentile(vals, 99, axis=1)
    raise DownpourError(f"unknown data.heavy.statistic {statistic!r}; valid names: max, mean, p99")


def heavy_labels(
    stat: np.ndarray, is_train: np.ndarray, quantile: float
) -> tuple[np.ndarray, float]:
    """Label heavy days: statistic at or above its training-split quantile.

    Parameters
    ----------
    stat
        Per-day domain statistic, shape ``(T,)``.
    is_train
        Training days, shape ``(T,)``; the threshold uses these days only.
    quantile
        Quantile in (0, 1), e.g. 0.95.

    Returns
    -------
    (numpy.ndarray, float)
        Boolean labels for every day, and the threshold.
    """
    threshold = float(np.quantile(stat[is_train], quantile))
    return stat >= threshold, threshold
