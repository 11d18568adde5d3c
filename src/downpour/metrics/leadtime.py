"""Verification scores per lead time of a nowcast, and the targets against persistence.

:class:`LeadScores` pools the scores of one forecasting method over init
times at each lead (one
:class:`~downpour.metrics.accumulator.VerificationAccumulator` per lead; an
"init" plays the role of a "day" there): RMSE in mm/h and in the network's
normalised space, MAE, Pearson correlation, CSI per threshold (event
``value > threshold``, mm/h), FSS per threshold and window size, and the RAPSD
of forecast and observation (mean over inits, no-data filled with 0).
Thresholds are named ``"<t>mm/h"`` (:func:`threshold_name`).
:func:`beats_persistence` checks one lead's scores against persistence's.

Examples
--------
>>> obs = np.array([[[0.0, 2.0], [6.0, 0.0]], [[0.0, 0.0], [12.0, 3.0]]])
>>> scores = LeadScores(1, [1.0, 5.0], [1], np.log1p)
>>> scores.update(obs[:1], obs[1:], np.datetime64("2021-07-01T00:00"))
>>> s = scores.compute()[0]
>>> s["n_inits"], s["rmse"], s["csi"]
(1, 3.5, {'1mm/h': 0.3333333333333333, '5mm/h': 1.0})
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from downpour.metrics.accumulator import VerificationAccumulator
from downpour.metrics.spectra import rapsd

__all__ = ["LeadScores", "beats_persistence", "threshold_name"]


def threshold_name(t: float) -> str:
    """Name of a rain-rate threshold in mm/h, e.g. ``threshold_name(1.0) == "1mm/h"``."""
    return f"{t:g}mm/h"


class LeadScores:
    """Streaming scores of one method at each of ``n_leads`` lead times.

    Parameters
    ----------
    n_leads
        Number of lead times.
    thresholds
        Event thresholds in mm/h.
    scales
        FSS window sizes in pixels.
    transform
        The network's rain transform as a function of rain rates (mm/h),
        for the normalised RMSE, e.g. ``numpy.log1p``.
    """

    def __init__(
        self,
        n_leads: int,
        thresholds: Sequence[float],
        scales: Sequence[int],
        transform: Callable[[np.ndarray], np.ndarray],
    ) -> None:
        named = {threshold_name(t): float(t) for t in thresholds}
        self.acc = [VerificationAccumulator(named, scales=scales) for _ in range(n_leads)]
        self.transform = transform
        self.sse_norm = np.zeros(n_leads)
        self.n = np.zeros(n_leads)
        self.psd: list[np.ndarray | None] = [None] * n_leads
        self.psd_truth: list[np.ndarray | None] = [None] * n_leads
        self.freq = np.zeros(0)
        self.mixed_grids = False

    def update(self, forecast: np.ndarray, truth: np.ndarray, time: np.datetime64) -> None:
        """Add one init: ``forecast``, ``truth`` ``(K, H, W)`` mm/h, NaN excluded, K ≤ n_leads."""
        for k in range(truth.shape[0]):
            f, t = forecast[k].astype(np.float64), truth[k].astype(np.float64)
            valid = np.isfinite(f) & np.isfinite(t)
            if not valid.any():
                continue
            self.acc[k].update(f, t, np.array([time]))
            d = self.transform(f[valid]) - self.transform(t[valid])
            self.sse_norm[k] += float(np.sum(d * d))
            self.n[k] += valid.sum()
            self.freq, p = rapsd(np.stack([f, t]), mask=valid)
            self.psd[k] = p[0] if self.psd[k] is None else self.psd[k] + p[0]
            self.psd_truth[k] = p[1] if self.psd_truth[k] is None else self.psd_truth[k] + p[1]

    def merge(self, other: LeadScores) -> LeadScores:
        """Return the scores of the inits of both (e.g. two events).

        The accumulators merge per lead
        (:meth:`~downpour.metrics.accumulator.VerificationAccumulator.merge`),
        the inits of ``self`` first; their time stamps are dropped, since two
        events (two radars) may share an init time. Mean spectra are pooled
        only when both were computed on grids of one size (else ``rapsd`` is
        ``None`` in :meth:`compute`: compare spectra per event).
        """
        if len(other.acc) != len(self.acc):
            raise ValueError(f"LeadScores.merge: {len(self.acc)} vs {len(other.acc)} leads")
        out = LeadScores(0, [], [], self.transform)
        out.acc = [_untimed(a).merge(_untimed(b)) for a, b in zip(self.acc, other.acc, strict=True)]
        out.sse_norm, out.n = self.sse_norm + other.sse_norm, self.n + other.n
        mixed = self.freq.size and other.freq.size and self.freq.shape != other.freq.shape
        out.mixed_grids = bool(self.mixed_grids or other.mixed_grids or mixed)
        out.freq = self.freq if self.freq.size else other.freq

        def pooled(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
            return a if b is None else b if a is None else None if out.mixed_grids else a + b

        out.psd = [pooled(a, b) for a, b in zip(self.psd, other.psd, strict=True)]
        out.psd_truth = [pooled(a, b) for a, b in zip(self.psd_truth, other.psd_truth, strict=True)]
        return out

    def compute(self) -> list[dict[str, Any]]:
        """Return the scores of each lead.

        Returns
        -------
        list of dict
            Per lead: ``n_inits``, ``rmse``, ``rmse_norm``, ``mae``,
            ``correlation``, ``csi[thr]``, ``fss[thr][scale]``, ``rapsd`` and
            ``rapsd_truth``; only ``n_inits: 0`` for a lead never observed.
        """
        out: list[dict[str, Any]] = []
        for k, acc in enumerate(self.acc):
            if acc.n_days == 0:
                out.append({"n_inits": 0})
                continue
            s = acc.compute(tail_fit=False)
            c = s["continuous"]
            psd, psd_t = self.psd[k], self.psd_truth[k]
            if self.mixed_grids:
                psd = psd_t = None
            out.append(
                {
                    "n_inits": acc.n_days,
                    "rmse": c["rmse"],
                    "rmse_norm": float(np.sqrt(self.sse_norm[k] / self.n[k])),
                    "mae": c["mae"],
                    "correlation": c["correlation"],
                    "csi": {n: v["csi"] for n, v in s["categorical"].items()},
                    "fss": {n: {int(sc): v for sc, v in d.items()} for n, d in s["fss"].items()},
                    "rapsd": (psd / acc.n_days).tolist() if psd is not None else None,
                    "rapsd_truth": (psd_t / acc.n_days).tolist() if psd_t is not None else None,
                }
            )
        return out


def _untimed(acc: VerificationAccumulator) -> VerificationAccumulator:
    """Return a copy of ``acc`` with every day's time stamp NaT."""
    state = dict(acc.state())
    state["times"] = np.full(acc.n_days, np.datetime64("NaT"), dtype="datetime64[ns]")
    return VerificationAccumulator.from_state(state)


def beats_persistence(model: dict[str, Any], pers: dict[str, Any], heavy: str) -> dict[str, bool]:
    """Check the targets at one lead against persistence.

    ``csi_1``: CSI at 1 mm/h above persistence; ``fss_1``: FSS at 1 mm/h above
    it at every scale; ``csi_heavy_not_worse``: CSI at ``heavy`` not below it.

    Examples
    --------
    >>> m = {"n_inits": 3, "csi": {"1mm/h": 0.5}, "fss": {"1mm/h": {1: 0.6, 5: 0.8}}}
    >>> p = {"n_inits": 3, "csi": {"1mm/h": 0.4}, "fss": {"1mm/h": {1: 0.5, 5: 0.9}}}
    >>> beats_persistence(m, p, "1mm/h")
    {'csi_1': True, 'fss_1': False, 'csi_heavy_not_worse': True}
    """
    if not model.get("n_inits") or not pers.get("n_inits"):
        return {}
    one = threshold_name(1.0)
    out: dict[str, bool] = {}
    if one in model["csi"]:
        out["csi_1"] = bool(model["csi"][one] > pers["csi"][one])
        fm, fp = model["fss"][one], pers["fss"][one]
        out["fss_1"] = bool(all(fm[s] > fp[s] for s in fm if np.isfinite(fp[s])))
    if heavy in model["csi"]:
        m, p = model["csi"][heavy], pers["csi"][heavy]
        out["csi_heavy_not_worse"] = bool(
            (np.isnan(m) and np.isnan(p)) or (np.isfinite(m) and not m < p)
        )
    return out
