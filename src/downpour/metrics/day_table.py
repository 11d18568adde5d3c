"""Per-day statistics with their time stamps: :class:`DayTable`.

A streaming score keeps a few numbers per day (counts, sums) and computes
every score from day-weighted sums of them, which is what the bootstrap over
days resamples (:mod:`downpour.metrics.bootstrap`). A :class:`DayTable`
holds such columns, each an array ``(days, ...)`` with a fixed trailing shape
and dtype, plus one time stamp per day (NaT where there is none):

- :meth:`DayTable.append` adds a batch of days (concatenated lazily);
- :meth:`DayTable.merged` returns the days of two tables, ordered by time
  when every day has a time stamp (so pieces merged in any order give the
  table of one pass), refusing a time stamp present in both;
- :meth:`DayTable.state` and :meth:`DayTable.from_state` turn the table into
  named arrays (``<prefix>times``, ``<prefix>day_<column>``) and back, exactly,
  checking every shape.

:class:`DayTableScores` is the part shared by the accumulators built on a
table with the columns ``n`` (valid cells), ``n_missing_truth`` and
``n_bad_pred`` (cells inside the mask left out): days, time stamps, the
excluded cells and the check that there is something to score.

Examples
--------
>>> t = DayTable({"n": ((), np.int64), "s": ((2,), np.float64)})
>>> t.append({"n": np.array([3, 4]), "s": np.ones((2, 2))},
...          np.array(["2001-01-02", "2001-01-01"], dtype="datetime64[ns]"))
>>> u = DayTable.from_state(t.state("q_"), t.spec, prefix="q_")
>>> u.merged(DayTable(t.spec)).columns["n"].tolist()
[4, 3]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from downpour.core.errors import DownpourError

__all__ = ["DayTable", "DayTableScores", "day_label", "mask_state", "state_mask"]

#: Column specification: ``{name: (trailing shape, dtype)}``.
Spec = Mapping[str, "tuple[tuple[int, ...], type | np.dtype]"]


def day_label(stamp: np.datetime64) -> str:
    """Return the date of a time stamp as ``YYYY-MM-DD``."""
    return str(np.datetime_as_string(stamp, unit="D"))


class DayTable:
    """Columns of per-day statistics ``(days, ...)`` and a time stamp per day.

    Parameters
    ----------
    spec
        ``{column: (trailing shape, dtype)}``; every column has ``days`` rows.
    """

    def __init__(self, spec: Spec) -> None:
        self.spec = {
            k: (tuple(int(s) for s in shape), np.dtype(dt)) for k, (shape, dt) in spec.items()
        }
        empty = {k: np.zeros((0, *shape), dtype=dt) for k, (shape, dt) in self.spec.items()}
        self._parts: list[dict[str, np.ndarray]] = [empty]
        self._times: list[np.ndarray] = [np.zeros(0, dtype="datetime64[ns]")]

    @property
    def n_days(self) -> int:
        """Number of days held."""
        return sum(int(t.size) for t in self._times)

    @property
    def columns(self) -> dict[str, np.ndarray]:
        """Every column, ``(days, ...)`` (concatenated on demand; do not modify)."""
        if len(self._parts) > 1:
            self._parts = [{k: np.concatenate([p[k] for p in self._parts]) for k in self.spec}]
        return dict(self._parts[0])

    @property
    def times(self) -> np.ndarray:
        """Time stamp of each day, datetime64[ns] ``(days,)`` (NaT where none was given)."""
        if len(self._times) > 1:
            self._times = [np.concatenate(self._times)]
        return self._times[0]

    def append(self, stats: Mapping[str, np.ndarray], times: np.ndarray) -> None:
        """Add days: ``stats[column]`` ``(days, ...)`` and ``times`` ``(days,)``."""
        days = int(times.shape[0])
        part = {}
        for k, (shape, dt) in self.spec.items():
            v = np.asarray(stats[k])
            if v.shape != (days, *shape):
                raise DownpourError(f"per-day '{k}': shape {v.shape}, expected {(days, *shape)}")
            part[k] = v.astype(dt, copy=False)
        self._parts.append(part)
        self._times.append(np.asarray(times, dtype="datetime64[ns]"))

    def merged(self, other: DayTable) -> DayTable:
        """Return the days of both tables, ordered by time when every day has a time stamp.

        Raises
        ------
        DownpourError
            For tables of different columns, or when a time stamp is in both
            (the same day scored twice).
        """
        if other.spec != self.spec:
            raise DownpourError("cannot merge per-day statistics of different layouts")
        ta, tb = self.times, other.times
        both = np.intersect1d(ta[~np.isnat(ta)], tb[~np.isnat(tb)])
        if both.size:
            raise DownpourError(
                f"cannot merge: {both.size} day(s) are in both accumulators, the first "
                f"{day_label(both[0])}; score non-overlapping periods"
            )
        a, b = self.columns, other.columns
        cols = {k: np.concatenate([a[k], b[k]]) for k in self.spec}
        times = np.concatenate([ta, tb])
        if times.size and not np.isnat(times).any():
            order = np.argsort(times, kind="stable")
            cols, times = {k: v[order] for k, v in cols.items()}, times[order]
        out = DayTable(self.spec)
        out._parts, out._times = [cols], [times]
        return out

    def state(self, prefix: str = "") -> dict[str, np.ndarray]:
        """``<prefix>times`` and ``<prefix>day_<column>`` for every column (may share memory)."""
        out = {f"{prefix}times": self.times}
        out.update({f"{prefix}day_{k}": v for k, v in self.columns.items()})
        return out

    @classmethod
    def from_state(
        cls,
        arrays: Mapping[str, np.ndarray],
        spec: Spec,
        *,
        prefix: str = "",
        where: str = "state",
    ) -> DayTable:
        """Rebuild a table from :meth:`state`'s arrays, checking names and shapes.

        Raises
        ------
        DownpourError
            When an array is missing or has the wrong shape (``where`` names the source).
        """
        table = cls(spec)
        names = [f"{prefix}times", *(f"{prefix}day_{k}" for k in table.spec)]
        missing = [k for k in names if k not in arrays]
        if missing:
            raise DownpourError(f"{where}: lacks {missing}")
        times = np.asarray(arrays[f"{prefix}times"]).astype("datetime64[ns]")
        if times.ndim != 1:
            raise DownpourError(f"{where}: '{prefix}times' must be 1-D, got {times.shape}")
        cols = {}
        for k, (shape, dt) in table.spec.items():
            v = np.asarray(arrays[f"{prefix}day_{k}"])
            if v.shape != (times.size, *shape):
                raise DownpourError(
                    f"{where}: per-day '{prefix}{k}' has shape {v.shape}, expected "
                    f"{(times.size, *shape)} ({times.size} days); the file is damaged"
                )
            cols[k] = v.astype(dt, copy=False)
        table._parts, table._times = [cols], [times]
        return table


def mask_state(mask: np.ndarray | None) -> np.ndarray:
    """Return a mask as stored in a state: the array, or ``(0, 0)`` for none."""
    return mask if mask is not None else np.zeros((0, 0), dtype=bool)


def state_mask(
    arrays: Mapping[str, np.ndarray], *, version: int, what: str, keys: tuple[str, ...], where: str
) -> np.ndarray | None:
    """Check a state's layout version and keys (``mask`` among them); return its mask.

    Raises
    ------
    DownpourError
        For another layout version or a missing key (named with ``what`` and ``where``).

    Examples
    --------
    >>> state_mask({"version": np.array(1), "mask": np.zeros((0, 0))}, version=1, what="x",
    ...            keys=("mask",), where="f.npz") is None
    True
    """
    found = int(arrays["version"]) if "version" in arrays else None
    if found != version:
        raise DownpourError(
            f"{where}: {what} state version {found}, this version reads {version}; "
            "recompute the state with this version of downpour"
        )
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise DownpourError(f"{where}: {what} state lacks {missing}")
    mask = np.asarray(arrays["mask"])
    return mask if mask.size else None


class DayTableScores:
    """Base of accumulators over a :class:`DayTable` (``self._days``) of valid-cell counts.

    Subclasses set ``_days`` (with columns ``n``, ``n_missing_truth``,
    ``n_bad_pred``) and ``_what`` (names them in error messages).
    """

    _days: DayTable
    _what = "verification"

    @property
    def n_days(self) -> int:
        """Number of days accumulated."""
        return self._days.n_days

    @property
    def times(self) -> np.ndarray:
        """Time stamp of each day (NaT where ``update`` got none), ``(days,)``."""
        return self._days.times

    @property
    def per_day(self) -> dict[str, np.ndarray]:
        """Per-day statistics, each ``(days, ...)`` (do not modify)."""
        return self._days.columns

    def excluded(self) -> dict[str, int]:
        """Cells inside the mask left out of every score, summed over days.

        ``missing_truth``: the truth is NaN; ``nonfinite_prediction``: the
        truth is there but the forecast is NaN or infinite.
        """
        cols = self.per_day
        return {
            "missing_truth": int(cols["n_missing_truth"].sum()),
            "nonfinite_prediction": int(cols["n_bad_pred"].sum()),
        }

    def _restore(self, arrays: Mapping[str, np.ndarray], where: str, probability_cls: Any) -> None:
        """Restore the days, and the event probabilities stored under ``prob_`` if any.

        ``probability_cls`` is :class:`~downpour.metrics.probability.ProbabilityAccumulator`
        (passed in: that module imports this one).
        """
        self._days = DayTable.from_state(arrays, self._days.spec, where=where)
        if "prob_version" in arrays:
            probs = probability_cls.from_state(arrays, prefix="prob_", where=where)
            if not np.array_equal(probs.times.view(np.int64), self.times.view(np.int64)):
                raise DownpourError(
                    f"{where}: the probabilities cover other days than the {self._what}"
                )
            self.probabilities = probs

    def _checked(self) -> dict[str, np.ndarray]:
        """Return the per-day statistics; an error without days or without a valid cell."""
        if self.n_days == 0:
            raise DownpourError(f"{self._what}: no days were accumulated; nothing to score")
        cols = self.per_day
        if int(cols["n"].sum()) == 0:
            raise DownpourError(
                f"{self._what}: no valid cell in {self.n_days} days: every cell is masked or "
                "NaN in the forecast or the truth"
            )
        return cols
