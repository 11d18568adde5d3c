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
Periods: ``test`` (default: with ``holdout: block`` the truth frames in the
held-out last ``nowcast.test_fraction`` of every event, with ``holdout:
event`` the whole ``test_events``; neither ever reached training), ``val``
or ``all`` (the latter includes training frames: in-sample).

Every event is scored on its own and all of them pooled (the per-init
statistics are concatenated), with percentile bootstrap intervals that
resample init times (:mod:`downpour.metrics.bootstrap`) for CSI, FSS and MAE
of each method, and paired intervals of the model's difference from each
baseline (the same resampled inits for both). The spectral check compares,
per event at the longest lead, the forecast's power in the 8–16 km band
(:data:`RAPSD_BAND_KM`; grid spacing from the ``x`` coordinate's units) with
the observed power there.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
import warnings
from collections.abc import Callable
from functools import partial, reduce
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from downpour.config import NowcastConfig, VariableSource
from downpour.core.errors import DownpourError
from downpour.core.files import atomic_write_text
from downpour.core.rundir import RunDir
from downpour.data.rain import rain_transform
from downpour.metrics.leadtime import LeadScores, beats_persistence
from downpour.metrics.leadtime import threshold_name as _thr_name
from downpour.metrics.verification import paired_difference
from downpour.nowcast.events import load_events, split_blocks
from downpour.nowcast.forecast import nowcast
from downpour.nowcast.forecasters import init_motion
from downpour.nowcast.inits import valid_inits
from downpour.nowcast.range_check import range_messages
from downpour.nowcast.train import load_nowcaster
from downpour.nowcast.windows import iso_minute

__all__ = ["score_rows", "verify_nowcast"]

_NS_PER_MIN = 60 * 10**9
#: Methods scored at every init. Warnings raised while they run are reported
#: with the model's range checks in ``range_warnings``.
_SCORED = ("model", "persistence")
#: Wavelength band (km) of the spectral check at the longest lead: does the
#: forecast keep the observed power there, or blur it away?
RAPSD_BAND_KM = (8.0, 16.0)


def _verification_inits(da: xr.DataArray, n_frames: int, block: slice, every: int) -> np.ndarray:
    """Init times whose first lead lies in ``block`` (inputs may come from before it)."""
    t = da["time"].values.astype("datetime64[ns]")
    if block.stop <= block.start:
        return t[:0]
    step = np.timedelta64(int(da.attrs.get("step_minutes", 60)), "m")
    first_truth = t[block.start]
    inits = valid_inits(da, n_frames)
    inits = inits[(inits + step >= first_truth) & (inits < t[block.stop - 1])]
    return inits[::every]


def _targets(
    nc: NowcastConfig, source: VariableSource | xr.DataArray | None, period: str
) -> dict[str, tuple[xr.DataArray, slice]]:
    """Return the events verified in ``period``, each with the frames whose truth counts."""
    if period not in ("test", "val", "all"):
        raise DownpourError(f"--period {period!r}: valid periods are test, val, all")
    events = load_events(nc, source)
    if nc.holdout == "event" and source is None:
        names = {"test": nc.test_events, "val": nc.val_events, "all": list(events)}[period]
        return {n: (events[n], slice(0, events[n].sizes["time"])) for n in names}
    out = {}
    for name, da in events.items():
        n = da.sizes["time"]
        blocks = split_blocks(n, nc.val_fraction, nc.test_fraction)
        out[name] = (da, slice(0, n) if period == "all" else blocks[period])
    return out


def _pixel_km(da: xr.DataArray) -> float | None:
    """Grid spacing in km: ``attrs["pixel_km"]``, else from the ``x`` coordinate's units."""
    if "pixel_km" in da.attrs:
        return float(da.attrs["pixel_km"])
    if "x" not in da.coords or da.sizes["x"] < 2:
        return None
    units = str(da["x"].attrs.get("units", "")).strip().lower()
    factor = {"m": 1e-3, "meter": 1e-3, "metre": 1e-3, "meters": 1e-3, "km": 1.0}.get(units)
    if factor is None:
        return None
    x = np.asarray(da["x"].values, dtype=np.float64)
    return float(abs(np.median(np.diff(x))) * factor)


def _band_ratio(
    scores: dict[str, LeadScores], lead: int, band: tuple[float, float], km: float | None
) -> dict[str, Any]:
    """Power of each method over the observed power in a wavelength band at one lead."""
    out: dict[str, Any] = {"lead_index": lead, "band_km": list(band), "pixel_km": km}
    first = next(iter(scores.values()))
    if km is None or first.psd_truth[lead] is None or not first.freq.size:
        out["note"] = "no spectrum (grid spacing unknown or lead not observed)"
        return out
    freq = first.freq[1:]
    wavelength = km / freq
    inside = (wavelength >= band[0]) & (wavelength <= band[1])
    truth = float(first.psd_truth[lead][1:][inside].sum())
    for m, sc in scores.items():
        if sc.psd[lead] is not None and truth > 0:
            out[m] = float(sc.psd[lead][1:][inside].sum()) / truth
    out["wavelengths_km"] = wavelength[inside].tolist()
    return out


def verify_nowcast(
    checkpoint: str | Path,
    *,
    source: VariableSource | xr.DataArray | None = None,
    period: str = "test",
    hours: float | None = None,
    every: int | None = None,
    extrapolation: bool = True,
    prob_match: bool | None = None,
    n_boot: int = 1000,
    out_dir: str | Path | None = None,
    echo: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Score the model, persistence and extrapolation per lead time, per event and pooled.

    Parameters
    ----------
    checkpoint
        A nowcast checkpoint.
    source
        Radar file or DataArray; default: the checkpoint's events (or the
        embedded generator).
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
    n_boot
        Bootstrap resamples of the init times for the intervals (0: none).
    out_dir
        Run directory: writes ``metrics/verify_nowcast.json`` and
        ``figures/nowcast_scores.png``, ``figures/nowcast_maps.png``.
    echo
        Where progress lines go.

    Returns
    -------
    dict
        Pooled over the verified events: ``leads`` (minutes), ``inits`` (ISO),
        ``methods`` {name: per-lead scores
        (:meth:`~downpour.metrics.leadtime.LeadScores.compute`)},
        ``intervals`` {name: per-lead CSI, FSS and MAE with bootstrap
        intervals over inits}, ``paired`` {``model-<baseline>``: per-lead
        paired differences with intervals}, ``beats_persistence`` (per lead);
        ``events`` {name: the same per event (without ``paired``) and
        ``rapsd_band`` (power ratio to the observation at 8–16 km at the
        longest lead)}; ``range_warnings``, ``notes``, ``thresholds``,
        ``scales``, ``freq``.
    """
    net, cfg, stats = load_nowcaster(checkpoint)
    nc = cfg.nowcast
    targets = _targets(nc, source, period)
    first = next(iter(targets.values()))[0]
    step_ns = int(first.attrs.get("step_minutes", nc.step_minutes)) * _NS_PER_MIN
    n_leads = int(round((hours if hours is not None else nc.hours) * 60 * _NS_PER_MIN / step_ns))
    methods = ["model", "persistence"]
    notes: list[str] = []
    if extrapolation:
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # it prints a line on import
                import pysteps  # noqa: F401

            methods.append("extrapolation")
        except ImportError:
            notes.append("pysteps is not installed: no extrapolation baseline")
    pm = nc.prob_match if prob_match is None else prob_match
    context = {
        "net": net,
        "n_frames": nc.n_frames,
        "transform": nc.transform,
        "prob_match": pm,
        "prob_match_smooth": nc.prob_match_smooth,
    }
    normalise = partial(rain_transform, kind=nc.transform)
    range_msgs: list[str] = []
    example: dict[str, Any] = {}
    best_rain = -1.0
    per_event: dict[str, dict[str, LeadScores]] = {}
    event_inits: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    for name, (da, block) in targets.items():
        inits = _verification_inits(da, nc.n_frames, block, every or nc.verify_every)
        if inits.size == 0:
            notes.append(f"event {name}: no init time in the {period} period")
            continue
        scores = {m: LeadScores(n_leads, nc.thresholds, nc.fss_scales, normalise) for m in methods}
        times = da["time"].values.astype("datetime64[ns]")
        index = {int(v): i for i, v in enumerate(times.astype(np.int64))}
        for init in inits:
            lead_t = init + (np.arange(1, n_leads + 1) * step_ns).astype("timedelta64[ns]")
            rows = [index.get(int(v)) for v in lead_t.astype(np.int64)]
            ok = [r is not None and block.start <= r < block.stop for r in rows]
            k_max = next((j for j, good in enumerate(ok) if not good), n_leads)
            if k_max == 0:
                continue
            truth = np.stack([np.asarray(da.values[r], dtype=np.float64) for r in rows[:k_max]])
            i = index[int(init.astype(np.int64))]
            if getattr(net, "needs_motion", False):  # one optical flow for model and baseline
                context["motion"] = init_motion(da, i, nc.n_frames)
            with warnings.catch_warnings(record=True) as caught:
                fc = {m: nowcast(m, da, i, k_max, **context) for m in _SCORED}
                out_of_range = range_messages(fc["model"], da, i, stats, nc.range_factor)
            msgs = [str(w.message) for w in caught] + out_of_range
            range_msgs += [f"{name} init {iso_minute(init)}: {msg}" for msg in msgs]
            for m in [m for m in methods if m not in _SCORED]:  # optional baselines
                try:
                    fc[m] = nowcast(m, da, i, k_max, **context)
                except DownpourError as exc:
                    methods.remove(m)
                    scores.pop(m)
                    for other in per_event.values():
                        other.pop(m, None)
                    notes.append(f"{m} baseline skipped: {exc}")
            for m in methods:
                scores[m].update(fc[m]["precip_rate"].values, truth, init)
            rain = float(np.nanmean(truth[0]))
            if rain > best_rain:
                best_rain = rain
                maps = {m: fc[m]["precip_rate"].values for m in methods}
                example = {"init": init, "truth": truth, "event": name, **maps}
        per_event[name] = scores
        event_inits[name] = inits
    if not per_event:
        raise DownpourError(
            f"nowcast verify: no init time in the {period} period of "
            f"{', '.join(targets) or 'any event'} has {nc.n_frames} clean frames before it; "
            "use --period all, a longer source or a smaller nowcast.n_frames"
        )
    n_inits = sum(v.size for v in event_inits.values())
    echo(
        f"verified {n_inits} init times of {len(per_event)} event(s) × {n_leads} leads in "
        f"{time.perf_counter() - t0:.0f} s"
    )
    pooled = {m: reduce(LeadScores.merge, [sc[m] for sc in per_event.values()]) for m in methods}
    heavy = _thr_name(max(nc.thresholds))
    last = n_leads - 1
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "period": period,
        "in_sample": period == "all",
        "step_minutes": step_ns // _NS_PER_MIN,
        "leads": [int(k * step_ns // _NS_PER_MIN) for k in range(1, n_leads + 1)],
        "inits": [iso_minute(t) for v in event_inits.values() for t in v],
        "thresholds": list(nc.thresholds),
        "scales": list(nc.fss_scales),
        "transform": nc.transform,
        "prob_match": bool(pm),
        **(pooled_summary := _summary(pooled, heavy, n_boot)),
        "freq": pooled["model"].freq.tolist() if not pooled["model"].mixed_grids else [],
        "events": {},
        "range_warnings": range_msgs,
        "notes": notes,
    }
    for name, scores in per_event.items():
        da = targets[name][0]
        lead = max((k for k in range(n_leads) if scores["model"].acc[k].n_days), default=last)
        one = len(per_event) == 1  # the pooled scores are this event's: no second bootstrap
        result["events"][name] = {
            "inits": [iso_minute(t) for t in event_inits[name]],
            **(pooled_summary if one else _summary(scores, heavy, n_boot)),
            "rapsd_band": _band_ratio(scores, lead, RAPSD_BAND_KM, _pixel_km(da)),
        }
    if out_dir is not None:
        from downpour.report.nowcast_figures import plot_nowcast  # matplotlib: only when writing

        run = RunDir(out_dir)
        atomic_write_text(run.metrics("verify_nowcast"), json.dumps(result, indent=1))
        plot_nowcast(result, example, run)
    return result


def _summary(scores: dict[str, LeadScores], heavy: str, n_boot: int) -> dict[str, Any]:
    """Per-lead scores, bootstrap intervals, paired differences and the persistence check."""
    methods = {m: s.compute() for m, s in scores.items()}
    out: dict[str, Any] = {"methods": methods, "intervals": {}, "paired": {}}
    out["beats_persistence"] = [
        beats_persistence(mo, pe, heavy)
        for mo, pe in zip(methods["model"], methods["persistence"], strict=True)
    ]
    if n_boot <= 0:
        return out
    for m, sc in scores.items():
        out["intervals"][m] = [
            _interval_leaf(acc.compute_with_intervals(n_boot, tail_fit=False)["intervals"])
            if acc.n_days >= 2
            else None
            for acc in sc.acc
        ]
    for base in [m for m in scores if m != "model"]:
        out["paired"][f"model-{base}"] = [
            _interval_leaf(paired_difference(a, b, n_boot=n_boot)) if a.n_days >= 2 else None
            for a, b in zip(scores["model"].acc, scores[base].acc, strict=True)
        ]
    return out


def _interval_leaf(tree: dict[str, Any]) -> dict[str, Any]:
    """Keep CSI per threshold, FSS per threshold and scale, and MAE of a score tree."""
    return {
        "csi": {t: v["csi"] for t, v in tree["categorical"].items()},
        "fss": {t: {int(s): v for s, v in d.items()} for t, d in tree["fss"].items()},
        "mae": tree["continuous"]["mae"],
    }


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
