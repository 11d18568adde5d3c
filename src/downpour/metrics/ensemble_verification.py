"""Streaming verification of a K-member ensemble: :class:`EnsembleAccumulator`.

Definitions: docs/metrics.md#probabilistic-verification (DESIGN 8.3).

Input: members ``(days, K, y, x)`` (e.g. the cVAE's prior-mode samples) and
the truth ``(days, y, x)``. A cell is valid when the mask is True, the truth
is finite and all K members are finite; cells inside the mask left out are
counted in ``excluded`` as in the other accumulators. Per day the accumulator
keeps, over the valid cells, sums from which every score follows (so the
bootstrap resamples days, pieces merge, and :meth:`~EnsembleAccumulator.state`
round-trips exactly):

- ``crps_ecdf`` and ``crps_fair``: mean CRPS, ECDF and fair estimators of
  :func:`downpour.metrics.ensemble.crps_ensemble` (fair needs K ≥ 2, NaN
  otherwise). With K = 1 the ECDF CRPS is the absolute error, so it compares
  directly with a deterministic forecast's MAE
  (:func:`~downpour.metrics.probabilistic_pairs.paired_crps_difference`);
- ``mae_ensemble_mean``, ``rmse_ensemble_mean``: deterministic scores of the
  member mean ``x̄``;
- ``spread = sqrt(mean s² · (K+1)/K)`` with ``s²`` the unbiased (ddof = 1)
  variance of the members at a cell, and ``spread_skill = spread /
  rmse_ensemble_mean``. For members and truth drawn from one distribution of
  variance σ², ``E s² = σ²`` and ``E (x̄ − y)² = σ²(1 + 1/K)``: the
  finite-ensemble factor ``(K+1)/K`` makes the ratio 1 for a calibrated
  ensemble of any size (Fortin et al. 2014). NaN for K = 1;
- ``rank_histogram``: counts of the truth's rank among the members (``K+1``
  bins), ties broken uniformly at random by
  :func:`downpour.metrics.ensemble.rank_histogram`; ``max_ratio`` /
  ``min_ratio`` are the largest and smallest bin frequency over the uniform
  ``1/(K+1)`` (also bootstrapped as ``rank_max_ratio`` / ``rank_min_ratio``);
- with ``thresholds``: the event probability ``P(y > t)`` = fraction of
  members above ``t`` (compared as the verification does,
  :func:`~downpour.metrics.day_stats.threshold_for`), scored by a
  :class:`~downpour.metrics.probability.ProbabilityAccumulator`
  (``probabilities``): Brier score, BSS against ``climatology``, ROC area,
  reliability diagram.

This module is long because one accumulator holds the update (blocks of
cells, tie draws), merge, exact state round trip and scoring with intervals;
its paired difference against a deterministic forecast lives in
:mod:`downpour.metrics.probabilistic_pairs`.

Reproducible tie-breaking
-------------------------
Every day draws its ties from its own generator, seeded by
``(seed, time stamp)``; a day without a time stamp (NaT) uses ``(seed, its
position among the days this accumulator has received)``. With time stamps
the rank histogram depends only on ``seed`` and the data, not on the batch
sizes or on how a period is split: merged pieces equal one pass exactly.
Without time stamps this holds for batch sizes but not for merged pieces
(each piece counts its days from 0), so pass ``time`` when merging.

Examples
--------
>>> acc = EnsembleAccumulator(thresholds={"1mm": 1.0})
>>> members = np.array([0.0, 2.0]).reshape(1, 2, 1, 1)  # (days, K, y, x)
>>> acc.update(members, np.ones((1, 1, 1)))
>>> res = acc.compute()
>>> res["crps_ecdf"], res["crps_fair"], res["rank_histogram"]["counts"]  # 1 − 2/8, 1 − 2/4
(0.5, 0.0, [0, 1, 0])
>>> res["events"]["1mm"]["brier"]  # P = 1/2, no event
0.25
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np

from downpour.core.errors import DownpourError
from downpour.metrics.bootstrap import bootstrap_days
from downpour.metrics.day_stats import BLOCK_CELLS, count_cells, threshold_for
from downpour.metrics.day_table import DayTable, DayTableScores, mask_state, state_mask
from downpour.metrics.ensemble import crps_ensemble, rank_histogram
from downpour.metrics.inputs import as_days, as_mask, as_times, to_numpy
from downpour.metrics.probability import ProbabilityAccumulator

__all__ = [
    "ENSEMBLE_SCORES",
    "STATE_VERSION",
    "EnsembleAccumulator",
    "ensemble_scores",
]

#: Scalar scores of :func:`ensemble_scores`, all with bootstrap intervals.
ENSEMBLE_SCORES = (
    "crps_ecdf",
    "crps_fair",
    "mae_ensemble_mean",
    "rmse_ensemble_mean",
    "spread",
    "spread_skill",
    "rank_max_ratio",
    "rank_min_ratio",
)
#: Version of the layout of :meth:`EnsembleAccumulator.state`.
STATE_VERSION = 1


def _spec(k: int) -> dict[str, tuple[tuple[int, ...], type]]:
    """Per-day columns for K members (``k = 0``: not yet known, no days)."""
    return {
        "n": ((), np.int64),
        "n_missing_truth": ((), np.int64),
        "n_bad_pred": ((), np.int64),
        "crps_ecdf": ((), np.float64),
        "crps_fair": ((), np.float64),
        "abs_mean": ((), np.float64),
        "sq_mean": ((), np.float64),
        "var": ((), np.float64),
        "rank": ((k + 1 if k else 0,), np.int64),
    }


def _day_seed(seed: int, stamp: np.datetime64, position: int) -> int:
    """Seed of one day's tie draws: from ``(seed, time)``, or ``(seed, position)`` without time."""
    if np.isnat(stamp):
        words = [seed, 1, position]
    else:
        words = [seed, 0, int(stamp.astype("datetime64[ns]").astype(np.int64)) + 2**63]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0])


def ensemble_scores(cols: Mapping[str, np.ndarray], w: np.ndarray, k: int) -> dict:
    """Scores for day weights ``w`` ``(B, days)``: :data:`ENSEMBLE_SCORES`, arrays ``(B,)``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        n = w @ cols["n"].astype(np.float64)
        rmse = np.sqrt((w @ cols["sq_mean"]) / n)
        spread = np.sqrt((w @ cols["var"]) / n * (k + 1) / k) if k > 1 else np.full_like(n, np.nan)
        counts = w @ cols["rank"].astype(np.float64)
        ratio = counts / counts.sum(axis=1, keepdims=True) * (k + 1)
        return {
            "crps_ecdf": (w @ cols["crps_ecdf"]) / n,
            "crps_fair": (w @ cols["crps_fair"]) / n,
            "mae_ensemble_mean": (w @ cols["abs_mean"]) / n,
            "rmse_ensemble_mean": rmse,
            "spread": spread,
            "spread_skill": spread / rmse,
            "rank_max_ratio": ratio.max(axis=1),
            "rank_min_ratio": ratio.min(axis=1),
        }


class EnsembleAccumulator(DayTableScores):
    """Streaming CRPS, spread–skill, rank histogram and event-probability scores of an ensemble.

    Parameters
    ----------
    thresholds
        Events ``y > value`` by name (e.g. ``{"P95": 12.1, "P99": 31.0}``) whose
        probabilities (fraction of members above) are scored.
    climatology
        Reference probability per event name for the Brier skill score (the
        training base rate); missing = the verified sample's base rate.
    mask
        Boolean ``(y, x)`` (or 0/1), True = valid; ``None`` = all cells.
    seed
        Seed of the rank histogram's tie draws (see the module notes).
    members
        Ensemble size K; ``None``: taken from the first :meth:`update`.
    """

    _what = "ensemble verification"

    def __init__(
        self,
        thresholds: Mapping[str, float] | None = None,
        climatology: Mapping[str, float] | None = None,
        mask: Any = None,
        seed: int = 0,
        *,
        members: int | None = None,
    ) -> None:
        self.mask = as_mask(mask)
        self.seed = int(seed)
        if self.seed < 0:
            raise DownpourError(f"ensemble verification: seed must be >= 0, got {seed}")
        self.members = int(members) if members else 0  # 0 = not known yet
        self.probabilities: ProbabilityAccumulator | None = None
        if thresholds:
            self.probabilities = ProbabilityAccumulator(
                thresholds, climatology=climatology, mask=self.mask
            )
        elif climatology:
            raise DownpourError("ensemble verification: climatology given without thresholds")
        self._days = DayTable(_spec(self.members))

    def update(self, members: Any, truth: Any, time: Any = None) -> None:
        """Add a batch of days.

        Parameters
        ----------
        members
            ``(days, K, y, x)`` (or one day ``(K, y, x)``): numpy, torch or xarray.
        truth
            ``(days, y, x)`` (or one ``(y, x)`` day).
        time
            Optional time stamps ``(days,)`` (datetime64); they seed the tie draws.
        """
        m, t = to_numpy(members), as_days(truth, "truth")
        if m.ndim == 3:
            m = m[None]
        if m.ndim != 4 or m.shape[0] != t.shape[0] or m.shape[2:] != t.shape[1:]:
            raise DownpourError(
                f"ensemble verification: members must be (days, K, y, x) matching the truth "
                f"{t.shape}, got {m.shape}"
            )
        k = m.shape[1]
        if self.members and k != self.members:
            raise DownpourError(f"ensemble verification: got {k} members, expected {self.members}")
        if self.mask is not None and self.mask.shape != t.shape[1:]:
            raise DownpourError(
                f"ensemble verification: mask {self.mask.shape} is not the grid {t.shape[1:]}"
            )
        if not self.members:
            self.members = k
            self._days = DayTable(_spec(k))
        if m.dtype not in (np.float32, np.float64):
            m = m.astype(np.float64)
        stamps = as_times(time, t.shape[0])
        step = max(1, BLOCK_CELLS // max(1, m[0].size))
        for i in range(0, t.shape[0], step):
            mb, tb, sb = m[i : i + step], t[i : i + step], stamps[i : i + step]
            self._days.append(self._block(mb, tb, sb, self.n_days), sb)
            if self.probabilities is not None:
                self.probabilities.update(self._event_probabilities(mb), tb, sb)

    def _event_probabilities(self, m: np.ndarray) -> np.ndarray:
        """Fraction of members above each threshold, ``(d, events, y, x)``; NaN if any is NaN."""
        assert self.probabilities is not None
        finite = np.isfinite(m).all(axis=1)
        with np.errstate(invalid="ignore"):
            probs = np.stack(
                [
                    (m > threshold_for(v, m.dtype)).mean(axis=1)
                    for v in self.probabilities.events.values()
                ],
                axis=1,
            )
        return np.where(finite[:, None], probs, np.nan)

    def _block(
        self, m: np.ndarray, t: np.ndarray, stamps: np.ndarray, start: int
    ) -> dict[str, np.ndarray]:
        """Per-day statistics of members ``(d, K, y, x)`` and truth ``(d, y, x)``."""
        k = m.shape[1]
        inside = np.ones(t.shape[1:], dtype=bool) if self.mask is None else self.mask
        fin_t, fin_m = np.isfinite(t), np.isfinite(m).all(axis=1)
        valid = inside & fin_t & fin_m

        def day_sum(x: np.ndarray) -> np.ndarray:
            return np.where(valid, x, 0.0).sum(axis=(1, 2))

        x = np.where(valid[:, None], m, 0.0).astype(np.float64, copy=False)
        y = np.where(valid, t, 0.0).astype(np.float64, copy=False)
        err = x.mean(axis=1) - y
        fair = (
            day_sum(crps_ensemble(y, x, estimator="fair", mask=valid))
            if k > 1
            else np.full(t.shape[0], np.nan)
        )
        ranks = [
            rank_histogram(
                y[d], x[d], member_axis=0, mask=valid[d], seed=_day_seed(self.seed, s, start + d)
            )
            for d, s in enumerate(stamps)
        ]
        return {
            "n": count_cells(valid),
            "n_missing_truth": count_cells(inside & ~fin_t),
            "n_bad_pred": count_cells(inside & fin_t & ~fin_m),
            "crps_ecdf": day_sum(crps_ensemble(y, x, estimator="ecdf", mask=valid)),
            "crps_fair": fair,
            "abs_mean": day_sum(np.abs(err)),
            "sq_mean": day_sum(err * err),
            "var": day_sum(x.var(axis=1, ddof=1)) if k > 1 else np.zeros(t.shape[0]),
            "rank": np.stack(ranks),
        }

    def merge(self, other: EnsembleAccumulator) -> EnsembleAccumulator:
        """Return an accumulator holding the days of both (ordered by time when all have one).

        Raises
        ------
        DownpourError
            For different ensemble sizes, seed, mask or events, or a day in both.
        """
        same = (
            (not self.members or not other.members or self.members == other.members)
            and self.seed == other.seed
            and (self.mask is None) == (other.mask is None)
            and (self.mask is None or np.array_equal(self.mask, other.mask))
            and (self.probabilities is None) == (other.probabilities is None)
        )
        if not same:
            raise DownpourError(
                "ensemble verification: cannot merge accumulators with different ensemble "
                f"sizes, seeds, masks or events (K {self.members} vs {other.members}, seed "
                f"{self.seed} vs {other.seed})"
            )
        out = copy.copy(self)  # the setup is never modified, only the days
        if not self.members or not other.members:  # one side has no days yet
            out.members = self.members or other.members
            out._days = DayTable(_spec(out.members))
            for side in (self, other):
                if side.members:
                    out._days = out._days.merged(side._days)
        else:
            out._days = self._days.merged(other._days)
        if self.probabilities is not None and other.probabilities is not None:
            out.probabilities = self.probabilities.merge(other.probabilities)
        return out

    def state(self) -> dict[str, np.ndarray]:
        """Everything the accumulator knows as named numpy arrays (e.g. for ``np.savez``).

        ``version``, ``members`` (0 before the first update), ``seed``,
        ``mask`` (``(0, 0)`` for none), ``times``, ``day_<column>`` per
        statistic, and the event probabilities' state under the prefix
        ``prob_`` when there are thresholds. :meth:`from_state` rebuilds an
        equal accumulator.
        """
        arrays = {
            "version": np.array(STATE_VERSION),
            "members": np.array(self.members),
            "seed": np.array(self.seed),
            "mask": mask_state(self.mask),
            **self._days.state(),
        }
        if self.probabilities is not None:
            arrays.update(self.probabilities.state(prefix="prob_"))
        return arrays

    @classmethod
    def from_state(
        cls, arrays: Mapping[str, np.ndarray], where: str = "ensemble verification state"
    ) -> EnsembleAccumulator:
        """Rebuild an accumulator from :meth:`state`'s arrays (an exact round trip).

        Raises
        ------
        DownpourError
            For another layout version, or a missing or misshapen array.
        """
        mask = state_mask(arrays, version=STATE_VERSION, what="ensemble",
                          keys=("members", "seed", "mask"), where=where)  # fmt: skip
        acc = cls(mask=mask, seed=int(arrays["seed"]), members=int(arrays["members"]) or None)
        acc._restore(arrays, where, ProbabilityAccumulator)
        return acc

    def compute(self) -> dict[str, Any]:
        """Scores of the accumulated days, JSON-ready.

        Returns
        -------
        dict
            ``n_days``, ``n_valid``, ``members``, ``excluded``,
            :data:`ENSEMBLE_SCORES` (floats; ``crps_fair``, ``spread`` and
            ``spread_skill`` are NaN for K = 1); ``rank_histogram``:
            ``counts`` (K+1), ``frequencies``, ``max_ratio``, ``min_ratio``
            (frequency over the uniform 1/(K+1)); with thresholds,
            ``events[name]`` as :meth:`ProbabilityAccumulator.compute`.
        """
        cols = self._checked()
        k = self.members
        est = ensemble_scores(cols, np.ones((1, self.n_days)), k)
        counts = cols["rank"].sum(axis=0)
        freq = counts / counts.sum()
        out: dict[str, Any] = {
            "n_days": self.n_days,
            "n_valid": int(cols["n"].sum()),
            "members": k,
            "excluded": self.excluded(),
            **{name: float(v[0]) for name, v in est.items()},
            "rank_histogram": {
                "counts": counts.tolist(),
                "frequencies": freq.tolist(),
                "max_ratio": float(freq.max() * (k + 1)),
                "min_ratio": float(freq.min() * (k + 1)),
            },
        }
        if self.probabilities is not None:
            out["events"] = self.probabilities.compute()["events"]
        return out

    def compute_with_intervals(
        self, n_boot: int = 1000, seed: int = 0, *, level: float = 0.95
    ) -> dict[str, Any]:
        """:meth:`compute` plus bootstrap intervals that resample days.

        Returns
        -------
        dict
            The :meth:`compute` dict with ``intervals``: ``scores[name]`` for
            :data:`ENSEMBLE_SCORES` and, with thresholds, ``events[name][score]``
            and ``reliability[name]`` (as
            :meth:`ProbabilityAccumulator.intervals`), each score ``{"estimate",
            "low", "high", "dropped"}``; plus ``n_boot``, ``seed``, ``level``.
            All scores share the same resamples of days.
        """
        cols = self._checked()
        out = self.compute()
        boot = bootstrap_days(
            lambda w: ensemble_scores(cols, w, self.members),
            self.n_days,
            n_boot=n_boot,
            seed=seed,
            level=level,
        )
        assert isinstance(boot, dict)
        intervals: dict[str, Any] = {"scores": {k: boot[k].at() for k in ENSEMBLE_SCORES}}
        if self.probabilities is not None:
            intervals.update(self.probabilities.intervals(n_boot, seed, level=level))
        out["intervals"] = {**intervals, "n_boot": n_boot, "seed": seed, "level": level}
        return out
