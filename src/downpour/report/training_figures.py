"""Training curves of one model: its Lightning CSV log drawn in readable panels.

The columns of the log (``{name: [(epoch, value), ...]}`` as read by
:func:`downpour.report.html.read_training_log`) are sorted into panels by
their names alone, so that loss terms or metrics added later need no change
here:

1. **total loss**: ``train/loss`` and ``val/loss`` (unitless);
2. **validation metrics** in the data's units: ``val/<name>`` without a
   ``train/<name>`` twin whose name starts with ``MAE``, ``RMSE``, ``CRPS``,
   ``ME`` or ``bias`` (e.g. ``val/MAE_tail``, ``val/MAE_prior``,
   ``val/CRPS``, ``val/MAE_mean``); the y axis is labelled with the units;
3. **validation scores** without units: the other ``val/<name>`` without a
   ``train/<name>`` twin (e.g. ``val/CSI_P95``, ``val/cover_0.9``);
4. **loss terms**: every ``train/<name>`` (besides the loss and the
   schedules) and its ``val/<name>`` twin, drawn in one colour (train solid,
   validation dashed), at most ``max_per_panel`` terms per panel, largest
   first; terms that are 0 in every epoch are named in the panel title
   instead of drawn;
5. **schedules and other values**: ``lr-*`` (Lightning's learning-rate
   monitor), ``*/beta`` (the KL weight) and any column outside ``train/`` and
   ``val/``.

A panel's y axis is logarithmic when all its values are positive and span
at least a factor 5 (a narrower range reads better on a linear axis).
Lightning's ``<name>_step`` / ``<name>_epoch`` pairs (``on_epoch=True``) are
shown once, as ``<name>``, from the epoch values.
"""

from __future__ import annotations

import functools
import json
import math
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from downpour.core.rundir import RunDir  # noqa: E402

__all__ = ["CurvePanels", "classify_columns", "log_units", "plot_training_curves"]

Series = Sequence[tuple[float, float]]

#: ``val/<name>`` metrics in the data's units: names starting with these (then ``_`` or end).
_PHYSICAL = re.compile(r"^(MAE|RMSE|CRPS|ME|bias)(_|$)", re.IGNORECASE)
#: Loss-term names that are schedules (weights), not losses.
_SCHEDULE_TERMS = frozenset({"beta"})
#: Smallest max / min of a panel's positive values drawn on a log y axis.
_LOG_SPAN = 5.0
#: Units of a model's metrics when the run has no data card.
_KIND_UNITS = {"nowcast": "mm/h"}


@dataclass(frozen=True)
class CurvePanels:
    """Log columns sorted into the panels of :func:`plot_training_curves`.

    Attributes
    ----------
    total
        ``train/loss`` and ``val/loss`` where logged.
    metrics
        ``val/*`` metrics in the data's units.
    scores
        ``val/*`` metrics without units.
    terms
        Loss-term names ``<name>`` (without the ``train/`` / ``val/`` prefix).
    other
        Schedules and columns outside ``train/`` and ``val/``.
    """

    total: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    scores: list[str] = field(default_factory=list)
    terms: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)


def _split(name: str) -> tuple[str, str]:
    prefix, _, rest = name.partition("/")
    return (prefix, rest) if rest else ("", name)


def classify_columns(names: Iterable[str]) -> CurvePanels:
    """Sort log column names into panels (rules in the module docstring).

    Parameters
    ----------
    names
        Column names of the CSV log (``epoch`` and ``step`` already left out).

    Returns
    -------
    CurvePanels
        Each list in the order of ``names``.

    Examples
    --------
    >>> p = classify_columns(["train/loss", "train/kl", "val/kl", "val/MAE", "val/CSI_P95",
    ...                       "train/beta", "lr-Adam", "val/loss"])
    >>> p.total, p.metrics, p.scores, p.terms, p.other
    (['train/loss', 'val/loss'], ['val/MAE'], ['val/CSI_P95'], ['kl'], ['train/beta', 'lr-Adam'])
    """
    names = list(names)
    train = {rest for prefix, rest in map(_split, names) if prefix == "train"}
    panels = CurvePanels()
    for name in names:
        prefix, rest = _split(name)
        if prefix in ("train", "val") and rest == "loss":
            panels.total.append(name)
        elif prefix not in ("train", "val") or rest in _SCHEDULE_TERMS:
            panels.other.append(name)
        elif rest in train:
            if rest not in panels.terms:
                panels.terms.append(rest)
        elif prefix == "val":
            (panels.metrics if _PHYSICAL.match(rest) else panels.scores).append(name)
        else:  # pragma: no cover - every train/<name> is in ``train``
            panels.other.append(name)
    return panels


def _tidy(log: Mapping[str, Series]) -> dict[str, Series]:
    """Merge Lightning's ``<name>_step`` / ``<name>_epoch`` columns into ``<name>``."""
    out: dict[str, Series] = {}
    for name, series in log.items():
        if name.endswith("_step") and (name[:-5] in log or name[:-5] + "_epoch" in log):
            continue
        if name.endswith("_epoch") and name[:-6] not in log:
            out[name[:-6]] = series
        else:
            out[name] = series
    return out


def _draw(ax: plt.Axes, series: Series, **style: object) -> Line2D:
    epochs, values = zip(*series, strict=True) if series else ((), ())
    (line,) = ax.plot(epochs, values, marker="o", ms=3, **style)
    return line


class _PlainLog(ticker.LogFormatter):
    """Label the ticks matplotlib's log formatter would label, as plain numbers (0.3, 20)."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x:.3g}" if super().__call__(x, pos) else ""


def _scale(ax: plt.Axes, values: list[float]) -> None:
    """Log y (plain-number labels) when all values are positive and span ≥ ``_LOG_SPAN``."""
    if values and min(values) > 0 and max(values) >= _LOG_SPAN * min(values):
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(_PlainLog())
        ax.yaxis.set_minor_formatter(_PlainLog(labelOnlyBase=False))


def _legend(ax: plt.Axes, handles: list[Line2D] | None = None) -> None:
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0.0, frameon=False)  # fmt: skip


def _simple_panel(
    ax: plt.Axes, log: Mapping[str, Series], names: list[str], title: str, ylabel: str
) -> None:
    """One line per column, labelled with its full name; log y when all positive."""
    values: list[float] = []
    for name in names:
        _draw(ax, log[name], label=name, lw=1.5)
        values += [v for _, v in log[name]]
    _scale(ax, values)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    _legend(ax)


def _term_size(log: Mapping[str, Series], term: str) -> float:
    series = log.get(f"train/{term}") or log.get(f"val/{term}") or []
    values = sorted(abs(v) for _, v in series)
    return values[len(values) // 2] if values else 0.0


def _terms_panel(
    ax: plt.Axes, log: Mapping[str, Series], terms: list[str], title: str, zero: list[str]
) -> None:
    """Each term in its colour: train solid, validation dashed; legend: terms, then styles."""
    handles, values = [], []
    for i, term in enumerate(terms):
        colour = f"C{i % 10}"
        for prefix, ls in (("train", "-"), ("val", "--")):
            series = log.get(f"{prefix}/{term}")
            if series:
                _draw(ax, series, label=f"{prefix}/{term}", color=colour, ls=ls, lw=1.4)
                values += [v for _, v in series]
        handles.append(Line2D([], [], color=colour, lw=2, label=term))
    handles += [
        Line2D([], [], color="0.3", ls="-", label="train"),
        Line2D([], [], color="0.3", ls="--", label="validation"),
    ]
    _scale(ax, values)
    if zero:
        title += "\n" + textwrap.fill("0 in every epoch (not drawn): " + ", ".join(zero), 60)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel("loss term (unitless)")
    _legend(ax, handles)


def plot_training_curves(
    log: Mapping[str, Series],
    *,
    kind: str,
    units: str = "mm/day",
    max_per_panel: int = 8,
) -> Figure | None:
    """Draw a model's training log per epoch, one panel per kind of column.

    Parameters
    ----------
    log
        ``{column: [(epoch, value), ...]}`` (:func:`downpour.report.html.read_training_log`).
    kind
        Model name for the panel titles (e.g. ``cvae``).
    units
        Units of the validation metrics (the data's, e.g. ``mm/day``).
    max_per_panel
        Most loss terms in one panel; more are spread evenly over several.

    Returns
    -------
    matplotlib.figure.Figure or None
        Panels in two columns, in the order total loss, validation metrics,
        validation scores, loss terms, schedules; None when the log holds
        no values.
    """
    log = {k: v for k, v in _tidy(log).items() if v}
    p = classify_columns(log)
    zero = [t for t in p.terms if all(v == 0 for s in ("train", "val")
                                      for _, v in log.get(f"{s}/{t}", []))]  # fmt: skip
    terms = sorted((t for t in p.terms if t not in zero), key=lambda t: -_term_size(log, t))
    n_term_panels = math.ceil(len(terms) / max(1, max_per_panel))
    per_panel = math.ceil(len(terms) / n_term_panels) if terms else 0
    draws: list[Callable[[plt.Axes], None]] = []
    for names, title, ylabel in (
        (p.total, "total loss", "loss (unitless)"),
        (p.metrics, "validation metrics", f"validation metric ({units})"),
        (p.scores, "validation scores", "score (unitless)"),
    ):
        if names:
            draws.append(functools.partial(_simple_panel, log=log, names=names,
                                           title=f"{kind}: {title}", ylabel=ylabel))  # fmt: skip
    for i in range(max(n_term_panels, 1 if zero else 0)):
        part = f" ({i + 1}/{n_term_panels})" if n_term_panels > 1 else ""
        draws.append(functools.partial(_terms_panel, log=log,
                                       terms=terms[i * per_panel : (i + 1) * per_panel],
                                       title=f"{kind}: loss terms{part}",
                                       zero=zero if i == 0 else []))  # fmt: skip
    if p.other:
        draws.append(functools.partial(_simple_panel, log=log, names=p.other,
                                       title=f"{kind}: schedules and other values",
                                       ylabel="value"))  # fmt: skip
    if not draws:
        return None
    ncols = min(2, len(draws))
    nrows = math.ceil(len(draws) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.6 * ncols, 3.3 * nrows), squeeze=False,
                             layout="constrained")  # fmt: skip
    for ax, draw in zip(axes.flat, draws, strict=False):
        draw(ax)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.grid(True, which="major", alpha=0.25)
    for ax in list(axes.flat)[len(draws) :]:
        ax.set_visible(False)
    return fig


def log_units(run: str | Path, kind: str) -> str:
    """Return the units of a run's validation metrics.

    The data card's ``units``; without a card ``mm/h`` for ``kind="nowcast"``,
    else ``mm/day``.
    """
    try:
        units = json.loads(RunDir(run).card.read_text()).get("units")
    except (OSError, ValueError, AttributeError):
        units = None
    return str(units) if units else _KIND_UNITS.get(kind, "mm/day")
