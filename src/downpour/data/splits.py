"""Time splits and heavy-event labels.

Test days never reach training, the synthetic samples or any statistic:
every statistic downstream is computed from the days labelled ``"train"``.
"""

from __future__ import annotations

import datetime as dt
import warnings

import numpy as np

from downpour.config import SplitRange, SplitsConfig
from downpour.core.errors import DownpourError

__all__ = [
    "DRY_SPLIT_RATIO",
    "DrySplitWarning",
    "SPLITS",
    "assign_splits",
    "check_splits",
    "domain_statistic",
    "dry_split_warnings",
    "heavy_labels",
]


class DrySplitWarning(UserWarning):
    """A validation or test split with far less rain than the training split."""


#: A split whose wet fraction is below this share of the training split's is
#: warned about: its scores (and early stopping on it) say little about rain.
DRY_SPLIT_RATIO = 0.25

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
        Shape ``(T,)``, float64; over the observed (non-NaN) valid cells of
        each day.
    """
    vals = y[:, mask].astype(np.float64)
    if np.isnan(vals).any():  # gaps in validation or test days: over the cells observed
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a day with no cell gives NaN
            fn = {"mean": np.nanmean, "max": np.nanmax}.get(statistic)
            if fn is not None:
                return fn(vals, axis=1)
            if statistic == "p99":
                return np.nanpercentile(vals, 99, axis=1)
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


def dry_split_warnings(wet_fraction: dict[str, float], *, what: str = "split") -> list[str]:
    """Return one warning per split with far less rain than the training split.

    Parameters
    ----------
    wet_fraction
        Share of wet valid values per split name (``"train"`` must be there).
    what
        How the splits are called in the message (``"split"``, ``"block"``).

    Returns
    -------
    list of str
        Empty when every split has at least :data:`DRY_SPLIT_RATIO` of the
        training split's wet fraction.

    Examples
    --------
    >>> [w[:64] for w in dry_split_warnings({"train": 0.4, "val": 0.02, "test": 0.3})]
    ['the val split is almost dry: wet fraction 0.020 against 0.400 in']
    """
    train = wet_fraction["train"]
    out = []
    for name, wet in wet_fraction.items():
        if name != "train" and train > 0 and wet < DRY_SPLIT_RATIO * train:
            out.append(
                f"the {name} {what} is almost dry: wet fraction {wet:.3f} against {train:.3f} in "
                f"training (below {DRY_SPLIT_RATIO:g}×); its scores, early stopping and the best "
                f"checkpoint say little about rain: choose a rainier {name} period"
            )
    return out
