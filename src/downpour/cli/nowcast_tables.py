"""Tables of ``downpour nowcast verify``: pooled scores per lead, per event, paired differences.

Plain functions from the result dict of
:func:`downpour.nowcast.verify.verify_nowcast` to rich tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rich import box
from rich.markup import escape
from rich.table import Table

from downpour.metrics.leadtime import threshold_name

__all__ = ["events_table", "paired_table", "scores_table"]

_FLAGS = {"csi_1": "C", "fss_1": "F", "csi_heavy_not_worse": "H"}
#: Leads (minutes) shown in the per-event and paired tables: every 30 minutes.
_EVERY_MIN = 30


def _short(x: float, fmt: str = ".2f") -> str:
    if x is None or not np.isfinite(x):
        return "-"
    text = format(x, fmt)
    return text[1:] if text.startswith("0.") else text.replace("-0.", "-.")


def _at(scales: dict[Any, Any], sc: int) -> Any:
    """One FSS scale of a dict keyed by int (a live result) or str (read back from JSON)."""
    return scales[sc] if sc in scales else scales[str(sc)]


def _hm(minutes: int) -> str:
    return f"{minutes // 60}:{minutes % 60:02d}"


def scores_table(result: dict[str, Any]) -> Table:
    """Return the pooled score-vs-lead table (every lead, every method)."""
    from downpour.nowcast.verify import score_rows

    methods = list(result["methods"])
    short = "/".join(m[0] for m in methods)  # m/p/e
    heavy = f"{max(result['thresholds']):g}"
    sc = result["scales"][len(result["scales"]) // 2]
    n_events = len(result.get("events", {})) or 1
    table = Table(
        title=escape(
            f"nowcast scores vs lead, {result['period']} period, {len(result['inits'])} inits of "
            f"{n_events} event(s), pooled ({short} = {', '.join(methods)})"
        ),
        title_justify="left",
        caption=f"FSS at {sc}×{sc} px. beats: ✓ = model > persistence on CSI and FSS at "
        f"1 mm/h and ≥ on CSI at {heavy} mm/h; else the failed ones (C, F, H)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    heads = ("lead", "n", f"CSI1 {short}", f"CSI{heavy} {short}", f"FSS1 {short}")
    for col in (*heads, f"RMSE {short}", "beats"):
        table.add_column(col, justify="right", no_wrap=True)
    for row in score_rows(result):
        if "model" not in row:
            continue

        def cell(key: str, fmt: str = ".2f", row: dict[str, Any] = row) -> str:
            return "/".join(_short(row[m][key], fmt) for m in methods if m in row)

        failed = "".join(_FLAGS[k] for k, v in row["beats"].items() if not v)
        table.add_row(
            _hm(int(row["lead_min"])),
            str(row["model"]["n"]),
            cell("csi_1"),
            cell("csi_heavy"),
            cell("fss_1"),
            cell("rmse", ".1f"),
            "-" if not row["beats"] else (failed or "✓"),
        )
    return table


def _picked(result: dict[str, Any]) -> list[int]:
    leads = result["leads"]
    picks = [k for k, m in enumerate(leads) if m % _EVERY_MIN == 0]
    return picks or [len(leads) - 1]


def events_table(result: dict[str, Any]) -> Table:
    """Return per event (and pooled) CSI at 1 and the heaviest threshold and FSS, every 30 min.

    Model and extrapolation (or persistence, without pysteps) side by side.
    """
    methods = ["model", "extrapolation" if "extrapolation" in result["methods"] else "persistence"]
    short = "/".join(m[0] for m in methods)
    one, heavy = threshold_name(1.0), threshold_name(max(result["thresholds"]))
    sc = result["scales"][len(result["scales"]) // 2]
    table = Table(
        title=escape(f"per event, every {_EVERY_MIN} min ({short})"),
        title_justify="left",
        caption=f"FSS at {sc}×{sc} px, 1 mm/h. RAPSD 8–16 km: forecast power over observed "
        f"at the longest lead ({short}).",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for col in ("event", "lead", "n", f"CSI1 {short}", f"CSI{heavy[:-4]} {short}",
                f"FSS1 {short}", "RAPSD"):  # fmt: skip
        table.add_column(col, justify="right", no_wrap=True)
    blocks = [*result["events"].items(), ("pooled", result)]
    for name, res in blocks:
        band = res.get("rapsd_band", {})
        ratio = "/".join(_short(band.get(m, np.nan)) for m in methods)
        for j, k in enumerate(_picked(result)):
            per = {m: res["methods"][m][k] for m in methods}
            if not per["model"].get("n_inits"):
                continue

            def cell(get: Any, per: dict[str, Any] = per) -> str:
                return "/".join(_short(get(per[m])) for m in methods)

            table.add_row(
                escape(name) if j == 0 else "",
                _hm(result["leads"][k]),
                str(per["model"]["n_inits"]),
                cell(lambda s: s["csi"][one]),
                cell(lambda s: s["csi"][heavy]),
                cell(lambda s: _at(s["fss"][one], sc)),
                ratio if j == 0 and band else "",
            )
    return table


def paired_table(result: dict[str, Any]) -> Table:
    """Return the pooled model − baseline differences with intervals, every 30 min.

    Against extrapolation (persistence without pysteps): CSI and FSS; the
    other baselines and the MAE's are in the JSON.
    """
    one, heavy = threshold_name(1.0), threshold_name(max(result["thresholds"]))
    sc = result["scales"][len(result["scales"]) // 2]
    base = "extrapolation" if "model-extrapolation" in result["paired"] else "persistence"
    table = Table(
        title=f"model − {base}, pooled, 95% bootstrap intervals over inits",
        title_justify="left",
        caption="* = the interval excludes 0",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for col in ("lead", "CSI 1 mm/h", f"CSI {heavy}", f"FSS 1 mm/h {sc}px"):
        table.add_column(col, justify="right", no_wrap=True)

    def signed(x: float) -> str:
        return f"{x:+.3f}".replace("0.", ".")

    def cell(d: dict[str, Any]) -> str:
        if not np.isfinite(d["estimate"]):
            return "-"
        star = "*" if d.get("significant") else ""
        return f"{signed(d['estimate'])} [{signed(d['low'])}, {signed(d['high'])}]{star}"

    per = result["paired"][f"model-{base}"]
    for k in _picked(result):
        d = per[k]
        if d is not None:
            table.add_row(
                _hm(result["leads"][k]),
                cell(d["csi"][one]),
                cell(d["csi"][heavy]),
                cell(_at(d["fss"][one], sc)),
            )
    return table
