"""Verification of radar nowcasts per lead time, against persistence and extrapolation.

For every init time of the verification period, the model (rolled forward
from a checkpoint), persistence and, when pysteps is installed, the pysteps
optical-flow extrapolation nowcast (the methods of
:data:`~downpour.nowcast.forecasters.FORECASTERS`) are scored against the
observed frames at each lead. Scores are pooled over init times per lead
(streaming, :class:`~downpour.metrics.leadtime.LeadScores`: one accumulator
per method and lead; an "init" plays the role of a "day" there):

- RMSE in mm/h and in the network's normalised (transformed: log1p or dBR)
  space, MAE in mm/h, Pearson correlation;
- CSI per threshold (event ``value > threshold``, mm/h; docs/metrics.md#downscaling-verification);
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
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from downpour.config import VariableSource
from downpour.core.errors import DownpourError
from downpour.core.files import atomic_write_text
from downpour.core.rundir import RunDir
from downpour.data.rain import rain_transform
from downpour.metrics.leadtime import LeadScores, beats_persistence
from downpour.metrics.leadtime import threshold_name as _thr_name
from downpour.nowcast.datamodule import load_nowcast_source, split_blocks
from downpour.nowcast.forecast import nowcast
from downpour.nowcast.inits import valid_inits
from downpour.nowcast.range_check import range_messages
from downpour.nowcast.train import load_nowcaster
from downpour.nowcast.windows import iso_minute

__all__ = ["score_rows", "verify_nowcast"]

_NS_PER_MIN = 60 * 10**9
#: Methods scored at every init. Warnings raised while they run are reported
#: with the model's range checks in ``range_warnings``.
_SCORED = ("model", "persistence")


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
        scores
        (:meth:`~downpour.metrics.leadtime.LeadScores.compute`)}, ``beats_persistence`` (per lead),
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
    normalise = partial(rain_transform, kind=nc.transform)
    scores = {m: LeadScores(n_leads, nc.thresholds, nc.fss_scales, normalise) for m in methods}
    pm = nc.prob_match if prob_match is None else prob_match
    context = {"net": net, "n_frames": nc.n_frames, "transform": nc.transform, "prob_match": pm}
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
        i = index[int(init.astype(np.int64))]
        with warnings.catch_warnings(record=True) as caught:
            fc = {m: nowcast(m, da, i, k_max, **context) for m in _SCORED}
            out_of_range = range_messages(fc["model"], da, i, stats, nc.range_factor)
        msgs = [str(w.message) for w in caught] + out_of_range
        range_msgs += [f"init {iso_minute(init)}: {msg}" for msg in msgs]
        for m in [m for m in methods if m not in _SCORED]:  # optional baselines
            try:
                fc[m] = nowcast(m, da, i, k_max, **context)
            except DownpourError as exc:
                methods.remove(m)
                scores.pop(m)
                notes.append(f"{m} baseline skipped: {exc}")
        for m in methods:
            scores[m].update(fc[m]["precip_rate"].values, truth, init)
        rain = float(np.nanmean(truth[0]))
        if rain > best_rain:
            best_rain = rain
            maps = {m: fc[m]["precip_rate"].values for m in methods}
            example = {"init": init, "truth": truth, **maps}
    echo(f"verified {inits.size} init times × {n_leads} leads in {time.perf_counter() - t0:.0f} s")
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "period": period,
        "in_sample": period == "all",
        "step_minutes": step_ns // _NS_PER_MIN,
        "leads": [int(k * step_ns // _NS_PER_MIN) for k in range(1, n_leads + 1)],
        "inits": [iso_minute(t) for t in inits],
        "thresholds": list(nc.thresholds),
        "scales": list(nc.fss_scales),
        "transform": nc.transform,
        "prob_match": bool(pm),
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
        from downpour.report.nowcast_figures import plot_nowcast  # matplotlib: only when writing

        run = RunDir(out_dir)
        atomic_write_text(run.metrics("verify_nowcast"), json.dumps(result, indent=1))
        plot_nowcast(result, example, run)
    return result


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
