"""Tables and plain statements of results: verification scores, significance, sample quality.

Each function turns a result dict (``RUN/metrics/verify.json`` or one entry
of ``RUN/metrics/sample_quality.json``) into rows of text that the command
line and the HTML report print the same way.

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
    "HEADLINE",
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
    return lines


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
