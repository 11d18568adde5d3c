"""Figures of a nowcast verification: scores vs lead time, and forecast vs observation maps.

Inputs are plain data: the result dict of
:func:`downpour.nowcast.verify.verify_nowcast` and an ``example`` dict
(``init`` datetime64, ``truth`` ``(K, H, W)`` mm/h, and one ``(K, H, W)`` mm/h
array per method), so this room never imports the nowcaster.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import colors  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from downpour.core.rundir import RunDir  # noqa: E402
from downpour.metrics.leadtime import threshold_name  # noqa: E402
from downpour.report.figures import RAIN_CMAP, save  # noqa: E402

__all__ = ["nowcast_maps_figure", "nowcast_scores_figure", "plot_nowcast"]


def _iso_minute(t: Any) -> str:
    return str(np.datetime_as_string(np.datetime64(t, "ns"), unit="m"))


def nowcast_scores_figure(result: dict[str, Any]) -> Figure:
    """Plot each method's CSI (1 mm/h, heaviest threshold), FSS and RMSE against lead time."""
    leads_h = np.asarray(result["leads"]) / 60.0
    one, heavy = threshold_name(1.0), threshold_name(max(result["thresholds"]))
    sc = result["scales"][len(result["scales"]) // 2]
    panels = [
        (f"CSI > {one}", lambda s: s["csi"][one]),
        (f"CSI > {heavy}", lambda s: s["csi"][heavy]),
        (f"FSS > {one}, {sc}×{sc} px", lambda s: s["fss"][one][sc]),
        ("RMSE (mm/h)", lambda s: s["rmse"]),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    for ax, (title, get) in zip(axes.flat, panels, strict=True):
        for m, per in result["methods"].items():
            y = [get(s) if s.get("n_inits") else np.nan for s in per]
            ax.plot(leads_h, y, marker=".", label=m)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("lead time (h)")
    axes[0, 0].legend()
    fig.suptitle(
        f"Nowcast scores vs lead ({result['period']} period, {len(result['inits'])} inits)"
    )
    return fig


def nowcast_maps_figure(result: dict[str, Any], example: dict[str, Any]) -> Figure:
    """Map the observation and each method at four leads (first, a quarter, half, last)."""
    truth = example["truth"]
    k = truth.shape[0]
    picks = sorted({0, max(0, k // 4 - 1), max(0, k // 2 - 1), k - 1})
    rows = [("observed", truth)] + [(m, example[m]) for m in result["methods"]]
    vmax = max(float(np.nanpercentile(truth, 99.5)), 1.0)
    norm = colors.PowerNorm(gamma=0.5, vmin=0.0, vmax=vmax)
    fig, axes = plt.subplots(
        len(rows), len(picks), figsize=(2.6 * len(picks) + 1, 2.4 * len(rows)), squeeze=False
    )
    im = None
    for r, (name, fields) in enumerate(rows):
        for c, j in enumerate(picks):
            ax = axes[r, c]
            im = ax.imshow(fields[j], origin="lower", cmap=RAIN_CMAP, norm=norm)
            ax.set_xticks([])
            ax.set_yticks([])
            lead = int(result["leads"][j])
            ax.set_title(f"{name} +{lead // 60}:{lead % 60:02d} h", fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.8, label="rain rate (mm/h)")
    fig.suptitle(f"Forecast vs observation, init {_iso_minute(example['init'])}")
    return fig


def plot_nowcast(
    result: dict[str, Any], example: dict[str, Any], run_dir: str | os.PathLike[str] | RunDir
) -> list[Path]:
    """Write ``RUN/figures/nowcast_scores.png`` and ``RUN/figures/nowcast_maps.png``.

    The maps show the wettest verification init (``example``; none when it is
    empty).
    """
    run = RunDir(run_dir)
    paths = [save(nowcast_scores_figure(result), run.figure("nowcast_scores"))]
    if example:
        paths.append(save(nowcast_maps_figure(result, example), run.figure("nowcast_maps")))
    return paths
