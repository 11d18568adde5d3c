"""Verification of radar nowcasts per lead time, against persistence and extrapolation.

For every init time of the verification period, the model (rolled forward
from a checkpoint), persistence and, when pysteps is installed, the pysteps
optical-flow extrapolation nowcast are scored against the observed frames at
each lead. Scores are pooled over init times per lead (streaming, one
:class:`~downpour.metrics.verification.VerificationAccumulator` per method and
lead; an "init" plays the role of a "day" there):

- RMSE in mm/h and in the network's normalised (transformed: log1p or dBR)
  space, MAE in mm/h, Pearson correlation;
- CSI per threshold (event ``value > threshold``, mm/h; DESIGN §8.2);
- FSS per threshold and window size (pixels; zero padding at the edge, as pysteps);
- RAPSD of forecast and observation (mean over inits, no-data filled with 0).

Cells outside the radar domain or without an observation are excluded.
Periods: ``test`` (default; truth frames in the held-out last
``nowcast.test_fraction`` of the sequence, which never reached training),
``val`` or ``all`` (the latter includes training frames: in-sample).
"""

from __future__ import annotations

import contextlib
import io
import json
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from downpour.config import VariableSource
from downpour.nowcast.radar import rain_transform
from downpour.core.errors import DownpourError
from downpour.metrics.spectra import rapsd
from downpour.metrics.verification import VerificationAccumulator
from downpour.nowcast.forecast import (
    RolloutRangeWarning,
    extrapolation_forecast,
    load_nowcaster,
    persistence_forecast,
    run_forecast,
    valid_inits,
)
from downpour.nowcast.module import load_nowcast_source, split_blocks
from downpour.core.files import atomic_write_text

__all__ = ["LeadScores", "beats_persistence", "plot_nowcast", "score_rows", "verify_nowcast"]

_NS_PER_MIN = 60 * 10**9


def _thr_name(t: float) -> str:
    return f"{t:g}mm/h"


class LeadScores:
    """Streaming scores of one method at each of ``n_leads`` lead times.

    Parameters
    ----------
    n_leads
        Number of lead times.
    thresholds
        Event thresholds in mm/h.
    scales
        FSS window sizes in pixels.
    transform
        The network's rain transform, for the normalised RMSE.
    """

    def __init__(
        self, n_leads: int, thresholds: Sequence[float], scales: Sequence[int], transform: Any
    ) -> None:
        named = {_thr_name(t): float(t) for t in thresholds}
        self.acc = [VerificationAccumulator(named, scales=scales) for _ in range(n_leads)]
        self.transform = transform
        self.sse_norm = np.zeros(n_leads)
        self.n = np.zeros(n_leads)
        self.psd: list[np.ndarray | None] = [None] * n_leads
        self.psd_truth: list[np.ndarray | None] = [None] * n_leads
        self.freq = np.zeros(0)

    def update(self, forecast: np.ndarray, truth: np.ndarray, time: np.datetime64) -> None:
        """Add one init: ``forecast``, ``truth`` ``(K, H, W)`` mm/h, NaN excluded, K ≤ n_leads."""
        for k in range(truth.shape[0]):
            f, t = forecast[k].astype(np.float64), truth[k].astype(np.float64)
            valid = np.isfinite(f) & np.isfinite(t)
            if not valid.any():
                continue
            self.acc[k].update(f, t, np.array([time]))
            d = rain_transform(f[valid], self.transform) - rain_transform(t[valid], self.transform)
            self.sse_norm[k] += float(np.sum(d * d))
            self.n[k] += valid.sum()
            self.freq, p = rapsd(np.stack([f, t]), mask=valid)
            self.psd[k] = p[0] if self.psd[k] is None else self.psd[k] + p[0]
            self.psd_truth[k] = p[1] if self.psd_truth[k] is None else self.psd_truth[k] + p[1]

    def compute(self) -> list[dict[str, Any]]:
        """Return the scores of each lead.

        Returns
        -------
        list of dict
            Per lead: ``n_inits``, ``rmse``, ``rmse_norm``, ``mae``,
            ``correlation``, ``csi[thr]``, ``fss[thr][scale]``, ``rapsd`` and
            ``rapsd_truth``; only ``n_inits: 0`` for a lead never observed.
        """
        out: list[dict[str, Any]] = []
        for k, acc in enumerate(self.acc):
            if acc.n_days == 0:
                out.append({"n_inits": 0})
                continue
            s = acc.compute(tail_fit=False)
            c = s["continuous"]
            psd, psd_t = self.psd[k], self.psd_truth[k]
            out.append(
                {
                    "n_inits": acc.n_days,
                    "rmse": c["rmse"],
                    "rmse_norm": float(np.sqrt(self.sse_norm[k] / self.n[k])),
                    "mae": c["mae"],
                    "correlation": c["correlation"],
                    "csi": {n: v["csi"] for n, v in s["categorical"].items()},
                    "fss": {n: {int(sc): v for sc, v in d.items()} for n, d in s["fss"].items()},
                    "rapsd": (psd / acc.n_days).tolist() if psd is not None else None,
                    "rapsd_truth": (psd_t / acc.n_days).tolist() if psd_t is not None else None,
                }
            )
        return out


def beats_persistence(model: dict[str, Any], pers: dict[str, Any], heavy: str) -> dict[str, bool]:
    """Check the targets at one lead against persistence.

    ``csi_1``: CSI at 1 mm/h above persistence; ``fss_1``: FSS at 1 mm/h above
    it at every scale; ``csi_heavy_not_worse``: CSI at ``heavy`` not below it.
    """
    if not model.get("n_inits") or not pers.get("n_inits"):
        return {}
    one = _thr_name(1.0)
    out: dict[str, bool] = {}
    if one in model["csi"]:
        out["csi_1"] = bool(model["csi"][one] > pers["csi"][one])
        fm, fp = model["fss"][one], pers["fss"][one]
        out["fss_1"] = bool(all(fm[s] > fp[s] for s in fm if np.isfinite(fp[s])))
    if heavy in model["csi"]:
        m, p = model["csi"][heavy], pers["csi"][heavy]
        out["csi_heavy_not_worse"] = bool(
            (np.isnan(m) and np.isnan(p)) or (np.isfinite(m) and not m < p)
        )
    return out


def _verification_inits(
    da: xr.DataArray, n_frames: int, period: str, fractions: tuple[float, float], every: int
) -> tuple[np.ndarray, slice]:
    blocks = split_blocks(da.sizes["time"], *fractions)
    if period == "all":
        block = slice(0, da.sizes["time"])
    elif period in blocks and period != "train":
        block = blocks[period]
    else:
        raise DownpourError(f"--period {period!r}: valid periods are test, val, all")
    t = da["time"].values.astype("datetime64[ns]")
    if block.stop <= block.start:
        raise DownpourError(
            f"nowcast verify: the {period} period is empty ({t.size} frames); use --period all "
            "or set nowcast.test_fraction"
        )
    step = np.timedelta64(int(da.attrs.get("step_minutes", 60)), "m")
    first_truth = t[block.start]
    inits = valid_inits(da, n_frames)
    inits = inits[(inits + step >= first_truth) & (inits < t[block.stop - 1])]
    return inits[::every], block


def verify_nowcast(
    checkpoint: str | Path,
    *,
    source: VariableSource | xr.DataArray | None = None,
    period: str = "test",
    hours: float | None = None,
    every: int | None = None,
    extrapolation: bool = True,
    prob_match: bool | None = None,
    out_dir: str | Path | None = None,
    echo: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Score the model, persistence and extrapolation per lead time.

    Parameters
    ----------
    checkpoint
        A nowcast checkpoint.
    source
        Radar file or DataArray; default: the checkpoint's (or the embedded generator).
    period
        ``test``, ``val`` or ``all`` (module docstring).
    hours
        Longest lead (default ``nowcast.hours``); leads without an
        observation in the period are skipped for that init.
    every
        Steps between init times (default ``nowcast.verify_every``).
    extrapolation
        Also score pysteps' extrapolation nowcast (skipped with a note when
        pysteps is missing).
    prob_match
        Probability-match the model's rollout (default ``nowcast.prob_match``).
    out_dir
        Run directory: writes ``metrics/verify_nowcast.json`` and
        ``figures/nowcast_scores.png``, ``figures/nowcast_maps.png``.
    echo
        Where progress lines go.

    Returns
    -------
    dict
        ``leads`` (minutes), ``inits`` (ISO), ``methods`` {name: per-lead
        scores (:meth:`LeadScores.compute`)}, ``beats_persistence`` (per lead),
        ``range_warnings``, ``notes``, ``thresholds``, ``scales``, ``freq``.
    """
    net, cfg, stats = load_nowcaster(checkpoint)
    nc = cfg.nowcast
    da = load_nowcast_source(nc, source)
    step_ns = int(da.attrs.get("step_minutes", nc.step_minutes)) * _NS_PER_MIN
    n_leads = int(round((hours if hours is not None else nc.hours) * 60 * _NS_PER_MIN / step_ns))
    inits, block = _verification_inits(
        da, nc.n_frames, period, (nc.val_fraction, nc.test_fraction), every or nc.verify_every
    )
    if inits.size == 0:
        raise DownpourError(
            f"nowcast verify: no init time in the {period} period has {nc.n_frames} clean "
            "frames before it; use --period all, a longer source or a smaller nowcast.n_frames"
        )
    methods = ["model", "persistence"]
    notes: list[str] = []
    if extrapolation:
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # it prints a line on import
                import pysteps  # noqa: F401

            methods.append("extrapolation")
        except ImportError:
            notes.append("pysteps is not installed: no extrapolation baseline")
    scores = {m: LeadScores(n_leads, nc.thresholds, nc.fss_scales, nc.transform) for m in methods}
    times = da["time"].values.astype("datetime64[ns]")
    index = {int(v): i for i, v in enumerate(times.astype(np.int64))}
    range_msgs: list[str] = []
    example: dict[str, Any] = {}
    best_rain = -1.0
    t0 = time.perf_counter()
    for init in inits:
        lead_t = init + (np.arange(1, n_leads + 1) * step_ns).astype("timedelta64[ns]")
        rows = [index.get(int(v)) for v in lead_t.astype(np.int64)]
        ok = [r is not None and block.start <= r < block.stop for r in rows]
        k_max = next((j for j, good in enumerate(ok) if not good), n_leads)  # leads observed
        if k_max == 0:
            continue
        truth = np.stack([np.asarray(da.values[r], dtype=np.float64) for r in rows[:k_max]])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RolloutRangeWarning)
            fc = {
                "model": run_forecast(
                    net,
                    da,
                    init=init,
                    steps=k_max,
                    n_frames=nc.n_frames,
                    transform=nc.transform,
                    stats=stats,
                    range_factor=nc.range_factor,
                    prob_match=nc.prob_match if prob_match is None else prob_match,
                ),  # fmt: skip
                "persistence": persistence_forecast(da, init=init, steps=k_max),
            }
        range_msgs += [f"init {_iso(init)}: {w.message}" for w in caught]
        if "extrapolation" in methods:
            try:
                fc["extrapolation"] = extrapolation_forecast(
                    da, init=init, steps=k_max, n_frames=nc.n_frames
                )
            except DownpourError as exc:
                methods.remove("extrapolation")
                scores.pop("extrapolation")
                notes.append(f"extrapolation baseline skipped: {exc}")
        for m in methods:
            scores[m].update(fc[m]["precip_rate"].values, truth, init)
        rain = float(np.nanmean(truth[0]))
        if rain > best_rain:
            best_rain = rain
            example = {"init": init, "truth": truth, **{m: fc[m] for m in methods}}
    echo(f"verified {inits.size} init times × {n_leads} leads in {time.perf_counter() - t0:.0f} s")
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "period": period,
        "in_sample": period == "all",
        "step_minutes": step_ns // _NS_PER_MIN,
        "leads": [int(k * step_ns // _NS_PER_MIN) for k in range(1, n_leads + 1)],
        "inits": [_iso(t) for t in inits],
        "thresholds": list(nc.thresholds),
        "scales": list(nc.fss_scales),
        "transform": nc.transform,
        "prob_match": bool(nc.prob_match if prob_match is None else prob_match),
        "methods": {m: s.compute() for m, s in scores.items()},
        "freq": scores["model"].freq.tolist(),
        "range_warnings": range_msgs,
        "notes": notes,
    }
    heavy = _thr_name(max(nc.thresholds))
    result["beats_persistence"] = [
        beats_persistence(mo, pe, heavy)
        for mo, pe in zip(result["methods"]["model"], result["methods"]["persistence"], strict=True)
    ]
    if out_dir is not None:
        out = Path(out_dir)
        atomic_write_text(out / "metrics" / "verify_nowcast.json", json.dumps(result, indent=1))
        plot_nowcast(result, example, out / "figures")
    return result


def _iso(t: Any) -> str:
    return str(np.datetime_as_string(np.datetime64(t, "ns"), unit="m"))


def score_rows(result: dict[str, Any], scale: int | None = None) -> list[dict[str, Any]]:
    """Return the rows of the score-vs-lead table.

    Per lead and method: CSI (1 mm/h and the heaviest threshold), FSS (1 mm/h
    at ``scale``, default the middle one), RMSE in mm/h and normalised.
    """
    one, heavy = _thr_name(1.0), _thr_name(max(result["thresholds"]))
    scales = result["scales"]
    sc = scale if scale is not None else scales[len(scales) // 2]
    rows = []
    for k, lead in enumerate(result["leads"]):
        row: dict[str, Any] = {"lead_min": lead}
        for m, per in result["methods"].items():
            s = per[k]
            if not s.get("n_inits"):
                continue
            row[m] = {
                "csi_1": s["csi"].get(one, np.nan),
                "csi_heavy": s["csi"].get(heavy, np.nan),
                "fss_1": s["fss"].get(one, {}).get(sc, np.nan),
                "rmse": s["rmse"],
                "rmse_norm": s["rmse_norm"],
                "n": s["n_inits"],
            }
        row["beats"] = result["beats_persistence"][k]
        rows.append(row)
    return rows


def plot_nowcast(result: dict[str, Any], example: dict[str, Any], fig_dir: Path) -> list[Path]:
    """Write ``nowcast_scores.png`` (score vs lead) and ``nowcast_maps.png`` (forecast vs truth).

    The maps show, for the wettest verification init, the observation and
    each method at four leads (first, about a quarter, half, last).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import colors

    from downpour.report.figures import RAIN_CMAP, save

    leads_h = np.asarray(result["leads"]) / 60.0
    one, heavy = _thr_name(1.0), _thr_name(max(result["thresholds"]))
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
    paths = [save(fig, fig_dir / "nowcast_scores.png")]
    if example:
        truth = example["truth"]
        k = truth.shape[0]
        picks = sorted({0, max(0, k // 4 - 1), max(0, k // 2 - 1), k - 1})
        rows = [("observed", truth)] + [
            (m, example[m]["precip_rate"].values) for m in result["methods"]
        ]
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
        fig.suptitle(f"Forecast vs observation, init {_iso(example['init'])}")
        paths.append(save(fig, fig_dir / "nowcast_maps.png"))
    return paths
