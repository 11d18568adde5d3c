"""``downpour downscale`` throughput: end-to-end days/s beside the bare forward, memory by years.

The job is that of ``downpour downscale`` on a GCM's scenario files: a
trained SRDRN (the ``demo`` preset's, 156×132 from 13×11, built in a
temporary folder by :func:`build_checkpoint` with two training steps: the
weights do not change the cost) applied to N years of daily predictors
written by :func:`write_predictors` (the model's variables, precipitation
in kg m-2 s-1, longitudes 0…360) on a grid of their own, 1.25 times coarser
than the low-res grid and covering it (:func:`own_grid`), so that unit
conversion and regridding run; and to the same predictors on the low-res
grid itself (no regridding). :func:`bench_downscale` reports

- ``forward``: days/s of the bare network, ``net(x)`` on normalised random
  inputs, batch and threads as ``downscale`` uses them (its checkpoint,
  memory format and ``torch.no_grad``), after one warm-up batch;
- ``runs``: for each case, the wall time of one
  :func:`~downpour.downscaling.downscale.downscale` call writing NetCDF
  (loading, reading, regridding, forward, masking, writing: everything), its
  days/s and ``ratio`` = days/s / the bare forward's days/s (the issue's
  target: 0.8 or more, reading and writing never the bottleneck), the time
  split (``read``: :meth:`PredictorSet.block`, reading, converting and
  regridding; ``forward``: the model's ``predict``, normalisation included;
  ``write``: :meth:`BlockWriter.write`; ``other``: the rest, set-up and
  range counts included) and the peak resident memory.

Each ``downscale`` call runs in a fresh process (``spawn``), whose own
``ru_maxrss`` is its peak: runs of 1 and 10 years do not share a high-water
mark, and bounded memory shows as equal peaks.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import logging
import math
import multiprocessing
import resource
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from downpour.bench.machine import rss_mb
from downpour.config import load_config
from downpour.core.checkpoint import read_checkpoint
from downpour.core.rundir import RunDir
from downpour.downscaling.model_facts import Facts

__all__ = [
    "bench_downscale",
    "build_checkpoint",
    "days_per_second",
    "forward_rate",
    "own_grid",
    "write_predictors",
]

#: A one-year embedded dataset, split by dates (the demo preset splits 8 years).
_ONE_YEAR = [
    "data.embedded.n_years=1",
    "data.splits.train={start: 2001-01-01, end: 2001-08-31}",
    "data.splits.val={start: 2001-09-01, end: 2001-10-31}",
    "data.splits.test={start: 2001-11-01, end: 2001-12-31}",
]
#: Two training steps: enough for a checkpoint that carries its store facts.
_TWO_STEPS = ["srdrn.epochs=1", "srdrn.batches_per_epoch=2", "srdrn.batch_size=8"]
#: Seconds per day of the precipitation units written (``kg m-2 s-1`` ← mm/day or mm/h).
_SECONDS = {"mm/day": 86400.0, "mm/h": 3600.0}


def days_per_second(days: int, seconds: float) -> float:
    """Return ``days / seconds`` (0 for no time measured).

    Examples
    --------
    >>> days_per_second(3650, 36.5)
    100.0
    """
    return days / seconds if seconds > 0 else 0.0


def own_grid(
    lat_lr: np.ndarray, lon_lr: np.ndarray, coarsen: float = 1.25
) -> tuple[np.ndarray, np.ndarray]:
    """Return a regular grid ``coarsen`` times coarser than the low-res centres, covering them.

    It starts half a spacing before the first low-res centre and ends at or
    beyond the last, so every low-res centre lies inside it (bilinear
    regridding needs no edge filling). Longitudes are returned in 0…360.

    Parameters
    ----------
    lat_lr, lon_lr
        Low-res cell centres, 1-D ``(h,)`` and ``(w,)``, ascending.
    coarsen
        Spacing of the new grid over the low-res spacing.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Latitudes and longitudes (1-D, ascending).

    Examples
    --------
    >>> lat, lon = own_grid(np.array([0.0, 1.0, 2.0]), np.array([-10.0, -9.0]), 1.5)
    >>> lat.tolist(), lon.tolist()
    ([-0.75, 0.75, 2.25], [349.25, 350.75, 352.25])
    """

    def axis(c: np.ndarray) -> np.ndarray:
        step = coarsen * float(np.median(np.diff(c))) if c.size > 1 else coarsen
        lo, hi = float(c.min()), float(c.max())
        n = math.ceil((hi - lo + step / 2) / step - 1e-9) + 1
        return lo - step / 2 + step * np.arange(n)

    return axis(np.asarray(lat_lr, float)), axis(np.asarray(lon_lr, float)) % 360.0


def write_predictors(
    path: Path,
    facts: Facts,
    years: int,
    lat: np.ndarray,
    lon: np.ndarray,
    *,
    start: str = "2071-01-01",
    seed: int = 0,
) -> int:
    """Write ``years`` of daily synthetic predictors of a model to a NetCDF file.

    Each of the model's predictor variables is written under its trained
    name, on ``lat``/``lon``, with values inside its training range:
    precipitation heavy-tailed and in ``kg m-2 s-1`` (as a GCM gives it, so
    the unit conversion runs), other variables uniform in the trained units.

    Parameters
    ----------
    path
        The file written.
    facts
        The model's facts (variables, units, training range).
    years
        Calendar years of days from ``start``.
    lat, lon
        The file's grid (1-D).
    start
        First day.
    seed
        Seed of :func:`numpy.random.default_rng`.

    Returns
    -------
    int
        The number of days written.
    """
    first = np.datetime64(start, "D")
    last = np.datetime64(f"{first.astype(object).year + years}-01-01", "D")
    time_ = np.arange(first, last, np.timedelta64(1, "D")).astype("datetime64[ns]")
    rng = np.random.default_rng(seed)
    size = (time_.size, lat.size, lon.size)
    data = {}
    for i, p in enumerate(facts.predictors):
        lo, hi = float(facts.lo[i]), float(facts.hi[i])
        u = rng.random(size, dtype=np.float32)
        if p["kind"] == "precip":
            values = (lo + (hi - lo) * u**4) / np.float32(_SECONDS[facts.units])
            attrs = {"units": "kg m-2 s-1", "standard_name": "precipitation_flux"}
        else:
            values, attrs = lo + (hi - lo) * u, {"units": str(p.get("units") or "1")}
        data[p["variable"]] = (("time", "lat", "lon"), values.astype(np.float32), attrs)
    coords = {"time": time_, "lat": ("lat", lat, {"units": "degrees_north"}),
              "lon": ("lon", lon, {"units": "degrees_east"})}  # fmt: skip
    xr.Dataset(data, coords=coords).to_netcdf(path)
    return int(time_.size)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence Lightning's start-up lines and warnings while the checkpoint is built."""
    log = logging.getLogger("lightning.pytorch")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def build_checkpoint(root: Path, preset: str = "demo", overrides: Sequence[str] = ()) -> Path:
    """Prepare one year of the embedded dataset in ``root`` and train an SRDRN for two steps.

    Returns the checkpoint (``root/checkpoints/srdrn_real/last.ckpt``), which
    carries the store facts ``downscale`` needs.
    """
    from downpour.downscaling.prepare import prepare
    from downpour.downscaling.train import train_srdrn

    cfg = load_config(preset, [*_ONE_YEAR, *_TWO_STEPS, *overrides])
    with _quiet():
        prepare(cfg, root)
        train_srdrn(cfg, root, echo=lambda *_: None, kind="srdrn_real", enable_progress_bar=False,
                    enable_model_summary=False, limit_val_batches=1)  # fmt: skip
    return RunDir(root).checkpoint("srdrn_real", "last")


def forward_rate(
    checkpoint: Path, days: int, batch_size: int = 64, device: str = "cpu", repeats: int = 2
) -> dict[str, Any]:
    """Days/s of the bare network on normalised random inputs, in batches of ``batch_size``.

    The network is the one ``downscale`` runs (:func:`~downpour.models.loading.load_model`:
    eval mode, the training's memory format) under ``torch.no_grad``; one
    batch warms up, then ``ceil(days / batch_size)`` batches are timed, the
    best of ``repeats`` (the network's speed on a shared machine, as the
    matmul ceiling is a best time).

    Returns
    -------
    dict
        ``days`` (timed), ``seconds`` (best), ``days_per_s``, ``parameters``.
    """
    from downpour.models.loading import load_model

    loaded = load_model(checkpoint, "srdrn")
    net = loaded.net.to(device)
    info = loaded.info
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, len(info["channels"]), *info["lowres_shape"], generator=gen)
    x = x.to(device)
    batches = max(1, math.ceil(days / batch_size))

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    seconds = float("inf")
    with torch.no_grad():
        net(x).float().cpu()
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            for _ in range(batches):
                net(x).float().cpu()
            sync()
            seconds = min(seconds, time.perf_counter() - t0)
    n = batches * batch_size
    return {"days": n, "seconds": seconds, "days_per_s": days_per_second(n, seconds),
            "parameters": sum(p.numel() for p in net.parameters())}  # fmt: skip


def _timed(fn: Callable[..., Any], split: dict[str, float], key: str) -> Callable[..., Any]:
    """``fn`` with its wall time added to ``split[key]`` on every call."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            split[key] += time.perf_counter() - t0

    return wrapper


def _downscale_child(
    checkpoint: str, predictors: str, out: str, overrides: list[str], threads: int,
    batch_size: int, device: str,
) -> dict[str, Any]:  # fmt: skip
    """One timed ``downscale`` in this (fresh) process, with its time split and peak memory."""
    torch.set_num_threads(threads)
    import downpour.downscaling.downscale as dsmod
    from downpour.downscaling.cf_output import BlockWriter
    from downpour.downscaling.predictor_set import PredictorSet

    split = dict.fromkeys(("read", "forward", "write"), 0.0)
    PredictorSet.block = _timed(PredictorSet.block, split, "read")  # type: ignore[method-assign]
    BlockWriter.write = _timed(BlockWriter.write, split, "write")  # type: ignore[method-assign]
    wrap = dsmod.srdrn_downscaler

    def timed_srdrn(*args: Any, **kwargs: Any) -> Any:
        model = wrap(*args, **kwargs)
        model.predict = _timed(model.predict, split, "forward")
        return model

    dsmod.srdrn_downscaler = timed_srdrn  # type: ignore[assignment]
    start_mb = rss_mb()
    t0 = time.perf_counter()
    res = dsmod.downscale(checkpoint, predictors=[predictors], out=out, overrides=overrides,
                          batch_size=batch_size, device=device, progress=False)  # fmt: skip
    seconds = time.perf_counter() - t0
    split["other"] = seconds - sum(split.values())
    return {
        "days": res.sizes["time"],
        "blocks": res.blocks,
        "seconds": seconds,
        "split": split,
        "start_rss_mb": start_mb,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # kB (Linux)
        "output_mb": Path(out).stat().st_size / 2**20,
    }


def _in_fresh_process(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``fn(*args)`` in a new spawned process (its own memory high-water mark)."""
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result()


def bench_downscale(
    years: Sequence[int] = (1, 10),
    *,
    preset: str = "demo",
    overrides: Sequence[str] = (),
    forward_days: int = 1024,
    forward_repeats: int = 2,
    batch_size: int = 64,
    device: str = "cpu",
    conservative: bool = True,
) -> dict[str, Any]:
    """End-to-end ``downscale`` days/s against the bare forward, and peak memory by years.

    Parameters
    ----------
    years
        Years of daily predictors on their own grid, one ``downscale`` each;
        the largest is also run on the low-res grid (no regridding).
    preset, overrides
        The configuration of the SRDRN built (``demo``: 156×132 from 13×11).
    forward_days, forward_repeats
        Days timed for the bare forward, and how many times (the best counts).
    batch_size
        Days per forward pass, in both measurements (``downscale``'s default).
    device
        ``"cpu"`` or ``"cuda"``.
    conservative
        Also run the smallest ``years`` with ``data.regrid=conservative``.

    Returns
    -------
    dict
        JSON-ready: ``date``, ``preset``, ``shape``, ``lowres_shape``, ``predictor_grid``,
        ``batch_size``, ``threads``, ``forward`` (``days``, ``seconds``,
        ``days_per_s``, ``parameters``) and ``runs``: per case ``years``,
        ``grid`` (``own`` or ``lowres``), ``regrid``, ``days``, ``blocks``,
        ``seconds``, ``days_per_s``, ``ratio`` (days/s over the forward's),
        ``split`` (seconds: ``read``, ``forward``, ``write``, ``other``),
        ``start_rss_mb``, ``peak_rss_mb``, ``output_mb``.
    """
    threads = torch.get_num_threads()
    out: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "preset": preset, "batch_size": batch_size, "threads": threads, "device": device,
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ckpt = build_checkpoint(root / "run", preset, overrides)
        info = read_checkpoint(ckpt).info
        facts = Facts.from_info(info, str(ckpt))
        lat, lon = own_grid(facts.lat_lr, facts.lon_lr)
        out.update(shape=list(facts.shape), lowres_shape=list(info["lowres_shape"]),
                   predictor_grid=[lat.size, lon.size])  # fmt: skip
        out["forward"] = forward_rate(ckpt, forward_days, batch_size, device, forward_repeats)
        cases = [(n, "own", "bilinear") for n in sorted(years)]
        cases.append((max(years), "lowres", "none"))
        if conservative:
            cases.append((min(years), "own", "conservative"))
        out["runs"] = []
        for n, grid, regrid in cases:
            files = root / f"predictors_{grid}_{n}y.nc"
            if not files.is_file():
                on = (lat, lon) if grid == "own" else (facts.lat_lr, facts.lon_lr)
                write_predictors(files, facts, n, *on)
            target = root / "out.nc"
            sets = [f"data.regrid={regrid}"] if regrid == "conservative" else []
            run = _in_fresh_process(_downscale_child, str(ckpt), str(files), str(target), sets,
                                    threads, batch_size, device)  # fmt: skip
            target.unlink(missing_ok=True)
            rate = days_per_second(run["days"], run["seconds"])
            out["runs"].append({"years": n, "grid": grid, "regrid": regrid, **run,
                                "days_per_s": rate,
                                "ratio": rate / out["forward"]["days_per_s"]})  # fmt: skip
    return out
