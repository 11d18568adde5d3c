"""Streaming verification: :class:`VerificationAccumulator`.

Definitions: docs/metrics.md#downscaling-verification.

The accumulator keeps per-day sufficient statistics (O(days × thresholds ×
scales), computed by :func:`downpour.metrics.day_stats.day_stats`) and two
fixed histograms (:class:`downpour.metrics.extremes.QuantileHistogram`);
merging concatenates days (refusing a time stamp present in both) and orders
them by time when every day has one, so partial accumulators merged in any
order equal one pass over the period: counts and histograms exactly, scores
to rounding, bootstrap intervals exactly (they resample day positions).
:meth:`VerificationAccumulator.state` turns the whole state into a dict of
numpy arrays and :meth:`VerificationAccumulator.from_state` back (an exact
round trip), so the pieces of a long archive can be verified in separate
jobs, kept, and merged. The conventions of the scores are those of
:mod:`downpour.metrics.verification`.

This module is long because the accumulator is one class whose update, merge,
state round trip and compute must change together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from downpour.core.errors import DownpourError
from downpour.metrics.bootstrap import BootstrapResult, bootstrap_days
from downpour.metrics.day_stats import BLOCK_CELLS, DAY_KEYS, INT_KEYS, day_stats
from downpour.metrics.extremes import QuantileHistogram, compare_gpd_tails
from downpour.metrics.inputs import as_mask, as_pair, as_times, check_scales, check_shapes
from downpour.metrics.pooled import CATEGORICAL, CONTINUOUS, score_tree, weighted_scores

__all__ = ["DEFAULT_SCALES", "MIN_EVENT_DAYS", "STATE_VERSION", "VerificationAccumulator"]

#: Fewer days with an observed event than this make a categorical interval unreliable:
#: many resamples then hold no event at all (their score is 0/0 and is dropped).
MIN_EVENT_DAYS = 10

#: FSS neighbourhood sizes (pixels) used when none are given.
DEFAULT_SCALES: tuple[int, ...] = (1, 3, 9, 27)

#: Version of the layout of :meth:`VerificationAccumulator.state`.
STATE_VERSION = 2

#: Arrays of a state besides ``version`` and the per-day ``day_<key>`` arrays.
_STATE_HEADER = (
    "threshold_names",
    "threshold_values",
    "scales",
    "tail_threshold",
    "mask",
    "times",
    "hist_pred_counts",
    "hist_truth_counts",
)


def _day(stamp: np.datetime64) -> str:
    return str(np.datetime_as_string(stamp, unit="D"))


def _same(x: float, y: float) -> bool:
    return x == y or (np.isnan(x) and np.isnan(y))


class VerificationAccumulator:
    """Streaming verification: ``update`` batches of days, ``merge``, ``compute``.

    :meth:`state` and :meth:`from_state` turn the whole state into arrays and
    back, so that pieces of a long period verified in separate jobs can be merged.

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
    >>> VerificationAccumulator.from_state(acc.state()).n_days
    2
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
        self.scales = check_scales(scales)
        if tail_threshold is None:
            tail_threshold = self.thresholds.get("P95", float("nan"))
        self.tail_threshold = float(tail_threshold)
        self.mask = as_mask(mask)
        nt, ns = len(self.thresholds), len(self.scales)
        empty = {k: np.zeros(0, dtype=np.int64 if k in INT_KEYS else np.float64) for k in DAY_KEYS}
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
        p, t = as_pair(pred, truth)
        check_shapes(p, t, self.mask)
        stamps = as_times(time, p.shape[0])
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
        """Replace the accumulated days (used by :meth:`merge` and :meth:`from_state`)."""
        self._parts, self._times = [per_day], [times]
        self.hist_pred, self.hist_truth = hist_pred, hist_truth

    def state(self) -> dict[str, np.ndarray]:
        """Everything the accumulator knows, as named numpy arrays (e.g. for ``np.savez``).

        :meth:`from_state` turns them back into an equal accumulator: the round
        trip is exact. The arrays may share memory with the accumulator; do not
        modify them.

        Returns
        -------
        dict
            ``version`` (:data:`STATE_VERSION`), ``threshold_names``,
            ``threshold_values``, ``scales``, ``tail_threshold``; ``mask``
            (boolean ``(y, x)``; shape ``(0, 0)`` for none), ``times``
            (datetime64[ns] ``(days,)``, NaT where a day had no time stamp);
            ``day_<key>`` for every per-day statistic (``(days, ...)``, see
            :data:`downpour.metrics.day_stats.DAY_KEYS`, plus ``day_counts`` and
            ``day_fss``); ``hist_pred_*`` and ``hist_truth_*``, the two quantile
            histograms (:meth:`downpour.metrics.extremes.QuantileHistogram.state`).
        """
        arrays: dict[str, np.ndarray] = {
            "version": np.array(STATE_VERSION),
            "threshold_names": np.array(list(self.thresholds), dtype=str),
            "threshold_values": np.array(list(self.thresholds.values()), dtype=np.float64),
            "scales": np.array(self.scales, dtype=np.int64),
            "tail_threshold": np.array(self.tail_threshold, dtype=np.float64),
            "mask": self.mask if self.mask is not None else np.zeros((0, 0), dtype=bool),
            "times": self.times,
        }
        arrays.update({f"day_{k}": v for k, v in self.per_day.items()})
        for name, hist in (("pred", self.hist_pred), ("truth", self.hist_truth)):
            arrays.update({f"hist_{name}_{k}": v for k, v in hist.state().items()})
        return arrays

    @classmethod
    def from_state(
        cls, arrays: Mapping[str, np.ndarray], where: str = "verification state"
    ) -> VerificationAccumulator:
        """Rebuild an accumulator from the arrays of :meth:`state`.

        Parameters
        ----------
        arrays
            Mapping with the arrays of :meth:`state`.
        where
            Names the source in error messages (e.g. the file).

        Raises
        ------
        DownpourError
            When an array is missing or has the wrong shape, or the arrays are
            of another layout version.
        """
        version = int(arrays["version"]) if "version" in arrays else None
        if version != STATE_VERSION:
            raise DownpourError(
                f"{where}: verification state version {version}, this version reads "
                f"{STATE_VERSION}; recompute the state with this version of downpour"
            )
        keys = [*DAY_KEYS, "counts", "fss"]
        missing = [k for k in (*_STATE_HEADER, *(f"day_{k}" for k in keys)) if k not in arrays]
        if missing:
            raise DownpourError(f"{where}: verification state lacks {missing}")
        mask = arrays["mask"]
        acc = cls(
            dict(zip(arrays["threshold_names"].tolist(), arrays["threshold_values"], strict=True)),
            scales=arrays["scales"].tolist(),
            tail_threshold=float(arrays["tail_threshold"]),
            mask=mask if mask.size else None,
        )
        times = arrays["times"].astype("datetime64[ns]")
        nt, ns = len(acc.thresholds), len(acc.scales)
        shapes = {k: (times.size,) for k in DAY_KEYS}
        shapes.update(counts=(times.size, nt, 4), fss=(times.size, nt, ns, 3))
        per_day = {}
        for k in keys:
            v = arrays[f"day_{k}"]
            if v.shape != shapes[k]:
                raise DownpourError(
                    f"{where}: per-day '{k}' has shape {v.shape}, expected {shapes[k]} "
                    f"({times.size} days); the file is damaged"
                )
            per_day[k] = v
        hists = [
            QuantileHistogram.from_state(
                {k: arrays.get(f"hist_{name}_{k}") for k in ("counts", "range", "layout")},
                where=f"{where} (hist_{name})",
            )
            for name in ("pred", "truth")
        ]
        acc._restore(per_day, times, *hists)
        return acc

    def excluded(self) -> dict[str, int]:
        """Cells inside the mask left out of the scores, summed over days.

        ``missing_truth``: the truth is NaN (a gap in the observations);
        ``nonfinite_prediction``: the truth is there but the prediction is
        NaN or infinite.
        """
        pd = self._per_day
        return {
            "missing_truth": int(pd["n_missing_truth"].sum()),
            "nonfinite_prediction": int(pd["n_bad_pred"].sum()),
        }

    def _checked(self) -> dict[str, np.ndarray]:
        """Return the per-day statistics; an error when there is no day or no valid cell."""
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
            ``gpd``; ``excluded``: the cells inside the mask left out of every
            score, ``missing_truth`` (truth NaN) and ``nonfinite_prediction``
            (truth present, prediction NaN or infinite). Plain Python numbers
            (JSON-ready; FSS scale keys are ints).
        """
        pd = self._checked()
        est = {k: v[0] for k, v in weighted_scores(pd, np.ones((1, self.n_days))).items()}
        totals = pd["counts"].sum(axis=0)
        categorical = {
            name: {
                **dict(zip("abcd", (int(x) for x in totals[i]), strict=True)),
                **{k: float(est[k][i]) for k in CATEGORICAL},
            }
            for i, name in enumerate(self.thresholds)
        }
        p99_pred, p99_truth = self.hist_pred.quantile(0.99), self.hist_truth.quantile(0.99)
        continuous = {k: float(est[k]) for k in CONTINUOUS}
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
            "excluded": self.excluded(),
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
            ``{"estimate", "low", "high", "dropped"}`` (``dropped``: resamples
            whose score was NaN, left out of the interval); plus ``n_boot``,
            ``seed``, ``level`` and ``reliability[name]``: ``event_days`` (days
            with an observed event), ``min_event_days`` (:data:`MIN_EVENT_DAYS`)
            and ``reliable`` (False below it: the interval is not to be trusted).
        """
        pd = self._checked()
        out = self.compute(tail_fit=tail_fit)
        boot = bootstrap_days(
            lambda w: weighted_scores(pd, w), self.n_days, n_boot=n_boot, seed=seed, level=level
        )
        assert isinstance(boot, dict)

        def leaf(r: BootstrapResult, *idx: int) -> dict[str, float]:
            return r.at(*idx)

        out["intervals"] = {
            **score_tree(boot, list(self.thresholds), self.scales, leaf),
            "n_boot": n_boot,
            "seed": seed,
            "level": level,
            "reliability": self.reliability(),
        }
        return out

    def reliability(self) -> dict[str, dict[str, Any]]:
        """Per threshold: days with an observed event, and whether they are enough for intervals."""
        counts = self._per_day["counts"]
        out = {}
        for i, name in enumerate(self.thresholds):
            event_days = int(((counts[:, i, 0] + counts[:, i, 2]) > 0).sum())
            out[name] = {
                "event_days": event_days,
                "min_event_days": MIN_EVENT_DAYS,
                "reliable": event_days >= MIN_EVENT_DAYS,
            }
        return out
