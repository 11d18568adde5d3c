"""Figures (PNG, matplotlib's Agg backend; no display needed).

Maps share one colour scale per figure (a square-root norm, so that light
and heavy rain are both readable), draw cells outside the mask in grey and
outline the land with the dataset's own mask (cartopy cannot fetch
coastlines offline). Every figure has units on its axes or colour bar.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib import colors, ticker  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from downpour.core.files import atomic_file

__all__ = [
    "map_panel",
    "plot_distributions",
    "plot_intensity",
    "plot_members",
    "plot_rank_histogram",
    "plot_rapsd",
    "plot_rapsd_ratio",
    "plot_scores",
    "plot_verification_maps",
    "save",
]

RAIN_CMAP = colors.LinearSegmentedColormap.from_list(
    "downpour_rain",
    [
        "#ffffff",
        "#c6e6f5",
        "#6baed6",
        "#2171b5",
        "#31a354",
        "#fed976",
        "#fd8d3c",
        "#e31a1c",
        "#800026",
    ],  # fmt: skip
).with_extremes(bad="#d9d9d9")


def save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG (atomically: a temporary file then a rename) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _extent(ds: xr.Dataset | None, shape: tuple[int, int]) -> tuple[list[float] | None, str, str]:
    """Return the imshow extent from 1-D lat/lon coordinates, else cell indices."""
    if ds is not None and "lat" in ds.coords and "lon" in ds.coords:
        lat, lon = ds["lat"].values, ds["lon"].values
        if lat.ndim == 1 and lon.ndim == 1 and lat.size > 1 and lon.size > 1:
            dy, dx = (lat[-1] - lat[0]) / (lat.size - 1), (lon[-1] - lon[0]) / (lon.size - 1)
            ext = [lon[0] - dx / 2, lon[-1] + dx / 2, lat[0] - dy / 2, lat[-1] + dy / 2]
            return [float(e) for e in ext], "longitude (°E)", "latitude (°N)"
    return [-0.5, shape[1] - 0.5, -0.5, shape[0] - 0.5], "x (cell)", "y (cell)"


def map_panel(
    ax: Any,
    field: np.ndarray,
    *,
    mask: np.ndarray | None,
    norm: colors.Normalize,
    extent: list[float] | None,
    title: str = "",
) -> Any:
    """Draw one precipitation map on ``ax``.

    Parameters
    ----------
    field
        Shape ``(y, x)``, y increasing northwards (drawn with origin lower).
    mask
        Valid (land) cells, shape ``(y, x)``; outside is grey and outlined.
    """
    shown = np.where(mask, field, np.nan) if mask is not None else field
    im = ax.imshow(shown, origin="lower", cmap=RAIN_CMAP, norm=norm, extent=extent,
                   interpolation="nearest", aspect="auto")  # fmt: skip
    if mask is not None and (~mask).any() and mask.any():
        ny, nx = mask.shape
        x0, x1, y0, y1 = extent if extent is not None else (-0.5, nx - 0.5, -0.5, ny - 0.5)
        xs = np.linspace(x0, x1, nx + 1)[:-1] + (x1 - x0) / nx / 2
        ys = np.linspace(y0, y1, ny + 1)[:-1] + (y1 - y0) / ny / 2
        ax.contour(xs, ys, mask.astype(float), levels=[0.5], colors="k", linewidths=0.7)
    ax.set_title(title, fontsize=9)
    return im


def plot_members(
    ds: xr.Dataset,
    *,
    n_events: int = 4,
    n_members: int = 4,
    units: str = "mm/day",
    title: str = "",
) -> Figure:
    """Real field beside K generated members for the heaviest events.

    Parameters
    ----------
    ds
        A samples store (``samples`` (event, member, y, x), ``target``,
        ``mask``). Events are ranked by the real field's mean over the mask.
    """
    mask = ds["mask"].values.astype(bool) if "mask" in ds else None
    real = ds["target"].values
    score = np.nanmean(np.where(mask, real, np.nan), axis=(1, 2)) if mask is not None else (
        np.nanmean(real, axis=(1, 2)))  # fmt: skip
    order = np.argsort(-score)[: min(n_events, ds.sizes["event"])]
    k = min(n_members, ds.sizes["member"])
    gen = ds["samples"].isel(event=order, member=slice(0, k)).values
    shown = np.concatenate([real[order][:, None], gen], axis=1)
    vmax = float(np.nanpercentile(shown, 99.5)) if np.isfinite(shown).any() else 1.0
    norm = colors.PowerNorm(gamma=0.5, vmin=0.0, vmax=max(vmax, 1e-3))
    extent, xl, yl = _extent(ds, real.shape[1:])
    fig, axes = plt.subplots(
        len(order), k + 1, figsize=(2.3 * (k + 1) + 0.8, 2.2 * len(order)), squeeze=False,
        sharex=True, sharey=True,
    )  # fmt: skip
    times = ds["time"].values if "time" in ds.coords else None
    im = None
    for r, e in enumerate(order):
        day = str(np.datetime_as_string(times[e], unit="D")) if times is not None else f"event {e}"
        for c in range(k + 1):
            label = f"real {day}" if c == 0 else f"member {c}"
            im = map_panel(axes[r, c], shown[r, c], mask=mask, norm=norm, extent=extent,
                           title=label)  # fmt: skip
        axes[r, 0].set_ylabel(yl, fontsize=8)
    for c in range(k + 1):
        axes[-1, c].set_xlabel(xl, fontsize=8)
    cbar = fig.colorbar(im, ax=axes, shrink=0.8, pad=0.02)
    cbar.set_label(f"precipitation ({units})")
    fig.suptitle(title or "Heaviest events: real field and generated members", fontsize=11)
    return fig


def plot_intensity(
    real: np.ndarray,
    generated: np.ndarray,
    *,
    units: str = "mm/day",
    wet_threshold: float = 0.1,
    title: str = "",
) -> Figure:
    """Intensity histograms (log y) of wet values and a Q–Q plot, real vs generated.

    Parameters
    ----------
    real, generated
        Pooled valid values, 1-D.
    """
    rw, gw = real[real >= wet_threshold], generated[generated >= wet_threshold]
    top = float(max(rw.max(initial=1.0), gw.max(initial=1.0)))
    bins = np.linspace(wet_threshold, top, 60)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for vals, label in ((rw, "real"), (gw, "generated")):
        if vals.size:
            ax1.hist(vals, bins=bins, density=True, histtype="step", lw=1.6,
                     label=f"{label} (n={vals.size})")  # fmt: skip
    ax1.set_yscale("log")
    ax1.set_xlabel(f"precipitation of wet cells ({units})")
    ax1.set_ylabel("density")
    ax1.legend()
    ax1.set_title("Intensity distribution (wet cells)", fontsize=10)
    q = np.linspace(0.0, 1.0, 201)[1:-1]
    q = np.concatenate([q, [0.995, 0.999, 0.9999]])
    if rw.size and gw.size:
        qr, qg = np.quantile(rw, q), np.quantile(gw, q)
        ax2.plot(qr, qg, ".", ms=3)
        lim = float(max(qr.max(), qg.max()))
        ax2.plot([0, lim], [0, lim], "k--", lw=0.8, label="1:1")
        ax2.legend()
    ax2.set_xlabel(f"real quantile ({units})")
    ax2.set_ylabel(f"generated quantile ({units})")
    ax2.set_title("Q–Q plot (wet cells, up to the 99.99th percentile)", fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_rapsd(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    title: str = "Radially averaged power spectrum",
    units: str = "mm/day",
) -> Figure:
    """Log-log RAPSD curves: ``{label: (wavenumber in cycles/cell, power)}``."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for label, (freq, power) in curves.items():
        keep = (freq > 0) & (power > 0)
        ax.loglog(freq[keep], power[keep], lw=1.6, label=label)
    ax.set_xlabel("wavenumber (cycles per cell)")
    ax.set_ylabel(f"power (({units})²)")
    sec = ax.secondary_xaxis("top", functions=(lambda f: 1 / np.maximum(f, 1e-9),
                                               lambda w: 1 / np.maximum(w, 1e-9)))  # fmt: skip
    sec.set_xlabel("wavelength (cells)")
    ax.legend()
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.2)
    fig.tight_layout()
    return fig


def plot_rapsd_ratio(
    wavelength: np.ndarray,
    ratio: np.ndarray,
    *,
    factor: float = 1.5,
    min_wavelength: float = 3.0,
    title: str = "RAPSD ratio generated / real",
) -> Figure:
    """Power ratio generated / real against wavelength (log-log), with the 1 and ×factor lines.

    ``wavelength`` (cells) and ``ratio`` have shape ``(R,)`` (as
    :func:`downpour.metrics.spectra.rapsd_ratio`; NaN or None ratios are not
    drawn); the band ``[1/factor, factor]`` is shaded and wavelengths below
    ``min_wavelength`` (near the grid's Nyquist limit) greyed out.
    """
    w = np.asarray(wavelength, dtype=np.float64)
    r = np.array([np.nan if v is None else v for v in np.asarray(ratio, dtype=object)], float)
    keep = np.isfinite(r) & (r > 0) & (w > 0)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.axhspan(1.0 / factor, factor, color="tab:green", alpha=0.12,
               label=f"within ×{factor:g}")  # fmt: skip
    ax.axhline(1.0, color="k", lw=0.9)
    for y in (1.0 / factor, factor):
        ax.axhline(y, color="tab:green", lw=0.8, ls="--")
    ax.plot(w[keep], r[keep], "o-", ms=3, lw=1.4, color="tab:blue", label="generated / real")
    if keep.any() and w[keep].min() < min_wavelength:
        ax.axvspan(w[keep].min() * 0.95, min_wavelength, color="0.85", alpha=0.6,
                   label=f"< {min_wavelength:g} cells (not summarised)")  # fmt: skip
    ax.set(xscale="log", yscale="log")
    w_max = float(w[keep].max()) if keep.any() else 64.0
    ax.set_xticks([2.0**i for i in range(1, int(np.log2(max(w_max, 2.0))) + 2)])
    lo = min(1.0 / factor, float(r[keep].min()) if keep.any() else 1.0) / 1.15
    hi = max(factor, float(r[keep].max()) if keep.any() else 1.0) * 1.15
    ax.set_ylim(lo, hi)
    ax.set_yticks([v for v in (0.1, 0.25, 0.5, 1 / factor, 1.0, factor, 2.0, 4.0, 10.0)
                   if lo <= v <= hi])  # fmt: skip
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
        axis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlim(w_max * 1.15 if keep.any() else 64.0, 1.8)  # large scales on the left
    ax.set(xlabel="wavelength (cells)", ylabel="power ratio generated / real")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.2)
    fig.tight_layout()
    return fig


def plot_rank_histogram(frequencies: Sequence[float], *, title: str = "Rank histogram") -> Figure:
    """Bars of the truth's rank frequencies among K members, with the uniform ``1/(K+1)`` line.

    Parameters
    ----------
    frequencies
        ``(K + 1,)`` relative frequencies of ranks ``0 .. K`` (summing to 1).
    """
    f = np.asarray(frequencies, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.bar(np.arange(f.size), f, width=0.85, color="tab:blue", alpha=0.8)
    ax.axhline(1.0 / f.size, color="k", ls="--", lw=0.9, label=f"uniform 1/{f.size}")
    if f.size <= 21:
        ax.set_xticks(np.arange(f.size))
    ax.set(xlabel=f"rank of the real value among the {f.size - 1} members",
           ylabel="relative frequency")  # fmt: skip
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_distributions(per_event: xr.Dataset, *, title: str = "") -> Figure:
    """Distributions over events × members of wet fraction (beside the real one) and mass bias."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    wf = per_event["wet_fraction"].values.ravel()
    wr = per_event["wet_fraction_real"].values.ravel()
    bins = np.linspace(0.0, 1.0, 41)
    ax1.hist(wr, bins=bins, alpha=0.6, density=True, label="real (per event)")
    ax1.hist(wf, bins=bins, alpha=0.6, density=True, label="generated (per member)")
    ax1.set_xlabel("wet fraction (share of land cells ≥ wet threshold)")
    ax1.set_ylabel("density")
    ax1.legend()
    ax1.set_title("Wet fraction", fontsize=10)
    mb = per_event["mass_bias"].values.ravel()
    mb = mb[np.isfinite(mb)]
    if mb.size:
        ax2.hist(mb, bins=40, color="tab:purple", alpha=0.75)
    ax2.axvline(0.0, color="k", lw=0.8, ls="--")
    ax2.set_xlabel("mass bias (ΣŶ − ΣY) / ΣY")
    ax2.set_ylabel("members")
    ax2.set_title(f"Mass bias (mean {np.mean(mb) if mb.size else np.nan:+.3f})", fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def figure_names(prefix: str) -> Sequence[str]:
    """File names of the sample-quality figures for ``prefix`` (e.g. ``posterior_train``)."""
    names = ("members", "intensity", "rapsd", "rapsd_ratio", "rank_histogram", "distributions")
    return [f"{prefix}_{n}.png" for n in names]


def plot_verification_maps(
    truth: xr.DataArray,
    predictions: dict[str, xr.DataArray],
    mask: np.ndarray,
    *,
    n_days: int = 3,
    units: str = "mm/day",
) -> Figure:
    """Map the heaviest days (by the truth's mean over the mask): truth and each model.

    Parameters
    ----------
    truth
        ``(time, y, x)``.
    predictions
        ``{name: (time, y, x)}`` on the same days.
    """
    t = np.asarray(truth.values)
    score = np.nanmean(np.where(mask, t, np.nan), axis=(1, 2))
    order = np.argsort(-np.nan_to_num(score, nan=-np.inf))[: min(n_days, t.shape[0])]
    fields = [t[order]] + [np.asarray(p.isel(time=order).values) for p in predictions.values()]
    labels = ["truth", *predictions]
    stack = np.stack(fields, axis=1)  # (day, model, y, x)
    vmax = float(np.nanpercentile(np.where(mask, stack, np.nan), 99.5))
    norm = colors.PowerNorm(gamma=0.5, vmin=0.0, vmax=max(vmax, 1e-3))
    extent, xl, yl = _extent(truth.to_dataset(name="t") if truth.name is None else
                             truth.to_dataset(), t.shape[1:])  # fmt: skip
    n_col = len(labels)
    fig, axes = plt.subplots(len(order), n_col, figsize=(2.3 * n_col + 0.8, 2.2 * len(order)),
                             squeeze=False, sharex=True, sharey=True)  # fmt: skip
    im = None
    times = truth["time"].values
    for r, d in enumerate(order):
        day = str(np.datetime_as_string(times[d], unit="D"))
        for c, label in enumerate(labels):
            im = map_panel(axes[r, c], stack[r, c], mask=mask, norm=norm, extent=extent,
                           title=f"{label} {day}" if c == 0 else label)  # fmt: skip
        axes[r, 0].set_ylabel(yl, fontsize=8)
    for c in range(n_col):
        axes[-1, c].set_xlabel(xl, fontsize=8)
    cbar = fig.colorbar(im, ax=axes, shrink=0.8, pad=0.02)
    cbar.set_label(f"precipitation ({units})")
    fig.suptitle("Heaviest test days: truth and each downscaler", fontsize=11)
    return fig


def plot_scores(result: dict[str, Any]) -> Figure:
    """CSI and SEDI at P95 and P99 per model, with bootstrap 95% intervals as error bars.

    Quantile models appear by their median head; their other heads
    (``"name q0.99"``) are left out here.
    """
    names = [n for n in result["models"] if " " not in n]
    panels = [("csi", "P95"), ("csi", "P99"), ("sedi", "P95"), ("sedi", "P99")]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), squeeze=False)
    x = np.arange(len(names))
    for ax, (score, thr) in zip(axes[0], panels, strict=True):
        leaves = [result["models"][n]["intervals"]["categorical"][thr][score] for n in names]
        est = np.array([leaf["estimate"] for leaf in leaves])
        low = np.array([leaf["low"] for leaf in leaves])
        high = np.array([leaf["high"] for leaf in leaves])
        err = np.vstack([np.clip(est - low, 0, None), np.clip(high - est, 0, None)])
        ax.bar(x, np.nan_to_num(est), yerr=np.nan_to_num(err), capsize=4,
               color=[f"C{i}" for i in range(len(names))])  # fmt: skip
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{score.upper()} at {thr} (> {result['thresholds'][thr]:.1f})", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].set_ylabel("score (95% bootstrap interval)")
    fig.tight_layout()
    return fig
