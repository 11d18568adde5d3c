"""``downpour report RUN``: one self-contained HTML file of a run.

The report reads only what the run directory already holds (the data
card, the CSV training logs, ``metrics/*.json`` and ``figures/*.png``),
draws the training curves, and embeds every figure as a base64 PNG, so
the single file opens anywhere without its folder. Sections: data card,
training curves, sample quality (table and figures), verification
(real-only vs augmented vs baselines, with 95% intervals; maps of the
heaviest test days), a plain statement of which differences are
significant and, when ``verify.json`` has a ``generator`` block, the
generator's prior-mode ensemble as a probabilistic downscaler.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import html
import json
import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from downpour import __version__
from downpour.core.errors import DownpourError
from downpour.core.files import atomic_write_text
from downpour.core.rundir import RunDir
from downpour.report import ensemble_figures as ens_figs
from downpour.report import figures as plots
from downpour.report import probabilistic as prob
from downpour.report.tables import (
    GENERATOR_DIFFERENCE_HEADER,
    generator_difference_rows,
    generator_rows,
    quality_ensemble_rows,
    quality_rows,
    verification_table,
)

__all__ = ["read_training_log", "training_curves", "write_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #2171b5}h2{margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:1em 0;font-size:0.92em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f0f4f8}
td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:0.5em 0}
.sig{color:#006d2c;font-weight:600}.nosig{color:#7f2704}
.note{background:#f7f7f7;border-left:4px solid #2171b5;padding:0.5em 1em}
"""


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _fig_img(fig: Any, alt: str) -> str:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def read_training_log(run: str | Path, kind: str) -> dict[str, list[tuple[float, float]]]:
    """Per-epoch series of a model's CSV logs (all versions, a resume continues a curve).

    Returns
    -------
    dict
        ``{metric: [(epoch, value), ...]}``; step-level training values are
        averaged per epoch.
    """
    series: dict[str, dict[float, list[float]]] = {}
    for path in sorted(RunDir(run).logs(kind).glob("version_*/metrics.csv")):
        with path.open() as f:
            for row in csv.DictReader(f):
                if not row.get("epoch"):
                    continue
                epoch = float(row["epoch"])
                for key, value in row.items():
                    if key in ("epoch", "step") or not value:
                        continue
                    try:
                        v = float(value)
                    except ValueError:
                        continue
                    if math.isfinite(v):
                        series.setdefault(key, {}).setdefault(epoch, []).append(v)
    return {
        k: sorted((e, float(np.mean(vs))) for e, vs in per.items()) for k, per in series.items()
    }


def training_curves(run: str | Path, kind: str) -> Any | None:
    """Figure of a model's training log per epoch, in panels (None without logs).

    Panels: total loss, validation metrics in the data's units, unitless
    validation scores, loss terms, schedules; see
    :func:`downpour.report.training_figures.plot_training_curves`.
    """
    from downpour.report.training_figures import log_units, plot_training_curves

    log = read_training_log(run, kind)
    return plot_training_curves(log, kind=kind, units=log_units(run, kind))


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise DownpourError(f"{path} is not valid JSON ({exc}); re-run the step") from None


def _card_section(run: Path) -> str:
    card = _load_json(RunDir(run).card)
    if card is None:
        return "<p>No data card (run <code>downpour prepare</code>).</p>"
    rows = []
    for name, s in card.get("splits", {}).items():
        rows.append(
            [name, s.get("days"), f"{s.get('start')} … {s.get('end')}",
             f"{s.get('wet_fraction', float('nan')):.3f}", f"{s.get('mean', float('nan')):.2f}",
             f"{s.get('max', float('nan')):.1f}", s.get("heavy_days")]
        )  # fmt: skip
    grid = card.get("grid", {})
    thr = card.get("thresholds", {})
    facts = (
        f"<p>Grid {grid.get('high_res')} ← {grid.get('low_res')} (×{grid.get('scale_factor')}), "
        f"{grid.get('valid_cells')} valid cells; predictors {card.get('channels')}; "
        f"units {card.get('units')}. Thresholds of wet training values: "
        + ", ".join(f"{k} {v:.2f}" for k, v in thr.items() if isinstance(v, (int, float)))
        + ".</p>"
    )
    return facts + _table(
        ["split", "days", "dates", "wet fraction", "mean", "max", "heavy days"], rows
    )


def _quality_section(run: Path) -> str:
    quality = _load_json(RunDir(run).metrics("sample_quality"))
    if not quality:
        return "<p>No sample-quality metrics (run <code>downpour evaluate</code>).</p>"
    parts = []
    for name, summary in quality.items():
        parts.append(
            f"<h3>{html.escape(name)}: {summary['events']} events × {summary['members']} "
            f"members, {html.escape(str(summary['mode']))} mode, T={summary.get('temperature')}, "
            f"pixel threshold {summary.get('pixel_threshold')}</h3>"
        )
        parts.append(_table(["metric", "real", "generated"], [list(r) for r in
                                                               quality_rows(summary)]))  # fmt: skip
        parts.append(_table(["metric", "value"],
                            [list(r) for r in quality_ensemble_rows(summary)]))  # fmt: skip
        for fig in ("members", "intensity", "rapsd", "rapsd_ratio", "rank_histogram",
                    "distributions"):  # fmt: skip
            p = RunDir(run).figure(f"{name}_{fig}")
            if p.is_file():
                parts.append(_img(p, f"{name} {fig}"))
    return "\n".join(parts)


def _verify_section(run: Path) -> str:
    result = _load_json(RunDir(run).metrics("verify"))
    if not result:
        return "<p>No verification (run <code>downpour verify</code>).</p>"
    names, rows = verification_table(result)
    thr = ", ".join(f"{k} = {v:.2f}" for k, v in result["thresholds"].items())
    parts = [
        f"<p>{result['models'][names[0]]['n_days']} real {html.escape(result['split'])} days; "
        f"event thresholds ({html.escape(result['units'])}): {html.escape(thr)}. Each cell: "
        "estimate [95% bootstrap interval over days].</p>",
        _table(["score", *names], rows),
    ]
    fss_rows = []
    for n in names:
        for t, per in result["models"][n]["fss"].items():
            fss_rows.append([n, t, *(f"{v:.3f}" for v in per.values())])
    scales = list(next(iter(result["models"].values()))["fss"].values())[0].keys()
    parts.append("<h3>FSS by scale (pixels)</h3>")
    parts.append(_table(["model", "threshold", *map(str, scales)], fss_rows))
    gpd_rows = []
    for n in names:
        g = result["models"][n].get("gpd")
        if g:
            p, t = g["pred"], g["truth"]
            gpd_rows.append(
                [
                    n,
                    f"{p['shape']:.3f}",
                    f"{t['shape']:.3f}",
                    f"{p['scale']:.2f}",
                    f"{t['scale']:.2f}",
                ]
            )
    if gpd_rows:
        parts.append("<h3>GPD tail of the daily domain maximum</h3>")
        parts.append(_table(["model", "ξ pred", "ξ truth", "scale pred", "scale truth"], gpd_rows))
    parts.append("<h3>Which differences are significant</h3><ul>")
    for line in result.get("significance", []) + prob.difference_lines(result):
        cls = "sig" if line.endswith(", significant") else "nosig"
        parts.append(f'<li class="{cls}">{html.escape(line)}</li>')
    parts.append("</ul>")
    if "probabilistic" in result:
        parts.append(_probabilistic_section(run, result))
    for fig, alt in (("verify_scores", "scores with intervals"), ("verify_maps", "maps")):
        p = RunDir(run).figure(fig)
        if p.is_file():
            parts.append(_img(p, alt))
    return "\n".join(parts)


def _probabilistic_section(run: Path, result: dict[str, Any]) -> str:
    """Quantile heads as fields, quantile reliability, exceedance-probability scores."""
    heads = prob.head_names(result)
    clim = result["probabilistic"]["climatology"]
    parts = [
        "<h3>Quantile SRDRN: every head as a field</h3>",
        "<p>The median head is scored under the model's name (its point forecast).</p>",
        _table(["score", *heads], verification_table(result, heads)[1]),
        "<h3>Quantile reliability and pinball score</h3>",
        "<p>Reliability: observed fraction of truth ≤ q<sub>τ</sub>; where the truth equals the "
        "head (both 0 on dry cells) ties count by the rule of docs/metrics.md (the expected "
        "randomised PIT with the tie weight estimated from the sample), and the bracket "
        "truth &lt; q … ≤ q is shown beside it.</p>",
        _table(prob.QUANTILE_HEADER, prob.quantile_rows(result)),
        "<h3>Exceedance probabilities</h3>",
        "<p>Quantile models: P(y &gt; t) from their heads; deterministic models as 0/1 "
        "forecasts. Brier skill score against the training climatology ("
        + html.escape(", ".join(f"{k} {v:.4f}" for k, v in clim.items()))
        + ").</p>",
        _table(prob.EVENT_HEADER, prob.event_rows(result)),
    ]
    for fig, alt in (
        ("verify_quantile_reliability", "quantile reliability"),
        ("verify_reliability_diagrams", "reliability diagrams"),
    ):
        p = RunDir(run).figure(fig)
        if p.is_file():
            parts.append(_img(p, alt))
    return "\n".join(parts)


def _generator_section(run: Path) -> str:
    """Show the generator as a probabilistic downscaler; empty without a ``generator`` block."""
    result = _load_json(RunDir(run).metrics("verify"))
    gen = (result or {}).get("generator")
    if not gen:
        return ""
    k, ens = gen["members"], gen["ensemble"]
    clim = ", ".join(f"{e} {v:.4f}" for e, v in gen["climatology"].items())
    parts = [
        f"<p>The cVAE's prior-mode ensemble, K = {k} members per day "
        f"(<code>{html.escape(str(gen['checkpoint']))}</code>; temperature "
        f"{gen.get('temperature')}, wet rule {html.escape(str(gen.get('wet_rule')))}, members "
        f"seeded per day), on the same {ens['n_days']} real days and cells as the deterministic "
        "models. A deterministic forecast's CRPS is its MAE, so the two columns compare directly; "
        "the ECDF CRPS scores the K members as issued, the fair CRPS estimates an infinite "
        "ensemble. Event probabilities are the fraction of members above the threshold, their "
        f"Brier skill against the training climatology ({html.escape(clim)}). Member scores: "
        f"{html.escape(gen.get('member_pooling', ''))}. Each cell: estimate [95% bootstrap "
        "interval over days].</p>",
        _table(["score", f"generator (K = {k})"], generator_rows(result)),
        "<h3>Generator CRPS against each model's MAE (paired intervals)</h3>",
        _table(GENERATOR_DIFFERENCE_HEADER, generator_difference_rows(result)),
    ]
    for fig, alt in ens_figs.FIGURES.items():
        p = RunDir(run).figure(fig)
        if p.is_file():
            parts.append(_img(p, alt))
    return "\n".join(parts)


def write_report(run: str | Path, out: str | Path | None = None, *, summary: str = "") -> Path:
    """Write ``RUN/report.html`` (or ``out``) from the run directory's contents.

    Parameters
    ----------
    run
        Run directory.
    out
        Output file (default ``RUN/report.html``).
    summary
        Optional paragraph (plain text) placed at the top, e.g. the verdict of
        the augmentation experiment.

    Returns
    -------
    Path
        The HTML file.
    """
    run = Path(run)
    if not run.is_dir():
        raise DownpourError(f"run directory {run} not found")
    curves = []
    logs = RunDir(run).logs_dir
    for kind_dir in sorted(logs.glob("*")) if logs.is_dir() else []:
        fig = training_curves(run, kind_dir.name)
        if fig is not None:
            curves.append(_fig_img(fig, f"{kind_dir.name} training curves"))
    name = run.name
    body = [
        f"<h1>downpour run report: {html.escape(name)}</h1>",
        f"<p>Written {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC by downpour "
        f"{__version__} from <code>{html.escape(str(run))}</code>.</p>",
    ]
    if summary:
        body.append(f'<div class="note"><p>{html.escape(summary)}</p></div>')
    body += [
        "<h2>Data card</h2>",
        _card_section(run),
        "<h2>Training curves</h2>",
        "\n".join(curves) or "<p>No training logs.</p>",
        "<h2>Sample quality of the cVAE</h2>",
        _quality_section(run),
        "<h2>Downscaling verification</h2>",
        _verify_section(run),
    ]
    generator = _generator_section(run)
    if generator:
        body += ["<h2>Generator as a probabilistic downscaler</h2>", generator]
    doc = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>downpour report: {html.escape(name)}</title><style>{_CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
    out = Path(out) if out is not None else RunDir(run).report
    atomic_write_text(out, doc)
    plots.plt.close("all")
    return out
