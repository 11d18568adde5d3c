"""Figures of the generator's prior-mode ensemble scored by ``downpour verify``.

Each function draws from the ``generator`` block of ``verify.json``
(:mod:`downpour.downscaling.verify_generator`; docs/metrics.md#in-downpour-verify):

- :func:`plot_rank_histogram`: the truth's rank among the K members, each of
  the K + 1 bins as its frequency over the uniform ``1/(K+1)``, with the
  uniform line and a 0.8–1.25 band (a U shape: too little spread; a dome:
  too much; a slope: a bias);
- :func:`plot_spread_skill`: spread ``√(mean s² (K+1)/K)`` against the RMSE of
  the ensemble mean over all verified days, with 95% intervals and the 1:1
  line (the accumulator keeps only totals, so there is one point, not a
  binned diagram);
- :func:`plot_crps_vs_mae`: the generator's CRPS beside every deterministic
  model's MAE (its CRPS), and the paired differences with intervals;
- :func:`plot_generator_reliability`: reliability diagrams of ``P(y > P95)``
  and ``P(y > P99)`` as the fraction of members above (with the quantile
  SRDRNs beside it when the run has them), through
  :func:`downpour.report.probabilistic.plot_reliability_diagrams`;
- :func:`plot_member_panel`: the heaviest verified days, truth beside a few
  members (:func:`downpour.report.figures.plot_members`), kept while
  streaming by :class:`HeaviestDays`.

:func:`generator_figures` draws them all under the file names of :data:`FIGURES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from downpour.core.errors import DownpourError  # noqa: E402
from downpour.report import figures as plots  # noqa: E402
from downpour.report import probabilistic as prob  # noqa: E402

__all__ = [
    "FIGURES",
    "HeaviestDays",
    "generator_figures",
    "plot_crps_vs_mae",
    "plot_generator_reliability",
    "plot_member_panel",
    "plot_rank_histogram",
    "plot_spread_skill",
]

#: Figure files (``RUN/figures/<name>.png``) and what each shows (alt text in the report).
FIGURES = {
    "verify_generator_crps": "generator CRPS against each model's MAE",
    "verify_generator_rank_histogram": "rank histogram of the truth among the members",
    "verify_generator_spread_skill": "spread against RMSE of the ensemble mean",
    "verify_generator_reliability": "reliability of the members' event probabilities",
    "verify_generator_members": "heaviest days: truth and members",
}


@dataclass
class HeaviestDays:
    """The ``n`` heaviest days seen (truth mean over the valid cells) with ``shown`` members each.

    Cheap to keep while streaming: at most ``n`` days of ``shown + 1`` fields.
    """

    n: int = 3
    shown: int = 4
    score: np.ndarray = field(default_factory=lambda: np.zeros(0))
    times: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype="datetime64[ns]"))
    truth: np.ndarray | None = None  # (n, H, W)
    members: np.ndarray | None = None  # (n, shown, H, W)

    def update(
        self, members: np.ndarray, truth: np.ndarray, times: np.ndarray, mask: np.ndarray
    ) -> None:
        """Offer a batch: members ``(days, K, H, W)``, truth ``(days, H, W)``, times ``(days,)``."""
        valid = mask & np.isfinite(truth)
        score = np.where(valid, truth, 0.0).sum(axis=(1, 2)) / np.maximum(valid.sum(axis=(1, 2)), 1)
        shown = np.asarray(members[:, : self.shown], dtype=np.float32)
        if self.truth is None:
            all_t, all_m = np.asarray(truth, np.float32), shown
        else:
            assert self.members is not None
            all_t = np.concatenate([self.truth, np.asarray(truth, np.float32)])
            all_m = np.concatenate([self.members, shown])
        all_s = np.concatenate([self.score, score])
        keep = np.argsort(-all_s, kind="stable")[: self.n]
        self.score, self.truth, self.members = all_s[keep], all_t[keep], all_m[keep]
        self.times = np.concatenate([self.times, np.asarray(times, "datetime64[ns]")])[keep]

    def dataset(self, mask: np.ndarray, coords: Mapping[str, Any] | None = None) -> xr.Dataset:
        """Return the kept days as a samples-like dataset (``samples``, ``target``, ``mask``, time).

        ``coords``: optional ``lat``/``lon`` (1-D, over ``y``/``x``) for the maps' axes.
        """
        if self.truth is None or self.members is None:
            raise DownpourError("no day was offered to the heaviest-days holder")
        extra = {
            k: (("y",) if k == "lat" else ("x",), np.asarray(v))
            for k, v in (coords or {}).items()
            if k in ("lat", "lon") and np.ndim(v) == 1
        }
        return xr.Dataset(
            {
                "samples": (("event", "member", "y", "x"), self.members),
                "target": (("event", "y", "x"), self.truth),
                "mask": (("y", "x"), np.asarray(mask, bool)),
            },
            coords={"time": ("event", self.times), **extra},
        )


def _block(result: dict[str, Any]) -> dict[str, Any]:
    gen = result.get("generator")
    if not gen:
        raise DownpourError("the result has no 'generator' block (verify a run with a cVAE)")
    return gen


def _err(leaves: list[dict[str, Any]]) -> np.ndarray:
    """Error bars ``(2, n)`` of bootstrap leaves (NaN limits drawn as none)."""
    est = np.array([leaf["estimate"] for leaf in leaves], dtype=float)
    low = np.array([leaf["low"] for leaf in leaves], dtype=float)
    high = np.array([leaf["high"] for leaf in leaves], dtype=float)
    return np.nan_to_num(np.vstack([np.clip(est - low, 0, None), np.clip(high - est, 0, None)]))


def plot_rank_histogram(result: dict[str, Any]) -> Figure:
    """Bins of the rank histogram over the uniform frequency, with the 0.8–1.25 band.

    Parameters
    ----------
    result
        A ``verify.json`` dict with a ``generator`` block (``ensemble.rank_histogram``
        with ``frequencies`` of the K + 1 ranks).
    """
    ens = _block(result)["ensemble"]
    freq = np.asarray(ens["rank_histogram"]["frequencies"], dtype=float)
    k = freq.size - 1
    ratio = freq * (k + 1)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.axhspan(0.8, 1.25, color="0.88", label="0.8 – 1.25 of uniform")
    ax.bar(np.arange(k + 1), ratio, width=0.85, color="C0", label="truth's rank")
    ax.axhline(1.0, color="k", lw=1.0, ls="--", label=f"uniform 1/(K+1) = {1 / (k + 1):.3f}")
    iv = ens["intervals"]["scores"]
    ax.set(xlabel=f"rank of the truth among the K = {k} members (ties at random)",
           ylabel="frequency ÷ uniform",
           title=f"Rank histogram: largest bin {prob.interval(iv['rank_max_ratio'], 2)}, "
                 f"smallest {prob.interval(iv['rank_min_ratio'], 2)}")  # fmt: skip
    ax.title.set_fontsize(9)
    ax.set_xticks(np.arange(k + 1) if k <= 20 else np.linspace(0, k, 6).round())
    ax.legend(fontsize=7, loc="upper center")
    fig.tight_layout()
    return fig


def plot_spread_skill(result: dict[str, Any]) -> Figure:
    """Spread against the RMSE of the ensemble mean (all days), with intervals and the 1:1 line."""
    iv = _block(result)["ensemble"]["intervals"]["scores"]
    rmse, spread, ratio = iv["rmse_ensemble_mean"], iv["spread"], iv["spread_skill"]
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.errorbar([rmse["estimate"]], [spread["estimate"]], xerr=_err([rmse]), yerr=_err([spread]),
                fmt="o", color="C0", capsize=4, label="generator, all verified days")  # fmt: skip
    top = float(np.nanmax([rmse["high"], spread["high"], rmse["estimate"], spread["estimate"]]))
    top = 1.15 * top if np.isfinite(top) and top > 0 else 1.0
    ax.plot([0, top], [0, top], "k--", lw=0.8, label="1:1 (calibrated)")
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="RMSE of the ensemble mean",
           ylabel="spread √(mean s² (K+1)/K)",
           title=f"Spread–skill ratio {prob.interval(ratio, 2)}")  # fmt: skip
    ax.text(0.04, 0.96, "above the line: too much spread\nbelow: too little", va="top",
            transform=ax.transAxes, fontsize=7, color="0.35")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_crps_vs_mae(result: dict[str, Any]) -> Figure:
    """Draw the generator's CRPS beside each deterministic model's MAE, and paired differences."""
    gen = _block(result)
    pairs = {n: d for n, d in gen["crps_minus_mae"].items() if "error" not in d}
    scores = gen["ensemble"]["intervals"]["scores"]
    labels = ["generator CRPS (ECDF)", "generator CRPS (fair)", *(f"{n} MAE" for n in pairs)]
    leaves = [scores["crps_ecdf"], scores["crps_fair"],
              *(d["ecdf"]["reference"] for d in pairs.values())]  # fmt: skip
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.0, 0.45 * len(labels) + 1.6))
    y = np.arange(len(labels))[::-1]
    colours = ["C3", "C1", *(["C0"] * len(pairs))]
    ax1.barh(y, [leaf["estimate"] for leaf in leaves], xerr=_err(leaves), color=colours,
             capsize=3)  # fmt: skip
    ax1.set_yticks(y, labels, fontsize=8)
    ax1.set(xlabel=f"{result.get('units', '')} (CRPS of a deterministic forecast = its MAE)",
            title="CRPS and MAE, 95% intervals")  # fmt: skip
    diffs = [d["ecdf"]["difference"] for d in pairs.values()]
    yd = np.arange(len(diffs))[::-1]
    ax2.errorbar([d["estimate"] for d in diffs], yd, xerr=_err(diffs), fmt="o", color="C3",
                 capsize=3)  # fmt: skip
    ax2.axvline(0.0, color="k", lw=0.8)
    ax2.set_yticks(yd, [f"CRPS − {n} MAE" for n in pairs], fontsize=8)
    ax2.set(xlabel="paired difference (negative favours the generator)",
            title="Generator CRPS − model MAE, paired 95% intervals")  # fmt: skip
    for ax in (ax1, ax2):
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def plot_generator_reliability(result: dict[str, Any]) -> Figure:
    """Reliability diagrams of P(y > P95) and P(y > P99) as the fraction of members above.

    The run's quantile SRDRNs (``probabilistic.quantile_models``) are drawn beside
    the generator when the result has them.
    """
    gen = _block(result)
    quantile = result.get("probabilistic", {}).get("quantile_models", {})
    shaped = {
        "probabilistic": {
            "events": gen["events"],
            "climatology": gen["climatology"],
            "quantile_models": {f"generator (K = {gen['members']})": gen["ensemble"], **quantile},
            "probability_models": {},
        }
    }
    fig = prob.plot_reliability_diagrams(shaped)
    fig.suptitle("Event probabilities of the generator's members (fraction above)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_member_panel(heaviest: xr.Dataset, *, n_members: int = 4, units: str = "mm/day") -> Figure:
    """Map the heaviest verified days: the truth beside ``n_members`` prior-mode members.

    Parameters
    ----------
    heaviest
        ``samples`` ``(event, member, y, x)``, ``target`` ``(event, y, x)``, ``mask``
        ``(y, x)`` and the ``time`` of each event (as
        :meth:`HeaviestDays.dataset` gives).
    """
    return plots.plot_members(
        heaviest, n_events=heaviest.sizes["event"], n_members=n_members, units=units,
        title="Heaviest verified days: truth and the generator's prior-mode members",
    )  # fmt: skip


def generator_figures(
    result: dict[str, Any], heaviest: xr.Dataset | None = None, *, units: str = "mm/day"
) -> dict[str, Figure]:
    """Draw every figure of the generator, by file name (:data:`FIGURES`; members: ``heaviest``)."""
    figs = {
        "verify_generator_crps": plot_crps_vs_mae(result),
        "verify_generator_rank_histogram": plot_rank_histogram(result),
        "verify_generator_spread_skill": plot_spread_skill(result),
        "verify_generator_reliability": plot_generator_reliability(result),
    }
    if heaviest is not None:
        figs["verify_generator_members"] = plot_member_panel(heaviest, units=units)
    return figs
