"""``downpour compare RUN...``: the metrics of several runs side by side.

Reads only the JSON files of each run directory and builds one table with a
row per metric and a column per run, like the design notes' version tables
(v1 … v4):

- ``metrics/train_cvae.json``: parameters, seconds per epoch, epochs, the
  final validation MAE, MAE_tail, prior-mode MAE and KL;
- ``metrics/sample_quality.json``: for each samples store (e.g.
  ``posterior_train``): diversity, spatial correlation, wet fraction (real
  and generated), mass bias, KS on the tail and on wet values, max / P95 /
  P99 (real and generated);
- any other ``metrics/*.json`` holding a ``headline`` object of numbers
  (e.g. verification scores): each of them.

A metric a run lacks is shown as ``–``. The table is written as Markdown and
CSV.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from downpour.core.errors import DownpourError
from downpour.core.files import atomic_write_text
from downpour.core.rundir import RunDir

__all__ = ["compare_runs", "run_metrics", "to_csv", "to_markdown", "write_comparison"]

_TRAIN_ROWS = [
    ("cVAE parameters", ("parameters",)),
    ("cVAE s/epoch", ("seconds_per_epoch",)),
    ("cVAE epochs", ("epochs",)),
    ("cVAE val MAE", ("metrics", "val/MAE")),
    ("cVAE val MAE_tail", ("metrics", "val/MAE_tail")),
    ("cVAE val MAE prior", ("metrics", "val/MAE_prior")),
    ("cVAE val KL", ("metrics", "val/kl")),
]
_QUALITY_ROWS = [
    ("diversity", ("diversity",)),
    ("spatial correlation", ("spatial_correlation",)),
    ("wet fraction real", ("wet_fraction_real",)),
    ("wet fraction generated", ("wet_fraction_generated",)),
    ("mass bias", ("mass_bias",)),
    ("KS tail", ("ks_tail", "statistic")),
    ("KS wet", ("ks_wet", "statistic")),
    ("max real", ("real", "max")),
    ("max generated", ("generated", "max")),
    ("P95 real", ("real", "P95")),
    ("P95 generated", ("generated", "P95")),
    ("P99 real", ("real", "P99")),
    ("P99 generated", ("generated", "P99")),
]


def _get(d: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        msg = f"{path} is not valid JSON ({exc}); re-run the step that wrote it"
        raise DownpourError(msg) from None


def run_metrics(run: str | Path) -> dict[str, Any]:
    """All comparable metrics of one run directory, as ``{row label: value}``."""
    mdir = RunDir(run).metrics_dir
    if not mdir.is_dir():
        raise DownpourError(
            f"{run} has no metrics/ folder; is it a run directory? (train, evaluate or verify "
            "write metrics there)"
        )
    rows: dict[str, Any] = {}
    train = RunDir(run).train_record("cvae")
    if train.is_file():
        data = _load(train)
        rows.update({label: _get(data, p) for label, p in _TRAIN_ROWS})
    quality = RunDir(run).metrics("sample_quality")
    if quality.is_file():
        for name, summary in _load(quality).items():
            for label, p in _QUALITY_ROWS:
                rows[f"{name}: {label}"] = _get(summary, p)
    for path in sorted(mdir.glob("*.json")):
        if path in (train, quality):
            continue
        data = _load(path)
        head = data.get("headline") if isinstance(data, dict) else None
        if isinstance(head, dict):
            for key, value in head.items():
                rows[f"{path.stem}: {key}"] = value
    return rows


def compare_runs(runs: Sequence[str | Path]) -> tuple[list[str], list[str], list[list[Any]]]:
    """Table of several runs.

    Returns
    -------
    (names, labels, values)
        Column (run) names, row (metric) labels in first-seen order, and
        ``values[row][column]`` (None where a run lacks the metric).
    """
    if not runs:
        raise DownpourError("compare needs at least one run directory")
    per_run = [run_metrics(r) for r in runs]
    names = [Path(r).name or str(r) for r in runs]
    if len(set(names)) < len(names):
        names = [str(r) for r in runs]
    labels: list[str] = []
    for m in per_run:
        labels.extend(k for k in m if k not in labels)
    values = [[m.get(label) for m in per_run] for label in labels]
    return names, labels, values


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v != v:
            return "n/a"
        return f"{v:.3g}" if abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3) else f"{v:.3f}"
    if isinstance(v, list) and len(v) == 3 and all(isinstance(x, float) for x in v):
        return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"  # estimate [low, high]
    return str(v)


def to_markdown(names: list[str], labels: list[str], values: list[list[Any]]) -> str:
    """Format the table as GitHub-flavoured Markdown."""
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {lab} | " + " | ".join(_cell(v) for v in row) + " |"
              for lab, row in zip(labels, values, strict=True)]  # fmt: skip
    return "\n".join(lines) + "\n"


def to_csv(names: list[str], labels: list[str], values: list[list[Any]]) -> str:
    """CSV text, full precision, empty where a run lacks the metric."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["metric", *names])
    for lab, row in zip(labels, values, strict=True):
        w.writerow([lab, *["" if v is None else json.dumps(v) if isinstance(v, list) else v
                           for v in row]])  # fmt: skip
    return buf.getvalue()


def write_comparison(runs: Sequence[str | Path], out: str | Path) -> tuple[Path, Path, str]:
    """Write ``OUT/compare.md`` and ``OUT/compare.csv``; return their paths and the Markdown."""
    names, labels, values = compare_runs(runs)
    out = Path(out)
    md = to_markdown(names, labels, values)
    md_path, csv_path = out / "compare.md", out / "compare.csv"
    atomic_write_text(md_path, md)
    atomic_write_text(csv_path, to_csv(names, labels, values))
    return md_path, csv_path, md
