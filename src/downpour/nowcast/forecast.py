"""Radar nowcasting API: train the U-Net, roll it forward, baselines, write forecasts.

``train_nowcast`` trains :class:`~downpour.models.nowcast.NowcastUNet` on a
radar sequence (``nowcast.target``, or the embedded generator) with the shared
Lightning trainer; ``forecast`` loads a checkpoint and rolls the model forward
from an init time, feeding its predictions back; ``persistence_forecast`` and
``extrapolation_forecast`` (pysteps Lucas-Kanade optical flow + semi-Lagrangian
extrapolation) are the baselines; ``write_forecast`` stores any of them.
Verification lives in :mod:`downpour.nowcast.verify`.

Conventions
-----------
- ``init`` is the time of the **last observed frame**; lead ``k`` is valid at
  ``init + k · step``. The ``n_frames`` frames ending at ``init`` must exist,
  be exactly one step apart and be complete (no missing native frame).
- A forecast is an ``xr.Dataset`` with ``precip_rate`` (mm/h, dims
  ``(lead_time, y, x)``), coordinates ``lead_time`` (timedelta), ``time``
  (valid time, along ``lead_time``), ``init_time`` and the source's ``y``/``x``
  (or ``lat``/``lon``); cells outside the radar domain (NaN at ``init``) are
  NaN; per-lead ``domain_max``, ``domain_mean``, ``wet_fraction`` diagnostics.
- Range check: a lead whose max exceeds ``range_factor`` × the training max,
  or whose domain mean exceeds ``range_factor`` × the largest training
  frame mean (exploding), or whose wet fraction (> 0.1 mm/h) or max drops
  below 5% of the init frame's while that had rain (vanishing), raises a
  :class:`RolloutRangeWarning` naming the lead and the numbers; the messages
  are also kept in ``attrs["range_warnings"]``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr
from torch import nn

from downpour.config import Config, VariableSource, save_config
from downpour.nowcast.radar import (
    inverse_rain_transform,
    no_rain_value,
    rain_transform,
    temporal_encoding,
)
from downpour.core.errors import DownpourError
from downpour.training.fit import EpochTimer, TrainResult, collect_result, write_train_record
from downpour.nowcast.module import (
    WET,
    NowcastDataModule,
    NowcastModule,
    build_nowcast_net,
    load_nowcast_source,
    nowcast_train_config,
    rollout_batch,
)
from downpour.training.trainer import build_trainer, processes_per_node
from downpour.core.files import write_dataset

__all__ = [
    "RolloutRangeWarning",
    "check_rollout_range",
    "extrapolation_forecast",
    "forecast",
    "init_index",
    "load_nowcaster",
    "persistence_forecast",
    "probability_match",
    "run_forecast",
    "train_nowcast",
    "valid_inits",
    "write_forecast",
]

_VANISH_RATIO = 0.05
_RANK_SMOOTH = 3  # probability matching ranks the 3×3 mean of each forecast step
_NS_PER_MIN = 60 * 10**9


class RolloutRangeWarning(UserWarning):
    """A rollout left the range of the training data (exploding or vanishing rain)."""


# ------------------------------------------------------------------ training


def train_nowcast(
    cfg: Config,
    run_dir: str | Path,
    *,
    resume: str | Path | None = None,
    echo: Callable[[str], Any] = print,
    **trainer_overrides: Any,
) -> TrainResult:
    """Train the nowcaster of ``cfg`` in ``run_dir``.

    Parameters
    ----------
    cfg
        Resolved configuration (``nowcast``; ``train`` for seed, clipping,
        precision, devices, checkpoint interval, warm-up).
    run_dir
        Run directory: ``config.yaml``, ``checkpoints/nowcast/``,
        ``logs/nowcast/``, ``metrics/train_nowcast.json``.
    resume
        A checkpoint to continue from (continues exactly).
    echo
        Where progress lines go.
    **trainer_overrides
        Passed to the Lightning trainer (e.g. ``max_epochs``, ``enable_progress_bar``).

    Returns
    -------
    TrainResult
    """
    run_dir = Path(run_dir)
    if resume is not None and not Path(resume).is_file():
        raise DownpourError(f"--resume: checkpoint {resume} not found")
    nc = cfg.nowcast
    da = load_nowcast_source(nc)
    save_config(cfg, run_dir / "config.yaml")
    train_cfg = nowcast_train_config(cfg)
    L.seed_everything(train_cfg.seed, workers=True, verbose=False)
    dm = NowcastDataModule(da, nc, seed=train_cfg.seed, num_workers=train_cfg.num_workers)
    world = train_cfg.num_nodes * processes_per_node(train_cfg)
    batches = math.ceil(math.ceil(len(dm.train_set) / world) / nc.batch_size)  # per rank
    if nc.max_batches_per_epoch:
        batches = min(batches, nc.max_batches_per_epoch)
    module = NowcastModule(cfg, dm.stats, steps_per_epoch=math.ceil(batches / nc.accumulate))
    n_params = sum(p.numel() for p in module.net.parameters())
    t = da["time"].values
    echo(
        f"nowcast {cfg.name}: {n_params:,} parameters at {da.sizes['y']}×{da.sizes['x']}, "
        f"{nc.step_minutes}-min steps, {t.size} frames {_iso(t[0])} .. {_iso(t[-1])}; "
        f"{len(dm.train_set)} training / {len(dm.val_set)} validation windows, "
        f"{batches} batches of {nc.batch_size} × accumulate {nc.accumulate} per epoch"
    )
    timer = EpochTimer()
    callbacks = [timer, *trainer_overrides.pop("extra_callbacks", [])]
    trainer = build_trainer(
        train_cfg, run_dir, kind="nowcast", extra_callbacks=callbacks, **trainer_overrides
    )
    trainer.fit(module, datamodule=dm, ckpt_path=str(resume) if resume else None)
    result = collect_result(trainer, timer, run_dir, n_params)
    write_train_record(trainer, run_dir, "nowcast", asdict(result))
    return result


def load_nowcaster(checkpoint: str | Path) -> tuple[nn.Module, Config, dict[str, float]]:
    """Load a nowcast checkpoint.

    Returns
    -------
    (NowcastUNet, Config, dict)
        The network in eval mode, the run's config and its training statistics.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise DownpourError(f"--checkpoint: {path} not found")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    payload = ckpt.get("downpour") if isinstance(ckpt, dict) else None
    if not payload or payload.get("kind") != "nowcast":
        kind = payload.get("kind") if payload else "not a downpour checkpoint"
        raise DownpourError(
            f"--checkpoint: {path} is not a nowcast checkpoint ({kind}); use one from "
            "RUN/checkpoints/nowcast/"
        )
    cfg = Config.model_validate(payload["config"])
    net = build_nowcast_net(cfg.nowcast)
    state = {k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    net.load_state_dict(state)
    return net.eval(), cfg, dict(payload["stats"])


# ------------------------------------------------------------------ init times


def _iso(t: Any) -> str:
    return str(np.datetime_as_string(np.datetime64(t, "ns"), unit="m"))


def _step_ns(da: xr.DataArray) -> int:
    minutes = da.attrs.get("step_minutes")
    if minutes is None:
        t = da["time"].values.astype("datetime64[ns]").astype(np.int64)
        if t.size < 2:
            raise DownpourError("nowcast source: cannot tell the time step of a single frame")
        return int(np.median(np.diff(t)))
    return int(minutes) * _NS_PER_MIN


def valid_inits(da: xr.DataArray, n_frames: int) -> np.ndarray:
    """Return the times that can start a forecast (``n_frames`` clean frames end there).

    A frame is clean when it is complete (coordinate ``complete``, if present)
    and holds at least one finite value.

    Returns
    -------
    numpy.ndarray
        datetime64[ns] init times, increasing.
    """
    t = da["time"].values.astype("datetime64[ns]")
    clean = np.isfinite(np.asarray(da.values)).any(axis=(1, 2))
    if "complete" in da.coords:
        clean &= np.asarray(da["complete"].values, dtype=bool)
    step = _step_ns(da)
    run = np.zeros(t.size, dtype=np.int64)
    ti = t.astype(np.int64)
    for i in range(t.size):  # one pass over frames, not pixels
        joined = i > 0 and ti[i] - ti[i - 1] == step
        run[i] = (run[i - 1] + 1 if joined else 1) if clean[i] else 0
    return t[run >= n_frames]


def _ranges(times: np.ndarray, step: int) -> str:
    if times.size == 0:
        return "none"
    ti = times.astype("datetime64[ns]").astype(np.int64)
    cut = np.flatnonzero(np.diff(ti) != step) + 1
    parts = [
        f"{_iso(seg[0])} .. {_iso(seg[-1])}" if seg.size > 1 else _iso(seg[0])
        for seg in np.split(times, cut)
    ]
    shown = parts if len(parts) <= 6 else [*parts[:3], "...", *parts[-2:]]
    return ", ".join(shown)


def init_index(da: xr.DataArray, init: Any, n_frames: int) -> int:
    """Index of ``init`` in ``da.time``, checked to start a forecast.

    Raises
    ------
    DownpourError
        When ``init`` is not a frame of the source, or the ``n_frames`` frames
        ending at it are not clean and consecutive; the message lists the
        valid init times.
    """
    try:
        t0 = np.datetime64(init, "ns") if not isinstance(init, np.datetime64) else init
        t0 = t0.astype("datetime64[ns]")
    except ValueError:
        raise DownpourError(f"--init {init!r} is not a date-time (e.g. 2021-07-03T12:00)") from None
    times = da["time"].values.astype("datetime64[ns]")
    ok = valid_inits(da, n_frames)
    if not (ok == t0).any():
        step = _step_ns(da)
        pos = int(np.searchsorted(times, t0))
        if pos >= times.size or times[pos] != t0:
            where = "is not a frame of the source"
        elif pos < n_frames - 1:
            where = f"has only {pos + 1} frame(s) up to it; the model needs {n_frames}"
        else:
            where = (
                f"does not have {n_frames} complete, consecutive frames ending at it (a gap "
                "or missing data)"
            )
        raise DownpourError(
            f"--init {_iso(t0)} {where} ({times.size} frames {_iso(times[0])} .. "
            f"{_iso(times[-1])}, every {step // _NS_PER_MIN} min); valid init times: "
            f"{_ranges(ok, step)}"
        )
    return int(np.searchsorted(times, t0))


# ------------------------------------------------------------------ forecasts


def _forecast_dataset(
    rate: np.ndarray, da: xr.DataArray, i: int, step: int, method: str
) -> xr.Dataset:
    """Wrap ``(K, H, W)`` mm/h leads as the forecast dataset (domain NaN outside the radar)."""
    k = rate.shape[0]
    domain = np.isfinite(np.asarray(da.values[i]))
    rate = np.where(domain, np.clip(rate, 0.0, None), np.nan).astype(np.float32)
    init = da["time"].values[i].astype("datetime64[ns]")
    leads = (np.arange(1, k + 1, dtype=np.int64) * step).astype("timedelta64[ns]")
    coords: dict[str, Any] = {
        str(c): da[c] for c in da.coords if set(da[c].dims) <= {"y", "x"} and da[c].dims
    }
    coords.update(lead_time=("lead_time", leads), time=("lead_time", init + leads))
    coords["init_time"] = init
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN leads
        diag = {
            "domain_max": np.nanmax(rate, axis=(1, 2)),
            "domain_mean": np.nanmean(rate, axis=(1, 2)),
            "wet_fraction": np.nanmean(np.where(domain, rate > WET, np.nan), axis=(1, 2)),
        }
    data = {
        "precip_rate": (
            ("lead_time", "y", "x"),
            rate,
            {"units": "mm/h", "long_name": f"rain rate, {method} nowcast"},
        ),
        **{
            name: ("lead_time", v.astype(np.float32), {"units": "mm/h"}) for name, v in diag.items()
        },
    }
    data["wet_fraction"][2]["units"] = "1"
    attrs = {
        "method": method,
        "init_time": _iso(init),
        "step_minutes": int(step // _NS_PER_MIN),
        "source": str(da.attrs.get("source", "")),
        "convention": "init_time = last observed frame; valid time = init_time + lead_time",
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)


def check_rollout_range(
    ds: xr.Dataset,
    stats: dict[str, float],
    *,
    init_wet: float,
    init_max: float,
    factor: float = 2.0,
) -> list[str]:
    """Return messages for the first exploding and the first vanishing lead of a forecast.

    Exploding: domain max > ``factor`` × training max, or domain mean >
    ``factor`` × largest training frame mean. Vanishing (only when the init
    frame had rain): wet fraction (> 0.1 mm/h) below 5% of the init frame's,
    or domain max below 5% of the init frame's (rain smeared into drizzle).

    Parameters
    ----------
    ds
        A forecast (:func:`run_forecast`) with its per-lead diagnostics.
    stats
        Training statistics (``max``, ``mean_max``; :func:`training_stats`).
    init_wet, init_max
        Wet fraction (> 0.1 mm/h) and max (mm/h) of the init frame.
    factor
        ``nowcast.range_factor``.

    Returns
    -------
    list of str
        Empty when every lead stays in range.
    """
    out: list[str] = []
    mx, mean, wet = (
        ds[v].values.astype(np.float64) for v in ("domain_max", "domain_mean", "wet_fraction")
    )
    lim_max, lim_mean = factor * stats["max"], factor * stats["mean_max"]
    explode = np.flatnonzero((mx > lim_max) | (mean > lim_mean))
    if explode.size:
        j = int(explode[0])
        out.append(
            f"the rollout leaves the training range (exploding rain) at lead "
            f"{_lead(ds, j)}: domain max {mx[j]:.1f} mm/h (limit {factor:g} × training max "
            f"{stats['max']:.1f} = {lim_max:.1f}), domain mean {mean[j]:.3f} mm/h (limit "
            f"{factor:g} × largest training frame mean {stats['mean_max']:.3f} = {lim_mean:.3f}); "
            f"{explode.size} of {mx.size} leads out of range"
        )
    if init_wet >= 1e-3 and init_max > WET:
        vanish = np.flatnonzero((wet < _VANISH_RATIO * init_wet) | (mx < _VANISH_RATIO * init_max))
        if vanish.size:
            j = int(vanish[0])
            out.append(
                f"the rollout fades to no rain (vanishing) at lead {_lead(ds, j)}: wet "
                f"fraction {wet[j]:.4f} (init {init_wet:.4f}), domain max {mx[j]:.2f} mm/h "
                f"(init {init_max:.2f}; limit {_VANISH_RATIO:g} × the init frame's), domain "
                f"mean {mean[j]:.4f} mm/h; {vanish.size} of {wet.size} leads"
            )
    return out


def _lead(ds: xr.Dataset, j: int) -> str:
    minutes = int(ds["lead_time"].values[j].astype("timedelta64[m]").astype(np.int64))
    return f"+{minutes // 60:d}:{minutes % 60:02d} h (valid {_iso(ds['time'].values[j])})"


def probability_match(
    field: torch.Tensor, reference: torch.Tensor, valid: torch.Tensor, *, smooth: int = 1
) -> torch.Tensor:
    """Give ``field`` the value distribution of ``reference`` over ``valid``, keeping its ranks.

    The ``k``-th smallest valid value of ``field`` becomes the ``k``-th
    smallest valid value of ``reference`` (empirical CDF matching, as
    pysteps' ``probmatching.nonparam_match_empirical_cdf``): where rain falls
    stays the network's choice, how much rain and how sharp is the
    observation's. It keeps a rollout from fading or exploding by
    construction. Cells outside ``valid`` are unchanged.

    Parameters
    ----------
    field, reference
        ``(H, W)``.
    valid
        ``(H, W)`` bool.
    smooth
        Rank the ``smooth × smooth`` running mean of ``field`` instead of
        ``field`` itself (odd; 1 = exact ranks). A smeared forecast is nearly
        flat, and exact ranks of its pixel-scale noise turn into speckle
        that grows when fed back; smoothed ranks keep coherent rain areas.

    Returns
    -------
    torch.Tensor
        ``(H, W)``.

    Examples
    --------
    >>> f = torch.tensor([[0.2, 0.9], [0.5, 0.1]])
    >>> r = torch.tensor([[0.0, 0.0], [3.0, 8.0]])
    >>> probability_match(f, r, torch.ones(2, 2, dtype=torch.bool)).tolist()
    [[0.0, 8.0], [3.0, 0.0]]
    """
    out = field.clone()
    rank = field
    if smooth > 1:
        rank = F.avg_pool2d(
            field[None, None], smooth, stride=1, padding=smooth // 2, count_include_pad=False
        )[0, 0]
    flat, idx = out.reshape(-1), valid.reshape(-1).nonzero().squeeze(1)
    order = torch.argsort(rank.reshape(-1)[idx], stable=True)
    flat[idx[order]] = torch.sort(reference.reshape(-1)[idx]).values.to(out.dtype)
    return out


def run_forecast(
    net: nn.Module,
    da: xr.DataArray,
    *,
    init: Any,
    steps: int,
    n_frames: int,
    transform: Any,
    stats: dict[str, float] | None = None,
    range_factor: float = 2.0,
    prob_match: bool = False,
) -> xr.Dataset:
    """Roll ``net`` forward ``steps`` steps from ``init``, feeding predictions back.

    Parameters
    ----------
    net
        Maps ``(1, n_frames, H, W)`` transformed frames and ``(1, 4)`` temporal
        encoding of the target time to the next frame ``(1, 1, H, W)``.
    da
        Rain rate in mm/h, dims ``(time, y, x)``, at the model step.
    init
        Time of the last observed frame (see the module docstring).
    steps
        Number of leads.
    n_frames, transform
        The network's input frames and rain transform.
    stats
        Training statistics for the range check (none: no check).
    range_factor
        Limit factor of :func:`check_rollout_range`.
    prob_match
        Give every prediction, before it is fed back, the value distribution
        of the init frame over the radar domain (:func:`probability_match`,
        ranking the 3×3 mean of the prediction).

    Returns
    -------
    xarray.Dataset
        The forecast (module docstring); a :class:`RolloutRangeWarning` is
        issued for a lead out of range.
    """
    if steps < 1:
        raise DownpourError(f"nowcast: the forecast needs at least one step, got {steps}")
    i = init_index(da, init, n_frames)
    step = _step_ns(da)
    frames = np.asarray(da.values[i - n_frames + 1 : i + 1], dtype=np.float32)
    x = rain_transform(frames, transform)
    x = np.where(np.isfinite(x), x, np.float32(no_rain_value(transform))).astype(np.float32)
    t0 = da["time"].values[i].astype("datetime64[ns]")
    valid = t0 + (np.arange(1, steps + 1, dtype=np.int64) * step).astype("timedelta64[ns]")
    enc = torch.from_numpy(temporal_encoding(valid))[None]
    param = next(net.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    post = None
    if prob_match:
        domain = torch.from_numpy(np.isfinite(frames[-1]))
        reference = torch.from_numpy(x[-1]).to(dtype)

        def post(pred: torch.Tensor) -> torch.Tensor:
            matched = probability_match(pred[0, 0], reference, domain, smooth=_RANK_SMOOTH)
            return matched[None, None]

    with torch.no_grad():
        inputs = torch.from_numpy(x)[None].to(dtype)
        preds = rollout_batch(net, inputs, enc.to(dtype), post=post)[0]
    rate = inverse_rain_transform(preds.double().numpy(), transform)
    ds = _forecast_dataset(rate, da, i, step, "model")
    ds.attrs["prob_match"] = int(prob_match)
    if stats is not None:
        last = frames[-1]
        init_wet = float(np.nanmean(np.where(np.isfinite(last), last > WET, np.nan)))
        init_max = float(np.nanmax(last))
        msgs = check_rollout_range(
            ds, stats, init_wet=init_wet, init_max=init_max, factor=range_factor
        )
        ds.attrs["range_warnings"] = json.dumps(msgs)
        for msg in msgs:
            warnings.warn(msg, RolloutRangeWarning, stacklevel=2)
    return ds


def _steps_for(hours: float | None, da: xr.DataArray, i: int) -> int:
    step = _step_ns(da)
    if hours is None:  # to the end of the sequence
        end = da["time"].values[-1].astype("datetime64[ns]").astype(np.int64)
        start = da["time"].values[i].astype("datetime64[ns]").astype(np.int64)
        return int((end - start) // step)
    steps = hours * 60 * _NS_PER_MIN / step
    if abs(steps - round(steps)) > 1e-6:
        raise DownpourError(
            f"--hours {hours:g} is not a whole number of {step // _NS_PER_MIN}-min steps"
        )
    return int(round(steps))


def forecast(
    checkpoint: str | Path,
    *,
    init: Any,
    hours: float | None = None,
    source: VariableSource | xr.DataArray | None = None,
) -> xr.Dataset:
    """Nowcast from a checkpoint: roll the model forward from ``init`` for ``hours``.

    Parameters
    ----------
    checkpoint
        A nowcast checkpoint (``RUN/checkpoints/nowcast/*.ckpt``).
    init
        Time of the last observed frame (string or datetime64).
    hours
        Forecast length; ``None``: to the end of the source's time axis.
    source
        Radar file or DataArray (mm/h at the model step); default: the
        checkpoint's ``nowcast.target`` (or the embedded generator).

    Returns
    -------
    xarray.Dataset
        See :func:`run_forecast`.
    """
    net, cfg, stats = load_nowcaster(checkpoint)
    nc = cfg.nowcast
    da = load_nowcast_source(nc, source)
    i = init_index(da, init, nc.n_frames)
    steps = _steps_for(hours, da, i)
    if steps < 1:
        raise DownpourError(
            f"--init {_iso(da['time'].values[i])} is the last frame of the source: nothing to "
            "forecast to its end; give --hours"
        )
    ds = run_forecast(
        net,
        da,
        init=da["time"].values[i],
        steps=steps,
        n_frames=nc.n_frames,
        transform=nc.transform,
        stats=stats,
        range_factor=nc.range_factor,
        prob_match=nc.prob_match,
    )
    ds.attrs["checkpoint"] = str(checkpoint)
    return ds


def persistence_forecast(da: xr.DataArray, *, init: Any, steps: int) -> xr.Dataset:
    """Repeat the last observed frame at every lead (layout of :func:`run_forecast`)."""
    i = init_index(da, init, 1)
    rate = np.repeat(np.asarray(da.values[i], dtype=np.float64)[None], steps, axis=0)
    return _forecast_dataset(rate, da, i, _step_ns(da), "persistence")


def extrapolation_forecast(
    da: xr.DataArray, *, init: Any, steps: int, n_frames: int = 4
) -> xr.Dataset:
    """Nowcast by pysteps optical-flow extrapolation (Lucas-Kanade, semi-Lagrangian).

    The motion field is estimated from the ``n_frames`` frames ending at
    ``init`` in dBR (``pysteps.motion.get_method("LK")``), and the init frame
    (mm/h, no-data as 0) is advected ``steps`` steps
    (``pysteps.nowcasts.get_method("extrapolation")``). Needs pysteps (and
    OpenCV for Lucas-Kanade).
    """
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pysteps prints a line on import
            from pysteps import motion, nowcasts
    except ImportError:
        raise DownpourError(
            "the extrapolation baseline needs pysteps: pip install 'downpour[verify]'"
        ) from None
    n = max(2, n_frames)
    i = init_index(da, init, n)
    frames = np.asarray(da.values[i - n + 1 : i + 1], dtype=np.float64)
    dbr = rain_transform(np.nan_to_num(frames, nan=0.0), "dbr")
    with warnings.catch_warnings():  # LK's outlier filter warns on sparse or flat fields
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            velocity = motion.get_method("LK")(dbr, verbose=False)
        except Exception as exc:  # pysteps raises MissingOptionalDependency without OpenCV
            raise DownpourError(f"pysteps Lucas-Kanade motion failed: {exc}") from None
        last = np.nan_to_num(frames[-1], nan=0.0)
        rate = nowcasts.get_method("extrapolation")(last, velocity, steps)
    return _forecast_dataset(np.nan_to_num(rate, nan=0.0), da, i, _step_ns(da), "extrapolation")


def write_forecast(ds: xr.Dataset, path: str | Path, fmt: str | None = None) -> Path:
    """Write a forecast atomically as zarr (v3) or NetCDF.

    Parameters
    ----------
    ds
        A forecast dataset.
    path
        Destination; ``fmt=None`` picks NetCDF for a ``.nc`` suffix, zarr otherwise.
    fmt
        ``"zarr"`` or ``"netcdf"``.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    fmt = fmt or ("netcdf" if path.suffix == ".nc" else "zarr")
    if fmt not in ("zarr", "netcdf"):
        raise DownpourError(f"--format {fmt!r}: valid formats are zarr, netcdf")
    return write_dataset(ds, path, fmt, "precip_rate")
