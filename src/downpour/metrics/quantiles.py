"""Streaming verification of quantile forecasts: :class:`QuantileAccumulator`.

Definitions: docs/metrics.md#probabilistic-verification.

Input: quantile fields ``(days, Q, y, x)`` at levels ``τ_1 < … < τ_Q`` (e.g.
the heads of a multi-quantile SRDRN) and the truth ``(days, y, x)``. A cell
is valid when the mask is True, the truth is finite and all Q quantiles are
finite; cells inside the mask left out are counted in ``excluded``. Each head
is scored as issued (crossing heads are counted in ``crossings``, not fixed).

Per level τ, pooled over valid cells of all days:

- **quantile (pinball) score** ``mean ρ_τ(y − q)``, ``ρ_τ(u) = max(τu, (τ − 1)u)``;
- **reliability**: the observed fraction of truth at or below ``q_τ``, with
  ties broken by the rule below; ``below`` (fraction ``y < q``),
  ``at_or_below`` (``y ≤ q``) and ``exceedance`` (``y > q``) are reported too.

Ties (why the rule)
-------------------
Precipitation is often exactly 0 in the truth and in the lower heads. A
forecast ``q`` is a correct τ-quantile of the distribution ``F`` of ``y``
when ``F(q−) ≤ τ ≤ F(q)``; "fraction of ``y ≤ q`` equals τ" holds only
without an atom at ``q``. The randomized PIT ``U = F(y−) + V·(F(y) − F(y−))``
(``V`` uniform) is uniform for every ``F``, and
``P(U ≤ τ) = P(y < q) + ω P(y = q)`` with ``ω = (τ − F(q−))/(F(q) − F(q−))``:
a tie counts as "≤" with probability ω. A quantile forecast, however, does
not state ``F(q−)`` and ``F(q)``: heads 0 at τ = 0.5 and positive at 0.95
say only ``0.5 ≤ P(y = 0) < 0.95``, so no rule using the heads alone can
know ω (with 60 % zeros the right ω is 0.5/0.6; with 90 % zeros, 0.5/0.9).
Pooled over N valid cell-days with ``B`` = fraction ``y < q`` and ``T`` =
fraction ``y = q``, the randomized-PIT fraction is ``B + ω̄ T`` for the
tie-averaged ``ω̄ ∈ [0, 1]``, and a calibrated forecast has
``E[B] + ω̄ E[T] = τ``, i.e. ``E[B] ≤ τ ≤ E[B + T]``: that bracket is all
the data can test. The rule estimates ω̄ by its sample value, clipped to
``[0, 1]``:

``reliability = B + clip((τ − B)/T, 0, 1)·T = clip(τ, B, B + T)``

(deterministic, no random draws; ``B`` when ``T = 0``, the usual fraction).
For a calibrated forecast ``reliability − τ = max(B − τ, 0) − max(τ − B − T, 0)``
is non-zero only when sampling noise carries ``B`` or ``B + T`` across τ,
so it is τ in expectation up to that noise (exactly τ with a probability
tending to 1 when τ is strictly inside the bracket). A head too low
(``P(y ≤ q) < τ``) gives ``B + T < τ`` and a reliability below τ; a head
too high gives ``B > τ`` and one above. Where ties cover τ the level cannot
be refuted: the reliability is τ and its interval collapses onto τ;
``below`` and ``at_or_below`` show the bracket.

Exceedance probabilities ``P(y > t)`` per threshold follow from the heads
with :func:`downpour.metrics.exceedance.exceedance_probability` and are scored
by a :class:`~downpour.metrics.probability.ProbabilityAccumulator`
(``probabilities``): Brier score, Brier skill score, ROC area, reliability
diagram. Every headline number has a bootstrap interval over days.

Examples
--------
>>> acc = QuantileAccumulator([0.5, 0.9], thresholds={"5mm": 5.0})
>>> q = np.stack([np.zeros((3, 2, 2)), np.full((3, 2, 2), 8.0)], axis=1)  # (days, Q, y, x)
>>> acc.update(q, np.full((3, 2, 2), 2.0))
>>> res = acc.compute()
>>> res["quantiles"]["0.5"]["pinball"], res["quantiles"]["0.9"]["reliability"]  # 0.5·2, 1
(1.0, 1.0)
>>> round(res["events"]["5mm"]["brier"], 4)  # P(y > 5) = 1 − (0.5 + 0.4·5/8), no event
0.0625
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from downpour.core.errors import DownpourError
from downpour.metrics.bootstrap import bootstrap_days
from downpour.metrics.day_stats import BLOCK_CELLS, count_cells
from downpour.metrics.day_table import DayTable, DayTableScores, mask_state, state_mask
from downpour.metrics.exceedance import check_taus, exceedance_probability
from downpour.metrics.inputs import as_days, as_mask, as_times, to_numpy
from downpour.metrics.probability import ProbabilityAccumulator
from downpour.metrics.probability_scores import DEFAULT_BINS, DIAGRAM_EDGES

__all__ = ["QUANTILE_SCORES", "STATE_VERSION", "QuantileAccumulator", "quantile_scores", "tau_key"]

#: Scores per level (keys of :func:`quantile_scores`), all with intervals.
QUANTILE_SCORES = ("pinball", "reliability", "below", "at_or_below", "exceedance")
#: Version of the layout of :meth:`QuantileAccumulator.state`.
STATE_VERSION = 1


def tau_key(tau: float) -> str:
    """Return the key of a level in the result dicts, e.g. ``"0.95"`` (shortest float text)."""
    return repr(float(tau))


def quantile_scores(cols: Mapping[str, np.ndarray], w: np.ndarray, taus: np.ndarray) -> dict:
    """Scores of every level for day weights ``w`` ``(B, days)``: arrays ``(B, Q)``.

    ``cols``: ``n`` ``(days,)``; ``pinball`` (sum of ρ_τ), ``below`` and
    ``ties`` ``(days, Q)``. Returns :data:`QUANTILE_SCORES` and ``tie_fraction``.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        n = (w @ cols["n"].astype(np.float64))[:, None]
        below = (w @ cols["below"].astype(np.float64)) / n
        ties = (w @ cols["ties"].astype(np.float64)) / n
        return {
            "pinball": (w @ cols["pinball"]) / n,
            "reliability": np.clip(taus, below, below + ties),
            "below": below,
            "at_or_below": below + ties,
            "exceedance": 1.0 - below - ties,
            "tie_fraction": ties,
        }


class QuantileAccumulator(DayTableScores):
    """Streaming pinball score, quantile reliability and exceedance-probability scores.

    Parameters
    ----------
    taus
        Quantile levels, strictly increasing inside ``(0, 1)`` (at least two
        when ``thresholds`` are given).
    thresholds
        Events ``y > value`` by name (e.g. ``{"P95": 12.1, "P99": 31.0}``) whose
        exceedance probabilities are derived from the heads and scored.
    climatology
        Reference probability per event name for the Brier skill score (the
        training base rate); missing = the verified sample's base rate.
    mask
        Boolean ``(y, x)`` (or 0/1), True = valid; ``None`` = all cells.
    lower
        Lower bound of the support used below the lowest head (0 for precipitation).
    bins, diagram_edges
        Probability bins, as :class:`~downpour.metrics.probability.ProbabilityAccumulator`.
    """

    _what = "quantile verification"

    def __init__(
        self,
        taus: Sequence[float],
        *,
        thresholds: Mapping[str, float] | None = None,
        climatology: Mapping[str, float] | None = None,
        mask: Any = None,
        lower: float = 0.0,
        bins: int | Sequence[float] = DEFAULT_BINS,
        diagram_edges: Sequence[float] = DIAGRAM_EDGES,
    ) -> None:
        self.taus = check_taus(taus, at_least=2 if thresholds else 1)
        self.lower = float(lower)
        self.mask = as_mask(mask)
        self.probabilities: ProbabilityAccumulator | None = None
        if thresholds:
            self.probabilities = ProbabilityAccumulator(
                thresholds,
                climatology=climatology,
                mask=self.mask,
                bins=bins,
                diagram_edges=diagram_edges,
            )
        elif climatology:
            raise DownpourError("quantile verification: climatology given without thresholds")
        nq = self.taus.size
        self._days = DayTable(
            {
                "n": ((), np.int64),
                "n_missing_truth": ((), np.int64),
                "n_bad_pred": ((), np.int64),
                "crossings": ((), np.int64),
                "pinball": ((nq,), np.float64),
                "below": ((nq,), np.int64),
                "ties": ((nq,), np.int64),
            }
        )

    def update(self, pred: Any, truth: Any, time: Any = None) -> None:
        """Add a batch of days.

        Parameters
        ----------
        pred
            Quantile fields ``(days, Q, y, x)`` (or one day ``(Q, y, x)``), the
            levels in the order of ``taus``: numpy, torch or xarray.
        truth
            ``(days, y, x)`` (or one ``(y, x)`` day).
        time
            Optional time stamps ``(days,)`` (datetime64).
        """
        p, t = to_numpy(pred), as_days(truth, "truth")
        if p.ndim == 3:
            p = p[None]
        nq = self.taus.size
        if (
            p.ndim != 4
            or p.shape[0] != t.shape[0]
            or p.shape[1] != nq
            or p.shape[2:] != t.shape[1:]
        ):
            raise DownpourError(
                f"quantile verification: quantiles must be (days, {nq} levels, y, x) matching "
                f"the truth {t.shape}, got {p.shape}"
            )
        if self.mask is not None and self.mask.shape != t.shape[1:]:
            raise DownpourError(
                f"quantile verification: mask {self.mask.shape} is not the grid {t.shape[1:]}"
            )
        if p.dtype not in (np.float32, np.float64):
            p = p.astype(np.float64)
        stamps = as_times(time, t.shape[0])
        step = max(1, BLOCK_CELLS // max(1, p[0].size))
        for i in range(0, t.shape[0], step):
            pb, tb, sb = p[i : i + step], t[i : i + step], stamps[i : i + step]
            self._days.append(self._block(pb, tb), sb)
            if self.probabilities is not None:
                thr = np.array(list(self.probabilities.events.values())).reshape(-1, 1, 1, 1)
                probs = exceedance_probability(pb, self.taus, thr, axis=1, lower=self.lower)
                self.probabilities.update(np.moveaxis(probs, 0, 1), tb, sb)

    def _block(self, p: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
        """Per-day statistics of quantiles ``(d, Q, y, x)`` and truth ``(d, y, x)``."""
        inside = np.ones(t.shape[1:], dtype=bool) if self.mask is None else self.mask
        fin_t, fin_p = np.isfinite(t), np.isfinite(p).all(axis=1)
        valid = inside & fin_t & fin_p
        q = np.where(valid[:, None], p, 0.0).astype(np.float64, copy=False)
        u = np.where(valid, t, 0.0).astype(np.float64, copy=False)[:, None] - q  # y − q
        tau = self.taus[:, None, None]
        return {
            "n": count_cells(valid),
            "n_missing_truth": count_cells(inside & ~fin_t),
            "n_bad_pred": count_cells(inside & fin_t & ~fin_p),
            "crossings": count_cells((np.diff(q, axis=1) < 0).any(axis=1) & valid),
            "pinball": (u * (tau - (u < 0))).sum(axis=(2, 3)),
            "below": np.count_nonzero((u < 0) & valid[:, None], axis=(2, 3)),
            "ties": np.count_nonzero((u == 0) & valid[:, None], axis=(2, 3)),
        }

    def merge(self, other: QuantileAccumulator) -> QuantileAccumulator:
        """Return an accumulator holding the days of both (ordered by time when all have one).

        Raises
        ------
        DownpourError
            For different levels, lower bound, mask or events, or a day in both.
        """
        same = (
            np.array_equal(self.taus, other.taus)
            and self.lower == other.lower
            and (self.mask is None) == (other.mask is None)
            and (self.mask is None or np.array_equal(self.mask, other.mask))
            and (self.probabilities is None) == (other.probabilities is None)
        )
        if not same:
            raise DownpourError(
                "quantile verification: cannot merge accumulators with different levels, "
                f"lower bound, mask or events ({self.taus.tolist()} vs {other.taus.tolist()})"
            )
        out = copy.copy(self)  # the setup is never modified, only the days
        out._days = self._days.merged(other._days)
        if self.probabilities is not None and other.probabilities is not None:
            out.probabilities = self.probabilities.merge(other.probabilities)
        return out

    def state(self) -> dict[str, np.ndarray]:
        """Everything the accumulator knows as named numpy arrays (e.g. for ``np.savez``).

        ``version``, ``taus``, ``lower``, ``mask`` (``(0, 0)`` for none),
        ``times``, ``day_<column>`` per statistic, and the event probabilities'
        state (:meth:`ProbabilityAccumulator.state`) under the prefix ``prob_``
        when there are thresholds. :meth:`from_state` rebuilds an equal accumulator.
        """
        arrays = {
            "version": np.array(STATE_VERSION),
            "taus": self.taus.copy(),
            "lower": np.array(self.lower),
            "mask": mask_state(self.mask),
            **self._days.state(),
        }
        if self.probabilities is not None:
            arrays.update(self.probabilities.state(prefix="prob_"))
        return arrays

    @classmethod
    def from_state(
        cls, arrays: Mapping[str, np.ndarray], where: str = "quantile verification state"
    ) -> QuantileAccumulator:
        """Rebuild an accumulator from :meth:`state`'s arrays (an exact round trip).

        Raises
        ------
        DownpourError
            For another layout version, or a missing or misshapen array.
        """
        mask = state_mask(arrays, version=STATE_VERSION, what="quantile",
                          keys=("taus", "lower", "mask"), where=where)  # fmt: skip
        acc = cls(arrays["taus"], mask=mask, lower=float(arrays["lower"]))
        acc._restore(arrays, where, ProbabilityAccumulator)
        return acc

    def compute(self) -> dict[str, Any]:
        """Scores of the accumulated days, JSON-ready.

        Returns
        -------
        dict
            ``n_days``, ``n_valid``, ``taus``, ``lower``, ``crossings`` (valid
            cell-days whose quantiles decrease somewhere), ``excluded``;
            ``quantiles[tau_key(τ)]``: ``tau``, :data:`QUANTILE_SCORES` and
            ``tie_fraction``; with thresholds, ``events[name]`` as
            :meth:`ProbabilityAccumulator.compute` (Brier, BSS, ROC area,
            reliability diagram).
        """
        cols = self._checked()
        est = quantile_scores(cols, np.ones((1, self.n_days)), self.taus)
        out: dict[str, Any] = {
            "n_days": self.n_days,
            "n_valid": int(cols["n"].sum()),
            "taus": self.taus.tolist(),
            "lower": self.lower,
            "crossings": int(cols["crossings"].sum()),
            "excluded": self.excluded(),
            "quantiles": {
                tau_key(tau): {"tau": float(tau), **{k: float(v[0, j]) for k, v in est.items()}}
                for j, tau in enumerate(self.taus)
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
            The :meth:`compute` dict with ``intervals``: ``quantiles[key][score]``
            for :data:`QUANTILE_SCORES` and, with thresholds, ``events[name][score]``
            (Brier, reference Brier, BSS, ROC area, base rate) and
            ``reliability[name]`` (event days; as the deterministic verification),
            each score ``{"estimate", "low", "high", "dropped"}``; plus
            ``n_boot``, ``seed``, ``level``. Quantile and event scores share the
            same resamples of days.
        """
        cols = self._checked()
        out = self.compute()
        boot = bootstrap_days(
            lambda w: quantile_scores(cols, w, self.taus),
            self.n_days,
            n_boot=n_boot,
            seed=seed,
            level=level,
        )
        assert isinstance(boot, dict)
        intervals: dict[str, Any] = {
            "quantiles": {
                tau_key(tau): {k: boot[k].at(j) for k in QUANTILE_SCORES}
                for j, tau in enumerate(self.taus)
            }
        }
        if self.probabilities is not None:
            intervals.update(self.probabilities.intervals(n_boot, seed, level=level))
        out["intervals"] = {**intervals, "n_boot": n_boot, "seed": seed, "level": level}
        return out
