"""Tables and plain statements of results: verification scores, significance, sample quality.

Each function turns a result dict (``RUN/metrics/verify.json`` or one entry
of ``RUN/metrics/sample_quality.json``) into rows of text that the command
line and the HTML report print the same way; the generator's block
(``verify.json``'s ``generator``) has its rows, headline entries and
significance statements here too.

Examples
--------
>>> leaf = {"estimate": 0.5, "low": 0.4, "high": 0.6}
>>> model = {
...     "categorical": {"P95": {"csi": 0.5}},
...     "intervals": {"categorical": {"P95": {"csi": leaf}}},
... }
>>> score_interval(model, "categorical", "P95", "csi")
[0.5, 0.4, 0.6]
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "GENERATOR_DIFFERENCE_HEADER",
    "HEADLINE",
    "generator_difference_rows",
    "generator_headline",
    "generator_lines",
    "generator_rows",
    "interval",
    "quality_rows",
    "score_interval",
    "significance_lines",
    "verification_table",
]

#: (label, section, threshold or None, score) of the headline scores.
HEADLINE: list[tuple[str, str, str | None, str]] = [
    ("CSI P95", "categorical", "P95", "csi"),
    ("CSI P99", "categorical", "P99", "csi"),
    ("SEDI P95", "categorical", "P95", "sedi"),
    ("SEDI P99", "categorical", "P99", "sedi"),
    ("POD P95", "categorical", "P95", "pod"),
    ("FAR P95", "categorical", "P95", "far"),
    ("correlation", "continuous", None, "correlation"),
    ("MAE", "continuous", None, "mae"),
    ("RMSE", "continuous", None, "rmse"),
    ("MAE_tail", "continuous", None, "mae_tail"),
]


def interval(leaf: dict[str, Any], digits: int = 3) -> str:
    """``estimate [low, high]`` of a bootstrap leaf (``n/a`` when undefined).

    Examples
    --------
    >>> interval({"estimate": 0.2, "low": 0.1, "high": 0.3})
    '0.200 [0.100, 0.300]'
    """
    est = leaf.get("estimate", float("nan"))
    if est is None or not np.isfinite(est):
        return "n/a"
    return f"{est:.{digits}f} [{leaf['low']:.{digits}f}, {leaf['high']:.{digits}f}]"


def score_interval(
    result: dict[str, Any], section: str, thr: str | None, score: str
) -> list[float]:
    """``[estimate, low, high]`` of one score of one model's result with intervals."""
    iv = result["intervals"][section]
    leaf = iv[thr][score] if thr is not None else iv[score]
    return [leaf["estimate"], leaf["low"], leaf["high"]]


def significance_lines(result: dict[str, Any]) -> list[str]:
    """Plain statements of which headline differences are significant and which are not."""
    lines = []
    for pair, d in result["differences"].items():
        for label, section, thr, score in HEADLINE[:4] + [HEADLINE[6]]:
            if thr is not None and thr not in d[section]:
                continue
            leaf = d[section][thr][score] if thr is not None else d[section][score]
            est, low, high = leaf["estimate"], leaf["low"], leaf["high"]
            if not np.isfinite(est):
                lines.append(f"{pair}, {label}: undefined (no events)")
                continue
            verdict = (
                "significant" if leaf["significant"] else "not significant (interval includes 0)"
            )
            lines.append(f"{pair}, {label}: {est:+.3f} [{low:+.3f}, {high:+.3f}], {verdict}")
    return lines + generator_lines(result)


def verification_table(
    result: dict[str, Any], names: list[str] | None = None
) -> tuple[list[str], list[list[str]]]:
    """Rows ``score × model`` of the headline scores, each ``estimate [low, high]``.

    ``names``: the models (columns), default every model except the extra
    heads of quantile models (``"name q0.99"``; their median head is
    ``name``). A last row counts the cells inside the mask that were left
    out of the scores (truth missing, prediction NaN or infinite), when
    there are any.
    """
    names = names if names is not None else [n for n in result["models"] if " " not in n]
    rows = []
    for label, section, thr, score in HEADLINE:
        if thr is not None and thr not in result["models"][names[0]]["categorical"]:
            continue
        row = [label]
        for n in names:
            est, low, high = score_interval(result["models"][n], section, thr, score)
            text = f"{est:.3f} [{low:.3f}, {high:.3f}]" if np.isfinite(est) else "n/a"
            rel = result["models"][n]["intervals"].get("reliability", {}).get(thr or "", {})
            if rel and not rel["reliable"]:
                text += f" (only {rel['event_days']} event days: interval unreliable)"
            row.append(text)
        rows.append(row)
    excluded = [result["models"][n].get("excluded") for n in names]
    if any(e and any(e.values()) for e in excluded):  # only when something was left out
        rows.append(
            ["cells left out (truth missing / prediction NaN)"]
            + [
                f"{e['missing_truth']} / {e['nonfinite_prediction']}" if e else "n/a"
                for e in excluded
            ]
        )
    return names, rows


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 1e4 else f"{v:.3g}"
    return str(v)


def quality_rows(summary: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Return the printed table of one summary as ``(metric, real, generated)`` rows."""
    r, g = summary["real"], summary["generated"]
    prior = summary.get("mode") == "prior"
    rows = [
        ("diversity", "", _fmt(summary["diversity"])),
        (
            "spatial correlation" + (" (prior mode)" if prior else ""),
            "",
            _fmt(summary["spatial_correlation"]),
        ),
        (
            "wet fraction",
            _fmt(summary["wet_fraction_real"]),
            _fmt(summary["wet_fraction_generated"]),
        ),  # fmt: skip
        ("mass bias", "", _fmt(summary["mass_bias"])),
        (
            "KS tail (≥ P95)",
            "",
            f"{_fmt(summary['ks_tail']['statistic'])} (p={_fmt(summary['ks_tail']['pvalue'], 3)})",
        ),  # fmt: skip
        (
            "KS wet",
            "",
            f"{_fmt(summary['ks_wet']['statistic'])} (p={_fmt(summary['ks_wet']['pvalue'], 3)})",
        ),  # fmt: skip
    ]
    for key in ("mean", "P95", "P99", "max"):
        rows.append((key, _fmt(r[key], 2), _fmt(g[key], 2)))
    return rows


def quality_ensemble_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """Return ``(metric, value)`` rows of P99.9, the members' ensemble scores and the RAPSD ratio.

    Parameters
    ----------
    summary
        One entry of ``sample_quality.json``
        (:attr:`~downpour.metrics.sample_quality.SampleQuality.summary`).
    """
    r, g = summary["real"], summary["generated"]
    rows = [("P99.9 real / generated", f"{_fmt(r.get('P99.9'), 2)} / {_fmt(g.get('P99.9'), 2)}")]
    ens = summary.get("ensemble")
    if ens is None:
        rows.append(("ensemble scores", "n/a (one member)"))
    else:
        hist = ens["rank_histogram"]
        rows += [
            ("CRPS ECDF / fair", f"{_fmt(ens['crps_ecdf'])} / {_fmt(ens['crps_fair'])}"),
            ("MAE of the ensemble mean", _fmt(ens["mae_ensemble_mean"])),
            ("spread–skill ratio (1 = calibrated)", _fmt(ens["spread_skill"])),
            ("rank histogram max / min bin ÷ uniform",
             f"{_fmt(hist['max_ratio'], 2)} / {_fmt(hist['min_ratio'], 2)}"),
        ]  # fmt: skip
    ratio = summary.get("rapsd_ratio")
    if ratio is not None:
        rows += [(f"RAPSD ratio generated / real, wavelengths {band} cells", _fmt(v, 2))
                 for band, v in ratio["bands"].items()]  # fmt: skip
        rows += [
            (f"RAPSD ratio min / max (≥ {ratio['min_wavelength']:g} cells)",
             f"{_fmt(ratio['min'], 2)} / {_fmt(ratio['max'], 2)}"),
            (f"share of wavelengths within ×{ratio['factor']:g}",
             _fmt(ratio["share_within_factor"], 2)),
        ]  # fmt: skip
    return rows


# ------------------------------------------------------------- the generator's ensemble


def generator_lines(result: dict[str, Any]) -> list[str]:
    """Plain statements of the generator's CRPS − MAE of each deterministic model (ECDF CRPS).

    Empty when the result has no ``generator`` block.
    """
    gen = result.get("generator")
    if not gen:
        return []
    lines = []
    for name, d in gen["crps_minus_mae"].items():
        what = f"generator CRPS − {name} MAE"
        if "error" in d:
            lines.append(f"{what}: not compared ({d['error']})")
            continue
        leaf = d["ecdf"]["difference"]
        if not np.isfinite(leaf["estimate"]):
            lines.append(f"{what}: undefined")
            continue
        verdict = "significant" if leaf["significant"] else "not significant (interval includes 0)"
        est, low, high = leaf["estimate"], leaf["low"], leaf["high"]
        lines.append(f"{what}: {est:+.3f} [{low:+.3f}, {high:+.3f}], {verdict}")
    return lines


def generator_headline(result: dict[str, Any], reference: str = "srdrn_real") -> dict[str, Any]:
    """Headline entries of the generator: its CRPS and CRPS − MAE of ``reference``.

    Returns
    -------
    dict
        ``{"CRPS generator": [est, low, high], "CRPS generator − MAE <reference>":
        [est, low, high]}`` (ECDF CRPS); empty without a ``generator`` block, the
        second entry only when ``reference`` was compared.
    """
    gen = result.get("generator")
    if not gen:
        return {}
    leaf = gen["ensemble"]["intervals"]["scores"]["crps_ecdf"]
    out = {"CRPS generator": [leaf["estimate"], leaf["low"], leaf["high"]]}
    pair = gen["crps_minus_mae"].get(reference, {})
    if "ecdf" in pair:
        d = pair["ecdf"]["difference"]
        out[f"CRPS generator − MAE {reference}"] = [d["estimate"], d["low"], d["high"]]
    return out


#: Rows of :func:`generator_rows`: (label, where in the ``generator`` block).
_GENERATOR_ROWS: list[tuple[str, tuple[str, ...]]] = [
    ("CRPS (ECDF: the K members as issued)", ("scores", "crps_ecdf")),
    ("CRPS (fair: an infinite ensemble)", ("scores", "crps_fair")),
    ("MAE of the ensemble mean", ("scores", "mae_ensemble_mean")),
    ("RMSE of the ensemble mean", ("scores", "rmse_ensemble_mean")),
    ("spread √(mean s² (K+1)/K)", ("scores", "spread")),
    ("spread–skill ratio (1: calibrated)", ("scores", "spread_skill")),
    ("rank histogram: largest bin ÷ uniform", ("scores", "rank_max_ratio")),
    ("rank histogram: smallest bin ÷ uniform", ("scores", "rank_min_ratio")),
]


def generator_rows(result: dict[str, Any]) -> list[list[str]]:
    """Rows ``[score, estimate [low, high]]`` of the generator's block (empty without one).

    Ensemble scores, then per event (P95, P99) the Brier score, Brier skill score
    against the training climatology and ROC area of the fraction of members
    above, then CSI, SEDI and POD of every member pooled as a deterministic forecast.
    """
    gen = result.get("generator")
    if not gen:
        return []
    iv = gen["ensemble"]["intervals"]
    rows = [[label, interval(iv[a][b])] for label, (a, b) in _GENERATOR_ROWS]
    for event in gen["events"]:
        rel = iv.get("reliability", {}).get(event, {})
        note = (
            f" (only {rel['event_days']} event days: interval unreliable)"
            if rel and not rel["reliable"]
            else ""
        )
        leaves = iv["events"][event]
        rows += [
            [f"Brier {event} (P = fraction of members above)", interval(leaves["brier"], 4)],
            [f"BSS {event} (vs training climatology)", interval(leaves["bss"]) + note],
            [f"ROC area {event}", interval(leaves["roc_auc"])],
        ]
    members = gen["member_scores"]["intervals"]["categorical"]
    for event in gen["events"]:
        for score in ("csi", "sedi", "pod"):
            leaf = members.get(event, {}).get(score)
            if leaf is not None:
                rows.append([f"{score.upper()} {event}, every member pooled", interval(leaf)])
    return rows


#: Header of :func:`generator_difference_rows`.
GENERATOR_DIFFERENCE_HEADER = [
    "model",
    "generator CRPS",
    "model MAE",
    "CRPS − MAE (ECDF)",
    "fair CRPS − MAE",
    "significant (ECDF)",
]


def generator_difference_rows(result: dict[str, Any]) -> list[list[str]]:
    """Per deterministic model: the generator's CRPS, the model's MAE, their paired differences."""
    gen = result.get("generator")
    rows = []
    for name, d in (gen or {}).get("crps_minus_mae", {}).items():
        if "error" in d:
            rows.append([name, "n/a", "n/a", "n/a", "n/a", f"not compared: {d['error']}"])
            continue
        e, f = d["ecdf"], d["fair"]
        verdict = "yes" if e["difference"]["significant"] else "no (interval includes 0)"
        rows.append([name, interval(e["ensemble"]), interval(e["reference"]),
                     interval(e["difference"]), interval(f["difference"]), verdict])  # fmt: skip
    return rows
