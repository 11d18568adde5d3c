"""Sampling synthetic fields from trained cVAEs (``downpour sample``, ``downpour merge-samples``).

:func:`sample_cvae` draws K members per selected day from one or several
checkpoints, in prior mode (z from the prior, conditioned on X only) or
posterior mode (z from q(z | X, Y): variants of a real day). The result is
an ``xr.Dataset`` with dims (event, member, y, x):

- ``samples`` (event, member, y, x) float32, mm/day (NaN outside the mask);
- ``target`` (event, y, x): the real field of each event (for evaluation);
- ``mask`` (y, x); coordinates ``time`` (event), ``lat``/``lon``,
  ``checkpoint`` (member);
- attributes: checkpoints, mode, temperature, pixel_threshold, wet_rule,
  seed, split, members_per_checkpoint, days, period, store, units,
  wet_threshold, thresholds, and ``for_evaluation_only`` (1 when the days
  come from the validation or test split: such samples must never be used
  for training, and ``downpour augment`` refuses them).

Long archives
-------------
:func:`sample_to_store` writes the same dataset to disk in blocks of
``sampling.batch_size`` events, so memory stays at one block (events ×
members × grid) whatever the number of days; the store appears at its path
only once complete. ``sampling.period`` restricts the days to an inclusive
date range, so a long archive can be cut into shards by time (one job per
shard), and :func:`merge_samples` joins the shards in time order.

Seeding: each (event, checkpoint) draws its noise from its own generator,
seeded by ``(sampling.seed, event date, checkpoint position)``
(:func:`event_generator`). An event's members therefore do not depend on
which other days are sampled, on ``batch_size`` or on how the period is
split: merged shards are bitwise identical to one pass over the whole
period (on one kind of device; CPU and GPU draw different noise).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from downpour.config import Config, SamplingConfig
from downpour.downscaling.dataset import PrecipDataset
from downpour.downscaling.store import open_store
from downpour.core.errors import DownpourError
from downpour.models.cvae import CVAE
from downpour.training.fast import prepare_net
from downpour.training.trainer import read_checkpoint
from downpour.core.files import atomic_dir, write_dataset

__all__ = [
    "event_generator",
    "load_cvae",
    "merge_samples",
    "sample_cvae",
    "sample_to_store",
    "select_days",
    "write_samples",
]

#: Most member fields decoded in one call: bounds the decoder's activations for
#: large K (K = 100 on 156×132 at base 96 would hold ~0.8 GB per feature map).
DECODE_CHUNK = 32

#: Attributes that must agree between the shards of one sampling run.
MERGE_KEYS = (
    "checkpoints",
    "mode",
    "temperature",
    "members_per_checkpoint",
    "wet_rule",
    "store",
    "pixel_threshold",
    "seed",
    "split",
    "days",
    "units",
)

_BLOCK_BYTES = 256 * 2**20  # events per block of merge_samples: about this much memory


def load_cvae(checkpoint: str | Path) -> tuple[CVAE, Config, dict[str, Any]]:
    """Rebuild a trained cVAE from a checkpoint alone.

    Returns
    -------
    (CVAE, Config, dict)
        The network in eval mode, the run's resolved config and the store
        facts recorded at training time (shapes, thresholds, normalisation).
    """
    cfg, info, state = read_checkpoint(checkpoint, "cvae")
    net = CVAE(
        cfg.model,
        x_channels=info["x_channels"],
        s_channels=info["s_channels"],
        shape=tuple(info["shape"]),
        scale_factor=info["scale_factor"],
    )
    net.load_state_dict(state)
    prepare_net(net, channels_last=cfg.train.channels_last)  # the training's memory format
    return net.eval(), cfg, info


def _split_label(dataset: PrecipDataset) -> str:
    return "+".join(dataset.split) if isinstance(dataset.split, (list, tuple)) else dataset.split


def select_days(
    dataset: PrecipDataset,
    days: str | Sequence[dt.date],
    period: tuple[dt.date, dt.date] | None = None,
) -> np.ndarray:
    """Positions (in ``dataset``, in time order) of the days to sample.

    Parameters
    ----------
    dataset
        The split's dataset.
    days
        ``"heavy_only"``, ``"all"`` or a list of dates.
    period
        Keep only the days in this inclusive date range (``sampling.period``).

    Returns
    -------
    numpy.ndarray
        ``int64`` positions, shape ``(n_events,)``, ``n_events ≥ 1``.

    Raises
    ------
    DownpourError
        No heavy day in the split, a listed date outside the split, or no
        selected day in ``period``.
    """
    split = _split_label(dataset)
    times = dataset.times.astype("datetime64[D]")
    if days == "all":
        idx = np.arange(len(dataset))
    elif days == "heavy_only":
        idx = np.flatnonzero(dataset.is_heavy)
        if idx.size == 0:
            raise DownpourError(
                f"no heavy day in split {split} of {dataset.store_path}; "
                "use sampling.days=all, or lower data.heavy.quantile and prepare again"
            )
    else:
        want = np.array([np.datetime64(d, "D") for d in days])
        missing = want[~np.isin(want, times)]
        if missing.size:
            raise DownpourError(
                f"sampling.days: {', '.join(str(d) for d in missing[:5])} not in split "
                f"{split} of {dataset.store_path}"
            )
        idx = np.flatnonzero(np.isin(times, want))
    if period is None:
        return idx
    lo, hi = np.datetime64(period[0], "D"), np.datetime64(period[1], "D")
    kept = idx[(times[idx] >= lo) & (times[idx] <= hi)]
    if kept.size == 0:
        chosen = {"all": "days", "heavy_only": "heavy days"}.get(str(days), "listed days")
        span = f"{times[idx].min()} to {times[idx].max()}" if idx.size else "none"
        raise DownpourError(
            f"sampling.period {period[0]}:{period[1]} holds none of the {idx.size} selected "
            f"{chosen} of split {split} in {dataset.store_path} (they run from {span}); "
            "choose a period inside that range, or another split or sampling.days"
        )
    return kept


def event_generator(
    seed: int, day: np.datetime64 | dt.date, checkpoint: int = 0, device: str | torch.device = "cpu"
) -> torch.Generator:
    """Return the generator of one event's members, seeded by ``(seed, day, checkpoint)``.

    Parameters
    ----------
    seed
        ``sampling.seed``.
    day
        The event's date.
    checkpoint
        Position of the checkpoint in the list sampled from.
    device
        Device of the generator (the network's).

    Examples
    --------
    >>> a = event_generator(0, np.datetime64("2001-01-05"))
    >>> b = event_generator(0, np.datetime64("2001-01-05"))
    >>> bool(torch.equal(torch.randn(3, generator=a), torch.randn(3, generator=b)))
    True
    """
    n_day = int(np.datetime64(day, "D").astype(np.int64))
    entropy = [int(seed) % 2**64, n_day % 2**64, int(checkpoint)]
    hi, lo = np.random.SeedSequence(entropy).generate_state(2, np.uint32)
    return torch.Generator(device=device).manual_seed((int(hi) << 31) ^ int(lo))


def _check_device(name: str) -> None:
    """Refuse a ``sampling.device`` that torch cannot parse or that this machine lacks."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise DownpourError(
            f"sampling.device={name!r} is not a torch device; use cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DownpourError(
            f"sampling.device={name!r} but CUDA is not available here; use sampling.device=cpu"
        )


@dataclass
class _Plan:
    """What one sampling run draws: networks, days, grid and the output's metadata."""

    nets: list[CVAE]
    dataset: PrecipDataset
    events: np.ndarray  # (E,) positions in dataset
    times: np.ndarray  # (E,) datetime64[ns]
    rows: np.ndarray  # (E,) positions in the store
    mask: np.ndarray  # (H, W) bool
    store_ds: xr.Dataset
    coords: dict[str, Any]
    attrs: dict[str, Any]
    units: str

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(members, H, W)`` of one event."""
        return (int(self.coords["checkpoint"][1].size), *self.mask.shape)


def _plan(checkpoints: Sequence[str | Path], store: str | Path, sampling: SamplingConfig) -> _Plan:
    """Load the networks, select the days and gather the output's coordinates and attributes."""
    if not checkpoints:
        raise DownpourError("give at least one --checkpoint")
    _check_device(sampling.device)
    ds = PrecipDataset(store, sampling.split)
    events = select_days(ds, sampling.days, sampling.period)
    store_ds = open_store(store)
    h, w = store_ds["target"].shape[1:]
    mask = store_ds["mask"].values.astype(bool)
    nets = []
    for ckpt in checkpoints:
        net, _, info = load_cvae(ckpt)
        if tuple(info["shape"]) != (h, w) or info["x_channels"] != store_ds["predictors"].shape[1]:
            raise DownpourError(
                f"{ckpt} was trained on a {info['shape'][0]}×{info['shape'][1]} grid with "
                f"{info['x_channels']} predictor channels; {store} has {h}×{w} and "
                f"{store_ds['predictors'].shape[1]}: use a checkpoint of this dataset"
            )
        nets.append(net.to(sampling.device))
    times = ds.times[events]
    coords: dict[str, Any] = {"time": ("event", times)}
    for name in ("lat", "lon"):
        if name in store_ds.coords:
            c = store_ds[name]
            coords[name] = (tuple(map(str, c.dims)), c.values)
    names = [str(Path(c)) for c in checkpoints]
    coords["checkpoint"] = ("member", np.repeat(np.array(names, dtype=object), sampling.members))
    units = str(store_ds.attrs["units"])
    period = sampling.period
    attrs = {
        "checkpoints": json.dumps(names),
        "mode": sampling.mode,
        "temperature": sampling.temperature,
        "pixel_threshold": sampling.pixel_threshold,
        "wet_rule": sampling.wet_rule,
        "seed": sampling.seed,
        "split": sampling.split,
        "members_per_checkpoint": sampling.members,
        "days": sampling.days
        if isinstance(sampling.days, str)
        else json.dumps([str(d) for d in sampling.days]),
        "period": "" if period is None else f"{period[0]}:{period[1]}",
        "for_evaluation_only": int(sampling.split != "train"),
        "store": str(store),
        "units": units,
        "wet_threshold": float(store_ds.attrs.get("wet_threshold", 0.1)),
        "thresholds": store_ds.attrs["thresholds"],
    }
    return _Plan(
        nets=nets,
        dataset=ds,
        events=events,
        times=times,
        rows=ds.store_index[events],
        mask=mask,
        store_ds=store_ds,
        coords=coords,
        attrs=attrs,
        units=units,
    )


@dataclass
class _WetCount:
    """Wet cells before and after the pixel threshold, summed over blocks (for the warning)."""

    before: int = 0
    after: int = 0
    cells: int = 0
    peak: float = 0.0

    def warn_if_dry(self, threshold: float) -> None:
        """Warn when the threshold removed all rain (there was some before it)."""
        if threshold > 0 and self.after == 0 and self.before > 0:
            warnings.warn(
                f"sampling.pixel_threshold={threshold} removes all rain: the wet share of "
                f"samples fell from {self.before / self.cells:.3f} to 0 (max value "
                f"{self.peak:.3g}); lower the threshold",
                stacklevel=3,
            )


def _draw_block(
    plan: _Plan, block: slice, sampling: SamplingConfig, wet: _WetCount
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the samples of the events ``block`` of the plan and read their targets.

    Returns
    -------
    (ndarray, ndarray)
        ``(b, members, H, W)`` samples and ``(b, H, W)`` targets, float32,
        thresholded, NaN outside the mask.
    """
    k = sampling.members
    device = torch.device(sampling.device)
    mask_t = torch.from_numpy(plan.mask).to(device)
    positions = plan.events[block]
    out = np.empty((positions.size, *plan.shape), dtype=np.float32)
    for j, pos in enumerate(positions):
        item = plan.dataset[int(pos)]
        x, s = item["x"][None].to(device), item["s"][None].to(device)
        y = item["y"][None].to(device) if sampling.mode == "posterior" else None
        day = plan.times[block.start + j]
        for c, net in enumerate(plan.nets):
            with torch.no_grad():
                z = net.sample(
                    x,
                    s,
                    k,
                    mode=sampling.mode,
                    y=y,
                    temperature=sampling.temperature,
                    generator=event_generator(sampling.seed, day, c, device),
                    wet_rule=sampling.wet_rule,
                    mask=mask_t,
                    chunk=DECODE_CHUNK,
                )
            out[j, c * k : (c + 1) * k] = torch.expm1(z[0].float()).clamp_min(0).cpu().numpy()
    valid = out[:, :, plan.mask]
    wet.before += int(np.count_nonzero(valid > 0))
    wet.cells += valid.size
    wet.peak = max(wet.peak, float(valid.max(initial=0.0)))
    if sampling.pixel_threshold > 0:
        out[out < sampling.pixel_threshold] = 0.0
    wet.after += int(np.count_nonzero(out[:, :, plan.mask] > 0))
    out[:, :, ~plan.mask] = np.nan
    target = np.asarray(plan.store_ds["target"].isel(time=plan.rows[block]).values)
    return out, np.where(plan.mask, target, np.nan).astype(np.float32)


def _blocks(n: int, size: int) -> list[slice]:
    return [slice(a, min(a + size, n)) for a in range(0, n, size)]


def _progress(items: list[slice], show: bool, desc: str) -> Any:
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="block")


def _dataset(
    samples: Any,
    target: Any,
    mask: np.ndarray,
    coords: dict[str, Any],
    attrs: dict[str, Any],
    units: str,
) -> xr.Dataset:
    """Assemble a samples dataset (numpy arrays, or dask arrays for a template)."""
    result = xr.Dataset(
        {
            "samples": (("event", "member", "y", "x"), samples, {"units": units}),
            "target": (("event", "y", "x"), target, {"units": units}),
            "mask": (("y", "x"), mask),
        },
        coords=coords,
    )
    result.attrs.update(attrs)
    return result


def sample_cvae(
    checkpoints: Sequence[str | Path],
    store: str | Path,
    sampling: SamplingConfig,
    *,
    progress: bool = True,
) -> xr.Dataset:
    """Draw ``sampling.members`` fields per selected day from each checkpoint, in memory.

    For long archives use :func:`sample_to_store`, which writes block by block.

    Parameters
    ----------
    checkpoints
        One or several cVAE checkpoints (members are concatenated, each
        labelled with its checkpoint).
    store
        The prepared store the days come from (the run's ``data/store.zarr``).
    sampling
        Mode, members, temperature, pixel threshold, days, period, split,
        seed, batch size, device.
    progress
        Show a progress bar.

    Returns
    -------
    xarray.Dataset
        See the module docstring; ``samples`` has shape
        ``(events, members × checkpoints, H, W)``.
    """
    plan = _plan(checkpoints, store, sampling)
    wet = _WetCount()
    samples, targets = [], []
    for block in _progress(_blocks(plan.events.size, sampling.batch_size), progress, "sampling"):
        s, t = _draw_block(plan, block, sampling, wet)
        samples.append(s)
        targets.append(t)
    wet.warn_if_dry(sampling.pixel_threshold)
    return _dataset(
        np.concatenate(samples),
        np.concatenate(targets),
        plan.mask,
        plan.coords,
        plan.attrs,
        plan.units,
    )


def write_samples(ds: xr.Dataset, path: str | Path, fmt: str = "zarr") -> Path:
    """Write a samples dataset atomically as zarr (one event per chunk) or NetCDF."""
    return write_dataset(ds, path, fmt, "samples")


@contextlib.contextmanager
def _block_writer(
    template: xr.Dataset, path: Path, fmt: str
) -> Iterator[Callable[[slice, np.ndarray, np.ndarray], None]]:
    """Yield ``write(events, samples, target)`` filling a store laid out like ``template``.

    ``template`` holds ``samples`` and ``target`` as lazy (dask) arrays that
    are never computed; everything else is written at once. The store is
    built in a temporary sibling of ``path`` and renamed onto it on success
    only (a NetCDF file is converted from a temporary zarr store, chunk by
    chunk).
    """
    m, h, w = template["samples"].shape[1:]
    enc = {"samples": {"chunks": (1, m, h, w)}, "target": {"chunks": (1, h, w)}}

    def fill(root: Path) -> Callable[[slice, np.ndarray, np.ndarray], None]:
        template.to_zarr(root, mode="w", compute=False, consolidated=False, encoding=enc,
                         zarr_format=3)  # fmt: skip

        def write(events: slice, samples: np.ndarray, target: np.ndarray) -> None:
            block = xr.Dataset(
                {
                    "samples": (("event", "member", "y", "x"), samples),
                    "target": (("event", "y", "x"), target),
                }
            )
            block.to_zarr(root, region={"event": events}, consolidated=False, zarr_format=3)

        return write

    if fmt == "zarr":
        with atomic_dir(path) as tmp:
            yield fill(tmp)
        return
    if fmt != "netcdf":
        raise DownpourError(f"unknown samples format {fmt!r}; choose zarr or netcdf")
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield fill(work / "samples.zarr")
        staged = xr.open_zarr(work / "samples.zarr", consolidated=False)
        for var in staged.variables.values():
            var.encoding = {}
        staged.to_netcdf(work / "samples.nc")
        staged.close()
        os.replace(work / "samples.nc", path)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _template(
    n_events: int,
    shape: tuple[int, int, int],
    mask: np.ndarray,
    coords: dict[str, Any],
    attrs: dict[str, Any],
    units: str,
) -> xr.Dataset:
    """Return a samples dataset of ``n_events`` whose samples/target are unwritten dask zeros."""
    import dask.array as da

    m, h, w = shape
    step = max(1, min(n_events, 256))
    samples = da.zeros((n_events, m, h, w), chunks=(step, m, h, w), dtype=np.float32)
    target = da.zeros((n_events, h, w), chunks=(step, h, w), dtype=np.float32)
    return _dataset(samples, target, mask, coords, attrs, units)


def sample_to_store(
    checkpoints: Sequence[str | Path],
    store: str | Path,
    sampling: SamplingConfig,
    out: str | Path,
    *,
    fmt: str | None = None,
    progress: bool = True,
) -> Path:
    """Draw samples as :func:`sample_cvae` and write them to ``out`` block by block.

    Memory holds one block of ``sampling.batch_size`` events (events ×
    members × H × W float32) at a time, whatever the number of days, and
    the store appears at ``out`` only when complete. The written dataset
    equals ``write_samples(sample_cvae(...), out)`` (values, coordinates,
    attributes; chunks of one event).

    Parameters
    ----------
    checkpoints, store, sampling
        As :func:`sample_cvae`.
    out
        The samples store (zarr directory or NetCDF file).
    fmt
        ``"zarr"`` or ``"netcdf"``; default ``sampling.format``.
    progress
        Show a progress bar.

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    out = Path(out)
    plan = _plan(checkpoints, store, sampling)
    template = _template(
        plan.events.size, plan.shape, plan.mask, plan.coords, plan.attrs, plan.units
    )
    wet = _WetCount()
    blocks = _blocks(plan.events.size, sampling.batch_size)
    with _block_writer(template, out, fmt or sampling.format) as write:
        for block in _progress(blocks, progress, f"sampling → {out.name}"):
            write(block, *_draw_block(plan, block, sampling, wet))
    wet.warn_if_dry(sampling.pixel_threshold)
    return out


def _plain(value: Any) -> Any:
    """Return an attribute as a plain Python value (NetCDF gives numpy scalars)."""
    return value.item() if isinstance(value, np.generic) else value


def _merged_period(shards: list[xr.Dataset]) -> str:
    periods = [str(s.attrs.get("period", "")) for s in shards]
    if any(not p for p in periods):
        return ""
    return f"{min(p.split(':')[0] for p in periods)}:{max(p.split(':')[1] for p in periods)}"


def merge_samples(
    shards: Sequence[str | Path],
    out: str | Path,
    *,
    fmt: str | None = None,
    progress: bool = False,
) -> Path:
    """Join samples stores of one sampling run, split by time, into one store.

    Events are concatenated in time order, block by block (memory holds
    about 256 MiB of samples at a time), and the store appears at ``out``
    only when complete. With per-event seeding (:func:`event_generator`)
    the result equals one ``downpour sample`` pass over the union of the
    shards' days.

    Parameters
    ----------
    shards
        Samples stores written by ``downpour sample`` (e.g. one per
        ``--period``), zarr or NetCDF, in any order.
    out
        The merged store.
    fmt
        ``"zarr"`` or ``"netcdf"``; default from the suffix of ``out``
        (``.nc`` → NetCDF, else zarr).
    progress
        Show a progress bar.

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    DownpourError
        Fewer than one shard, a shard that cannot be read, shards of
        different sampling runs (checkpoints, mode, temperature, members,
        wet rule, store, threshold, seed, split, days, grid), or a day
        present in two shards.
    """
    from downpour.downscaling.quality import open_samples

    if not shards:
        raise DownpourError("merge-samples needs at least one samples store")
    out = Path(out)
    paths = [Path(p) for p in shards]
    if out.resolve() in {p.resolve() for p in paths}:
        raise DownpourError(f"--out {out} is one of the shards; write the merge elsewhere")
    opened = [open_samples(p) for p in paths]
    try:
        first = opened[0]
        for path, ds in zip(paths[1:], opened[1:], strict=True):
            for key in MERGE_KEYS:
                a, b = _plain(first.attrs.get(key)), _plain(ds.attrs.get(key))
                if a != b:
                    raise DownpourError(
                        f"cannot merge {path} with {paths[0]}: attribute {key!r} differs "
                        f"({b!r} vs {a!r}); merge only shards of one sampling run (same "
                        "checkpoints, mode, temperature, members, wet rule, store, seed)"
                    )
            if ds["samples"].shape[1:] != first["samples"].shape[1:] or not np.array_equal(
                ds["mask"].values, first["mask"].values
            ):
                raise DownpourError(
                    f"cannot merge {path} with {paths[0]}: members × grid "
                    f"{ds['samples'].shape[1:]} vs {first['samples'].shape[1:]} or the mask "
                    "differs; merge only shards of one sampling run"
                )
        times = [np.asarray(ds["time"].values).astype("datetime64[ns]") for ds in opened]
        all_times = np.concatenate(times)
        days, counts = np.unique(all_times, return_counts=True)
        if (counts > 1).any():
            twice = days[counts > 1]
            owners = [str(p) for p, t in zip(paths, times, strict=True) if np.isin(twice[0], t)]
            raise DownpourError(
                f"shards overlap: {twice.size} day(s) are in more than one shard, e.g. "
                f"{str(twice[0])[:10]} in {' and '.join(owners)}; sample non-overlapping "
                "--period ranges (or leave one of these shards out)"
            )
        order = np.argsort(all_times, kind="stable")
        source = np.repeat(np.arange(len(opened)), [t.size for t in times])[order]
        local = np.concatenate([np.arange(t.size) for t in times])[order]
        attrs = {k: _plain(v) for k, v in first.attrs.items()}
        attrs["period"] = _merged_period(opened)
        attrs["merged_from"] = json.dumps([str(p) for p in paths])
        coords: dict[str, Any] = {"time": ("event", all_times[order])}
        for name in ("lat", "lon"):
            if name in first.coords:
                coords[name] = (first[name].dims, np.asarray(first[name].values))
        coords["checkpoint"] = (
            "member",
            np.array([str(c) for c in first["checkpoint"].values], dtype=object),
        )
        shape = tuple(int(n) for n in first["samples"].shape[1:])
        mask = np.asarray(first["mask"].values, dtype=bool)
        units = str(first["samples"].attrs.get("units", attrs.get("units", "mm/day")))
        template = _template(all_times.size, shape, mask, coords, attrs, units)
        per_block = max(1, _BLOCK_BYTES // (4 * int(np.prod(shape))))
        blocks = _blocks(all_times.size, per_block)
        suffix_fmt = "netcdf" if out.suffix == ".nc" else "zarr"
        with _block_writer(template, out, fmt or suffix_fmt) as write:
            for block in _progress(blocks, progress, f"merging → {out.name}"):
                samples = np.empty((block.stop - block.start, *shape), dtype=np.float32)
                target = np.empty((block.stop - block.start, *shape[1:]), dtype=np.float32)
                for k in np.unique(source[block]):
                    sel = np.flatnonzero(source[block] == k)
                    idx = local[block][sel]
                    part = opened[k].isel(event=idx)
                    samples[sel] = part["samples"].values
                    target[sel] = part["target"].values
                write(block, samples, target)
    finally:
        for ds in opened:
            ds.close()
    return out
