"""Tables and figures of the distributional verification (``verify.json``'s ``probabilistic``).

Rows the command line and the HTML report print the same way, and two
figures: the quantile reliability of every quantile model (observed fraction
of truth ≤ q_τ against τ, with bootstrap intervals) and the reliability
diagrams of the exceedance probabilities at P95 and P99, with the
deterministic models as 0/1 forecasts beside them
(docs/metrics.md#probabilistic-verification).

Examples
--------
>>> leaf = {"estimate": 0.2, "low": 0.1, "high": 0.3, "significant": True}
>>> interval(leaf)
'0.200 [0.100, 0.300]'
>>> model_names({"models": {"a": {}, "a q0.99": {}, "b": {}}})
['a', 'b']
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from downpour.report.tables import interval  # noqa: E402  (one formatter for every table)

__all__ = [
    "difference_lines",
    "event_rows",
    "head_names",
    "interval",
    "model_names",
    "plot_quantile_reliability",
    "plot_reliability_diagrams",
    "quantile_rows",
]


def model_names(result: dict[str, Any]) -> list[str]:
    """Return the verified models without the extra heads of quantile models (named "m qτ")."""
    return [n for n in result["models"] if " " not in n]


def head_names(result: dict[str, Any]) -> list[str]:
    """Return the heads of quantile models scored as fields (the median under the model name)."""
    quant = result.get("probabilistic", {}).get("quantile_models", {})
    return [n for n in result["models"] if n in quant or n.split(" ")[0] in quant]


def quantile_rows(result: dict[str, Any]) -> list[list[str]]:
    """Per quantile model and level: reliability, exceedance, pinball, ties; with intervals."""
    rows = []
    for name, res in result.get("probabilistic", {}).get("quantile_models", {}).items():
        for key, q in res["quantiles"].items():
            iv = res["intervals"]["quantiles"][key]
            rows.append(
                [
                    name,
                    f"{q['tau']:g}",
                    interval(iv["reliability"], 4),
                    f"{q['below']:.4f} – {q['at_or_below']:.4f}",
                    interval(iv["exceedance"], 4),
                    f"{1 - q['tau']:.4f}",
                    interval(iv["pinball"]),
                ]
            )
    return rows


#: Header of :func:`quantile_rows`.
QUANTILE_HEADER = [
    "model",
    "τ",
    "reliability (ties by rule)",
    "truth < q … ≤ q",
    "truth > q",
    "nominal 1 − τ",
    "pinball",
]


def event_rows(result: dict[str, Any]) -> list[list[str]]:
    """Per event and model: Brier score, Brier skill score, ROC area, base rate."""
    prob = result.get("probabilistic", {})
    models = {**prob.get("quantile_models", {}), **prob.get("probability_models", {})}
    rows = []
    for event in prob.get("events", {}):
        for name, res in models.items():
            e = res["events"][event]
            iv = res["intervals"]["events"][event]
            kind = "quantile heads" if name in prob.get("quantile_models", {}) else "0/1"
            rel = res["intervals"].get("reliability", {}).get(event, {})
            note = (
                f" (only {rel['event_days']} event days: intervals unreliable)"
                if rel and not rel["reliable"]
                else ""
            )
            rows.append(
                [
                    event,
                    f"{name} ({kind})",
                    interval(iv["brier"], 4),
                    interval(iv["bss"]) + note,
                    interval(iv["roc_auc"]),
                    f"{e['base_rate']:.4f}",
                ]
            )
    return rows


#: Header of :func:`event_rows`.
EVENT_HEADER = ["event", "model", "Brier", "BSS (vs training climatology)", "ROC area", "base rate"]


def difference_lines(result: dict[str, Any]) -> list[str]:
    """Plain statements of the paired differences of event and pinball scores."""
    prob = result.get("probabilistic", {})
    lines = []
    for pair, d in prob.get("probability_differences", {}).items():
        for event, scores in d["events"].items():
            for score in ("bss", "roc_auc"):
                leaf = scores[score]
                verdict = "significant" if leaf["significant"] else "not significant"
                lines.append(f"{pair}, {score.upper()} {event}: {interval(leaf)}, {verdict}")
    for pair, d in prob.get("quantile_differences", {}).items():
        for key, scores in d["quantiles"].items():
            leaf = scores["pinball"]
            verdict = "significant" if leaf["significant"] else "not significant"
            lines.append(f"{pair}, pinball τ={float(key):g}: {interval(leaf)}, {verdict}")
    return lines


def plot_quantile_reliability(result: dict[str, Any]) -> Figure:
    """Observed non-exceedance against τ per quantile model, with 95% intervals.

    Panel 1: reliability against τ (ideal: the diagonal); panel 2: the
    observed exceedance ``truth > q_τ`` against the nominal ``1 − τ`` on log
    axes, where the upper heads are told apart.
    """
    quant = result.get("probabilistic", {}).get("quantile_models", {})
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 4.0))
    for i, (name, res) in enumerate(quant.items()):
        keys = list(res["quantiles"])
        taus = np.array([res["quantiles"][k]["tau"] for k in keys])
        for ax, score, x in ((axes[0], "reliability", taus), (axes[1], "exceedance", 1 - taus)):
            leaves = [res["intervals"]["quantiles"][k][score] for k in keys]
            est = np.array([leaf["estimate"] for leaf in leaves])
            err = np.vstack(
                [
                    np.clip(est - [leaf["low"] for leaf in leaves], 0, None),
                    np.clip(np.array([leaf["high"] for leaf in leaves]) - est, 0, None),
                ]
            )
            ax.errorbar(x, est, yerr=err, fmt="o-", capsize=3, color=f"C{i}", label=name)
    axes[0].plot([0, 1], [0, 1], "k--", lw=0.8)
    axes[0].set(xlabel="τ", ylabel="observed fraction truth ≤ q_τ (ties by rule)",
                title="Quantile reliability")  # fmt: skip
    lo = 1e-4
    axes[1].plot([lo, 1], [lo, 1], "k--", lw=0.8)
    axes[1].set(xscale="log", yscale="log", xlabel="nominal 1 − τ",
                ylabel="observed fraction truth > q_τ",
                title="Exceedance of each head")  # fmt: skip
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_reliability_diagrams(result: dict[str, Any]) -> Figure:
    """Reliability diagrams of P(y > P95) and P(y > P99): quantile models and 0/1 forecasts."""
    prob = result.get("probabilistic", {})
    models = {**prob.get("quantile_models", {}), **prob.get("probability_models", {})}
    events = list(prob.get("events", {}))
    fig, axes = plt.subplots(1, max(1, len(events)), figsize=(4.4 * max(1, len(events)), 4.2),
                             squeeze=False)  # fmt: skip
    for ax, event in zip(axes[0], events, strict=False):
        for i, (name, res) in enumerate(models.items()):
            d = res["events"][event]["reliability_diagram"]
            p, f = np.array(d["mean_probability"]), np.array(d["observed_frequency"])
            ok = np.array(d["count"]) > 0
            style = "o-" if name in prob.get("quantile_models", {}) else "s:"
            ax.plot(p[ok], f[ok], style, color=f"C{i}", ms=4, label=name)
        clim = prob.get("climatology", {}).get(event)
        if clim is not None:
            ax.axhline(clim, color="grey", lw=0.8, ls="--", label="training climatology")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        thr = prob["events"][event]
        ax.set(xlabel="forecast probability", ylabel="observed frequency",
               title=f"P(y > {event} = {thr:.1f})", xlim=(0, 1), ylim=(0, 1))  # fmt: skip
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
