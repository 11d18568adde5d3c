"""Streaming verification of probability forecasts of events: :class:`ProbabilityAccumulator`.

Definitions: docs/metrics.md#probabilistic-verification.

A forecast gives, per cell and day, the probability ``p ∈ [0, 1]`` of an
event ``y > t`` (strictly, the threshold compared as in
:func:`downpour.metrics.day_stats.threshold_for`); a deterministic forecast is
the special case ``p = 1(ŷ > t)`` (:meth:`ProbabilityAccumulator.update_deterministic`),
whose Brier score is then the fraction of misses and false alarms. A cell is
valid when the mask is True, the truth is finite and every event's
probability is finite; cells inside the mask left out are counted in
``excluded`` as in :class:`~downpour.metrics.accumulator.VerificationAccumulator`.

Per day the accumulator keeps the valid cells, ``Σ(p − o)²`` per event, per
event and fine probability bin the cells and the observed events, and ``Σp``
per reliability-diagram bin (:mod:`downpour.metrics.probability_scores`,
which also defines the bins): Brier score, Brier skill score
against a climatological probability, ROC area and the reliability diagram
follow from sums of these, so the bootstrap resamples days
(:mod:`downpour.metrics.bootstrap`), accumulators of separate periods merge
(:class:`~downpour.metrics.day_table.DayTable`), and :meth:`state` /
:meth:`from_state` round-trip exactly through plain numpy arrays.

Examples
--------
>>> acc = ProbabilityAccumulator({"5mm": 5.0}, climatology={"5mm": 0.5})
>>> acc.update(np.array([[[0.9, 0.2]]]), np.array([[[7.0, 1.0]]]))
>>> res = acc.compute()["events"]["5mm"]
>>> round(res["brier"], 3), round(res["bss"], 3), res["roc_auc"]  # (0.01 + 0.04) / 2
(0.025, 0.9, 1.0)
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from downpour.core.errors import DownpourError
from downpour.metrics.accumulator import MIN_EVENT_DAYS
from downpour.metrics.bootstrap import bootstrap_days
from downpour.metrics.day_stats import BLOCK_CELLS, count_cells, threshold_for
from downpour.metrics.day_table import DayTable, DayTableScores
from downpour.metrics.inputs import as_days, as_mask, as_times, to_numpy
from downpour.metrics.probability_scores import (
    DEFAULT_BINS,
    DIAGRAM_EDGES,
    EVENT_SCORES,
    bin_edges,
    bin_index,
    check_diagram_edges,
    diagram_index,
    event_scores,
    reliability_diagram,
)

__all__ = ["STATE_VERSION", "ProbabilityAccumulator"]
#: Version of the layout of :meth:`ProbabilityAccumulator.state`.
STATE_VERSION = 1


class ProbabilityAccumulator(DayTableScores):
    """Streaming Brier score, Brier skill score, ROC area and reliability diagram.

    Parameters
    ----------
    events
        Event thresholds by name (event: ``y > threshold``), e.g. ``{"P95": 12.1}``.
    climatology
        Reference probability of each event for the Brier skill score, e.g. the
        base rate of the training days; an event without one is scored against
        the base rate of the verified sample itself (``reference: "sample"``).
    mask
        Boolean ``(y, x)`` (or 0/1), True = valid cell; ``None`` = all cells.
    bins
        Fine probability bins of the ROC area: a number of bins evenly spaced
        in logit(p) (exact 0 and exact 1 have their own), or explicit interior
        edges (:func:`~downpour.metrics.probability_scores.bin_edges`).
    diagram_edges
        Edges of the reliability diagram, rising from 0 to 1 (default
        :data:`~downpour.metrics.probability_scores.DIAGRAM_EDGES`).
    """

    def __init__(
        self,
        events: Mapping[str, float],
        *,
        climatology: Mapping[str, float] | None = None,
        mask: Any = None,
        bins: int | Sequence[float] = DEFAULT_BINS,
        diagram_edges: Sequence[float] = DIAGRAM_EDGES,
    ) -> None:
        self.events = {str(k): float(v) for k, v in events.items()}
        if not self.events or not all(np.isfinite(v) for v in self.events.values()):
            raise DownpourError(f"probability verification: need finite thresholds, got {events}")
        clim = dict(climatology or {})
        unknown = set(clim) - set(self.events)
        if unknown:
            raise DownpourError(
                f"probability verification: climatology for unknown events {sorted(unknown)}; "
                f"events: {list(self.events)}"
            )
        self.climatology = np.array([float(clim.get(k, np.nan)) for k in self.events])
        given = self.climatology[~np.isnan(self.climatology)]
        if np.any((given < 0) | (given > 1)):
            raise DownpourError(f"probability verification: climatology must be in [0, 1]: {clim}")
        self.diagram_edges = check_diagram_edges(diagram_edges)
        self.bin_edges = bin_edges(bins, self.diagram_edges)
        self._diagram_of_bin = diagram_index(self.bin_edges, self.diagram_edges)
        self.mask = as_mask(mask)
        ne, nb, nd = len(self.events), self.bin_edges.size + 3, self.diagram_edges.size - 1
        self._days = DayTable(
            {
                "n": ((), np.int64),
                "n_missing_truth": ((), np.int64),
                "n_bad_pred": ((), np.int64),
                "sum_sq": ((ne,), np.float64),
                "count_bins": ((ne, nb), np.int64),
                "event_bins": ((ne, nb), np.int64),
                "diagram_sum_p": ((ne, nd), np.float64),
            }
        )

    def _as_probs(self, prob: Any) -> np.ndarray:
        """``(days, events, y, x)`` from a mapping by event name or an array."""
        if isinstance(prob, Mapping):
            missing = [k for k in self.events if k not in prob]
            if missing or len(prob) != len(self.events):
                raise DownpourError(
                    f"probability verification: got probabilities for {list(prob)}, "
                    f"expected {list(self.events)}"
                )
            return np.stack([as_days(prob[k], f"probability '{k}'") for k in self.events], axis=1)
        p = to_numpy(prob)
        if p.ndim in (2, 3) and len(self.events) == 1:
            return as_days(p, "probability")[:, None]
        if p.ndim != 4 or p.shape[1] != len(self.events):
            raise DownpourError(
                f"probability verification: probabilities must be (days, {len(self.events)} "
                f"events, y, x) or a mapping by event name, got {p.shape}"
            )
        return p

    def update(self, prob: Any, truth: Any, time: Any = None) -> None:
        """Add a batch of days.

        Parameters
        ----------
        prob
            Event probabilities: ``{name: (days, y, x)}``, an array
            ``(days, events, y, x)`` in the order of ``events``, or for a single
            event ``(days, y, x)``. Values in ``[0, 1]``; NaN is missing.
        truth
            ``(days, y, x)`` (or one ``(y, x)`` day).
        time
            Optional time stamps ``(days,)`` (datetime64).

        Raises
        ------
        DownpourError
            For shapes that do not match, or a valid probability outside ``[0, 1]``.
        """
        p, t = self._as_probs(prob), as_days(truth, "truth")
        if p.shape[0] != t.shape[0] or p.shape[2:] != t.shape[1:]:
            raise DownpourError(
                f"probability verification: probabilities {p.shape} do not match truth {t.shape}"
            )
        if self.mask is not None and self.mask.shape != t.shape[1:]:
            raise DownpourError(
                f"probability verification: mask {self.mask.shape} is not the grid {t.shape[1:]}"
            )
        stamps = as_times(time, t.shape[0])
        step = max(1, BLOCK_CELLS // max(1, p[0].size))
        for i in range(0, t.shape[0], step):
            self._days.append(self._block(p[i : i + step], t[i : i + step]), stamps[i : i + step])

    def update_deterministic(self, pred: Any, truth: Any, time: Any = None) -> None:
        """Add a deterministic forecast ``(days, y, x)`` as probabilities ``1(pred > threshold)``.

        Thresholds are compared as the verification does (strictly, exact for
        float32); a non-finite prediction stays missing.
        """
        f = as_days(pred, "prediction")
        with np.errstate(invalid="ignore"):
            probs = {
                k: np.where(np.isfinite(f), f > threshold_for(v, f.dtype), np.nan)
                for k, v in self.events.items()
            }
        self.update(probs, truth, time)

    def _block(self, p: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
        """Per-day statistics of ``p`` ``(d, events, y, x)`` and ``t`` ``(d, y, x)``."""
        d, ne = t.shape[0], p.shape[1]
        inside = np.ones(t.shape[1:], dtype=bool) if self.mask is None else self.mask
        fin_t, fin_p = np.isfinite(t), np.isfinite(p).all(axis=1)
        valid = inside & fin_t & fin_p
        p64 = np.where(valid[:, None], p, 0.0).astype(np.float64, copy=False)
        if np.any((p64 < 0.0) | (p64 > 1.0)):
            raise DownpourError(
                "probability verification: probabilities must lie in [0, 1], got values in "
                f"[{p64.min():.6g}, {p64.max():.6g}]"
            )
        with np.errstate(invalid="ignore"):
            obs = np.stack([t > threshold_for(v, t.dtype) for v in self.events.values()], axis=1)
        obs &= valid[:, None]
        err = p64 - obs
        nb, nd = self.bin_edges.size + 3, self.diagram_edges.size - 1
        fine = bin_index(p64, self.bin_edges)
        row = np.arange(d * ne).reshape(d, ne, 1, 1)
        vv = np.broadcast_to(valid[:, None], p.shape)
        flat = (fine + nb * row)[vv]
        diag = (self._diagram_of_bin[fine] + nd * row)[vv]
        return {
            "n": count_cells(valid),
            "n_missing_truth": count_cells(inside & ~fin_t),
            "n_bad_pred": count_cells(inside & fin_t & ~fin_p),
            "sum_sq": np.einsum("deij,deij->de", err, err),
            "count_bins": np.bincount(flat, minlength=d * ne * nb).reshape(d, ne, nb),
            "event_bins": np.bincount(flat, obs[vv], d * ne * nb).reshape(d, ne, nb),
            "diagram_sum_p": np.bincount(diag, p64[vv], d * ne * nd).reshape(d, ne, nd),
        }

    def merge(self, other: ProbabilityAccumulator) -> ProbabilityAccumulator:
        """Return an accumulator holding the days of both (ordered by time when all have one).

        Raises
        ------
        DownpourError
            For different events, climatology, bins or mask, or a day in both.
        """
        same = (
            other.events == self.events
            and np.array_equal(other.climatology, self.climatology, equal_nan=True)
            and np.array_equal(other.bin_edges, self.bin_edges)
            and np.array_equal(other.diagram_edges, self.diagram_edges)
            and (self.mask is None) == (other.mask is None)
            and (self.mask is None or np.array_equal(self.mask, other.mask))
        )
        if not same:
            raise DownpourError(
                "probability verification: cannot merge accumulators with different events, "
                f"climatology, bins or mask ({self.events} vs {other.events})"
            )
        out = copy.copy(self)  # the setup is never modified, only the days
        out._days = self._days.merged(other._days)
        return out

    def state(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Everything the accumulator knows as named numpy arrays (keys start with ``prefix``).

        ``version``, ``event_names``, ``event_thresholds``, ``climatology``
        (NaN = sample base rate), ``bin_edges``, ``diagram_edges``, ``mask``
        (``(0, 0)`` for none), ``times`` and ``day_<column>`` per statistic.
        :meth:`from_state` turns them back into an equal accumulator.
        """
        arrays = {
            "version": np.array(STATE_VERSION),
            "event_names": np.array(list(self.events), dtype=str),
            "event_thresholds": np.array(list(self.events.values())),
            "climatology": self.climatology.copy(),
            "bin_edges": self.bin_edges.copy(),
            "diagram_edges": self.diagram_edges.copy(),
            "mask": self.mask if self.mask is not None else np.zeros((0, 0), dtype=bool),
            **self._days.state(),
        }
        return {f"{prefix}{k}": v for k, v in arrays.items()}

    @classmethod
    def from_state(
        cls,
        arrays: Mapping[str, np.ndarray],
        *,
        prefix: str = "",
        where: str = "probability verification state",
    ) -> ProbabilityAccumulator:
        """Rebuild an accumulator from :meth:`state`'s arrays (an exact round trip).

        Raises
        ------
        DownpourError
            For another layout version, or a missing or misshapen array.
        """
        key = f"{prefix}version"
        version = int(arrays[key]) if key in arrays else None
        if version != STATE_VERSION:
            raise DownpourError(
                f"{where}: probability state version {version}, this version reads "
                f"{STATE_VERSION}; recompute the state with this version of downpour"
            )
        head = ("event_names", "event_thresholds", "climatology", "bin_edges", "diagram_edges")
        head = (*head, "mask")
        missing = [f"{prefix}{k}" for k in head if f"{prefix}{k}" not in arrays]
        if missing:
            raise DownpourError(f"{where}: probability state lacks {missing}")
        a = {k: np.asarray(arrays[f"{prefix}{k}"]) for k in head}
        names = a["event_names"].tolist()
        clim = {n: float(c) for n, c in zip(names, a["climatology"], strict=True) if c == c}
        acc = cls(
            dict(zip(names, a["event_thresholds"].tolist(), strict=True)),
            climatology=clim,
            mask=a["mask"] if a["mask"].size else None,
            bins=a["bin_edges"],
            diagram_edges=a["diagram_edges"],
        )
        acc._days = DayTable.from_state(arrays, acc._days.spec, prefix=prefix, where=where)
        return acc

    def compute(self) -> dict[str, Any]:
        """Scores of the accumulated days, JSON-ready.

        Returns
        -------
        dict
            ``n_days``, ``n_valid``, ``excluded`` and ``events[name]``:
            ``threshold``, ``climatology`` (None: the sample's base rate),
            ``reference`` (``"climatology"`` or ``"sample"``), ``n_events``,
            ``base_rate``, ``brier``, ``brier_reference``, ``bss``, ``roc_auc``,
            ``roc_auc_bin_error`` (bound on the binning error of the ROC area),
            ``event_days`` and ``reliability_diagram`` (see
            :func:`downpour.metrics.probability_scores.reliability_diagram`).
        """
        cols = self._checked()
        est = event_scores(cols, np.ones((1, self.n_days)), self.climatology)
        counts, evs = cols["count_bins"].sum(axis=0), cols["event_bins"].sum(axis=0)
        group = np.eye(self.diagram_edges.size - 1)[self._diagram_of_bin]  # fine → diagram
        sum_p = cols["diagram_sum_p"].sum(axis=0)
        event_days = (cols["event_bins"].sum(axis=-1) > 0).sum(axis=0)
        events = {}
        for i, (name, thr) in enumerate(self.events.items()):
            c = self.climatology[i]
            events[name] = {
                "threshold": thr,
                "climatology": None if np.isnan(c) else float(c),
                "reference": "sample" if np.isnan(c) else "climatology",
                "n_events": int(evs[i].sum()),
                **{k: float(v[0, i]) for k, v in est.items()},
                "event_days": int(event_days[i]),
                "reliability_diagram": reliability_diagram(
                    counts[i] @ group, evs[i] @ group, sum_p[i], self.diagram_edges
                ),
            }
        return {
            "n_days": self.n_days,
            "n_valid": int(cols["n"].sum()),
            "excluded": self.excluded(),
            "events": events,
        }

    def intervals(
        self, n_boot: int = 1000, seed: int = 0, *, level: float = 0.95
    ) -> dict[str, Any]:
        """Bootstrap intervals (resampling days) of :data:`EVENT_SCORES` per event.

        Returns
        -------
        dict
            ``events[name][score]`` = ``{estimate, low, high, dropped}``;
            ``reliability[name]``: ``event_days``, ``min_event_days``,
            ``reliable`` (as the deterministic verification).
        """
        cols = self._checked()
        boot = bootstrap_days(
            lambda w: event_scores(cols, w, self.climatology),
            self.n_days,
            n_boot=n_boot,
            seed=seed,
            level=level,
        )
        assert isinstance(boot, dict)
        event_days = (cols["event_bins"].sum(axis=-1) > 0).sum(axis=0)
        return {
            "events": {
                name: {k: boot[k].at(i) for k in EVENT_SCORES} for i, name in enumerate(self.events)
            },
            "reliability": {
                name: {
                    "event_days": int(event_days[i]),
                    "min_event_days": MIN_EVENT_DAYS,
                    "reliable": bool(event_days[i] >= MIN_EVENT_DAYS),
                }
                for i, name in enumerate(self.events)
            },
        }

    def compute_with_intervals(
        self, n_boot: int = 1000, seed: int = 0, *, level: float = 0.95
    ) -> dict[str, Any]:
        """:meth:`compute` plus ``intervals``: :meth:`intervals` and ``n_boot seed level``."""
        extra = {"n_boot": n_boot, "seed": seed, "level": level}
        return {
            **self.compute(),
            "intervals": {**self.intervals(n_boot, seed, level=level), **extra},
        }
