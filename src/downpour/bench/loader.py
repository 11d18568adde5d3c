"""Data loader throughput from a prepared zarr store, beside training consumption.

The store is the embedded dataset prepared with the ``demo`` preset (8
years, 156×132). Batches come exactly as in training: the stratified heavy
sampler, flips and noise, :class:`~downpour.downscaling.dataset.PrecipDataset`
reading one zarr chunk per day. Measured:

- samples/s with 0, 1 and 2 worker processes (start-up excluded);
- one-day chunks against year-long chunks along time (``chunks=(365, H, W)``,
  how a NetCDF archive is often laid out): random access to a day then
  decompresses the whole year, the reason stores are written one day per chunk;
- persistent workers: the wall time of ``epochs`` short epochs, where
  non-persistent workers are started again every epoch;
- pinned memory, only where a GPU is present (pinning is a host-to-device
  transfer optimisation and does nothing on a CPU-only machine).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import xarray as xr
from torch.utils.data import DataLoader

from downpour.bench.machine import PeakMemory
from downpour.config import load_config
from downpour.core.rundir import RunDir
from downpour.data.sampler import StratifiedBatchSampler
from downpour.data.transforms import build_transform
from downpour.downscaling.dataset import PrecipDataset
from downpour.downscaling.prepare import prepare

__all__ = ["bench_loader", "loader_rate", "make_loader"]


def make_loader(
    ds: PrecipDataset,
    workers: int,
    batch_size: int,
    *,
    persistent: bool = False,
    pin: bool = False,
) -> DataLoader:
    """Build a training-like loader: stratified batches (40 % heavy), fork workers."""
    sampler = StratifiedBatchSampler(ds.is_heavy, batch_size, 0.4, seed=0)
    return DataLoader(
        ds,
        batch_sampler=sampler,
        num_workers=workers,
        persistent_workers=persistent and workers > 0,
        pin_memory=pin,
        multiprocessing_context="fork" if workers else None,
    )


def loader_rate(loader: DataLoader, batches: int) -> float:
    """Samples/s over ``batches`` batches, the first batch (worker start-up) not counted."""
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    n = 0
    for i, batch in enumerate(it):
        n += batch["x"].shape[0]
        if i + 1 >= batches:
            break
    return n / (time.perf_counter() - t0)


def _epochs_time(loader: DataLoader, epochs: int, batches: int) -> float:
    t0 = time.perf_counter()
    for epoch in range(epochs):
        loader.batch_sampler.set_epoch(epoch)  # type: ignore[union-attr]
        for i, _ in enumerate(loader):
            if i + 1 >= batches:
                break
    return time.perf_counter() - t0


def _rechunk(store: Path, out: Path, days: int) -> Path:
    ds = xr.open_zarr(store, consolidated=False, chunks=None).load()
    for v in ds.variables.values():
        v.encoding.pop("chunks", None)
        v.encoding.pop("preferred_chunks", None)
    enc = {
        "target": {"chunks": (days, *ds["target"].shape[1:])},
        "predictors": {"chunks": (days, *ds["predictors"].shape[1:])},
    }
    ds.to_zarr(out, encoding=enc, consolidated=False, zarr_format=3)
    return out


def bench_loader(
    years: int = 8, batches: int = 40, batch_size: int = 16, epochs: int = 3
) -> dict[str, Any]:
    """Loader samples/s for 0/1/2 workers, chunking, persistent workers, pinned memory.

    Parameters
    ----------
    years
        Years of the embedded dataset to prepare (the demo's split needs 8).
    batches
        Batches timed per measurement.
    batch_size
        Days per batch.
    epochs
        Short epochs (``batches // 4`` batches each) for the persistent-worker figure.

    Returns
    -------
    dict
        ``{"workers": {0: samples/s, ...}, "year_chunks": {...},
        "persistent": {"off_s", "on_s"}, "pinned": ..., "peak_mb"}``.
    """
    aug = build_transform(flips=True, noise=0.02, precip_channels=[0])
    out: dict[str, Any] = {"years": years, "batch_size": batch_size, "batches": batches}
    with tempfile.TemporaryDirectory() as tmp, PeakMemory() as mem:
        run = Path(tmp) / "run"
        cfg = load_config("demo", [f"data.embedded.n_years={years}"])
        prepare(cfg, run)
        store = RunDir(run).store
        out["workers"] = {}
        for workers in (0, 1, 2):
            ds = PrecipDataset(store, "train", transform=aug, seed=0)
            loader = make_loader(ds, workers, batch_size)
            out["workers"][str(workers)] = loader_rate(loader, batches)
        yearly = _rechunk(store, Path(tmp) / "yearly.zarr", 365)
        out["year_chunks"] = {}
        for workers in (0, 2):
            ds = PrecipDataset(yearly, "train", transform=aug, seed=0)
            rate = loader_rate(make_loader(ds, workers, batch_size), max(4, batches // 4))
            out["year_chunks"][str(workers)] = rate
        shutil.rmtree(yearly)
        short = max(2, batches // 4)
        out["persistent"] = {}
        for persistent in (False, True):
            ds = PrecipDataset(store, "train", transform=aug, seed=0)
            loader = make_loader(ds, 2, batch_size, persistent=persistent)
            key = "on_s" if persistent else "off_s"
            out["persistent"][key] = _epochs_time(loader, epochs, short)
            del loader
        out["persistent"].update(epochs=epochs, batches_per_epoch=short)
        if torch.cuda.is_available():
            out["pinned"] = {}
            for pin in (False, True):
                ds = PrecipDataset(store, "train", transform=aug, seed=0)
                loader = make_loader(ds, 2, batch_size, persistent=True, pin=pin)
                t0 = time.perf_counter()
                n = 0
                for i, b in enumerate(loader):
                    b = {k: v.to("cuda", non_blocking=pin) for k, v in b.items()}
                    n += b["x"].shape[0]
                    if i + 1 >= batches:
                        break
                torch.cuda.synchronize()
                out["pinned"]["on" if pin else "off"] = n / (time.perf_counter() - t0)
        else:
            out["pinned"] = None
    out["peak_mb"] = mem.peak_mb
    out["peak_growth_mb"] = mem.delta_mb  # over the resident size when the part started
    return out
