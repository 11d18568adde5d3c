"""Sampling synthetic fields from trained cVAEs (``downpour sample``).

:func:`sample_cvae` draws K members per selected day
(:func:`~downpour.downscaling.events.select_days`)
from one or several checkpoints, in prior mode (z from the prior, conditioned
on X only) or posterior mode (z from q(z | X, Y): variants of a real day),
as a samples dataset (event, member, y, x) in the layout of
:mod:`downpour.downscaling.samples`. Samples of validation or test days are
flagged ``for_evaluation_only``: ``downpour augment`` refuses them.

:func:`sample_to_store` writes the same dataset block by block (memory: one
block of ``sampling.batch_size`` events), so a long archive can be sampled
in shards by time (``sampling.period``) and joined with
:func:`~downpour.downscaling.samples.merge_samples`; per-event seeding
(:func:`~downpour.downscaling.events.event_generator`) makes merged shards
bitwise identical to one pass (on one kind of device).
:func:`sample_checkpoints` is the command's API: settings from a config or
the checkpoint, store and output path from the checkpoint's run.

This module is long because drawing is one pipeline (plan, per-event noise, wet
rules, decoding in chunks, block writing) whose steps share private state; the
store layout and the day selection live in their own modules.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from pydantic import ValidationError

from downpour.config import Config, SamplingConfig, apply_overrides, load_config
from downpour.core.devices import torch_device
from downpour.core.errors import DownpourError
from downpour.core.rundir import RunDir
from downpour.downscaling.dataset import PrecipDataset
from downpour.downscaling.events import event_generator, select_days
from downpour.downscaling.samples import (
    block_writer,
    event_blocks,
    progress_bar,
    samples_dataset,
    samples_template,
)
from downpour.downscaling.store import open_store
from downpour.models.cvae import CVAE
from downpour.models.generator import LowResGenerator
from downpour.models.loading import load_model

__all__ = [
    "default_samples_path",
    "load_cvae",
    "sample_checkpoints",
    "sample_cvae",
    "sample_to_store",
    "with_period",
]

#: Most member fields decoded in one call: bounds the decoder's activations for
#: large K (K = 100 on 156×132 at base 96 would hold ~0.8 GB per feature map).
DECODE_CHUNK = 32


def load_cvae(checkpoint: str | Path) -> tuple[CVAE | LowResGenerator, Config, dict[str, Any]]:
    """Rebuild a trained cVAE from a checkpoint alone (:func:`~downpour.models.loading.load_model`).

    Returns
    -------
    (CVAE or LowResGenerator, Config, dict)
        The network (the design notes' cVAE or the ensemble generator) in
        eval mode (in the training's memory format), the run's resolved config
        and the store facts recorded at training time (shapes, thresholds,
        normalisation).
    """
    model = load_model(checkpoint, "cvae")
    assert isinstance(model.net, CVAE | LowResGenerator)
    return model.net, model.config, model.info


@dataclass
class _Plan:
    """What one sampling run draws: networks, days, grid and the output's metadata."""

    nets: list[CVAE | LowResGenerator]
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
    torch_device(sampling.device, "sampling.device")
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
    for block in progress_bar(
        event_blocks(plan.events.size, sampling.batch_size), progress, "sampling"
    ):
        s, t = _draw_block(plan, block, sampling, wet)
        samples.append(s)
        targets.append(t)
    wet.warn_if_dry(sampling.pixel_threshold)
    return samples_dataset(
        np.concatenate(samples),
        np.concatenate(targets),
        plan.mask,
        plan.coords,
        plan.attrs,
        plan.units,
    )


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
    template = samples_template(
        plan.events.size, plan.shape, plan.mask, plan.coords, plan.attrs, plan.units
    )
    wet = _WetCount()
    blocks = event_blocks(plan.events.size, sampling.batch_size)
    with block_writer(template, out, fmt or sampling.format) as write:
        for block in progress_bar(blocks, progress, f"sampling → {out.name}"):
            write(block, *_draw_block(plan, block, sampling, wet))
    wet.warn_if_dry(sampling.pixel_threshold)
    return out


def with_period(sampling: SamplingConfig, period: str | None) -> SamplingConfig:
    """Return ``sampling`` restricted to the days of ``period`` (``START:END``; None: unchanged).

    Raises
    ------
    DownpourError
        A period that is not ``START:END`` with ``YYYY``, ``YYYY-MM`` or
        ``YYYY-MM-DD`` ends, or that starts after it ends.
    """
    if period is None:
        return sampling
    try:
        return SamplingConfig.model_validate({**sampling.model_dump(), "period": period})
    except ValidationError as exc:
        msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise DownpourError(f"--period: {msg}") from None


def default_samples_path(run: RunDir, sampling: SamplingConfig) -> Path:
    """Return ``RUN/samples/<mode>_<split>[_<start>_<end>].<zarr|nc>`` for these settings."""
    suffix = ".zarr" if sampling.format == "zarr" else ".nc"
    shard = "" if sampling.period is None else f"_{sampling.period[0]}_{sampling.period[1]}"
    return run.samples(f"{sampling.mode}_{sampling.split}{shard}", suffix)


def sample_checkpoints(
    checkpoints: Sequence[str | Path],
    *,
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    store: str | Path | None = None,
    out: str | Path | None = None,
    period: str | None = None,
    progress: bool = True,
) -> tuple[Path, SamplingConfig]:
    """``downpour sample``: draw members from checkpoints into a samples store of their run.

    Parameters
    ----------
    checkpoints
        cVAE checkpoints (members of several are concatenated).
    config
        A config file or preset whose ``sampling`` section is used; default
        the configuration stored in the first checkpoint.
    overrides
        ``section.key=value`` overrides (e.g. ``sampling.mode=prior``).
    store
        The prepared store (or a run directory); default the first
        checkpoint's run's store.
    out
        The samples store; default :func:`default_samples_path` in that run.
    period
        Only the days of this inclusive ``START:END`` range (one shard).
    progress
        Show a progress bar.

    Returns
    -------
    (pathlib.Path, SamplingConfig)
        The written store and the sampling settings used.
    """
    if not checkpoints:
        raise DownpourError("give at least one --checkpoint")
    if config is not None:
        cfg = load_config(config, overrides)
    else:
        cfg = apply_overrides(load_cvae(checkpoints[0])[1], overrides, str(checkpoints[0]))
    run = RunDir.of_checkpoint(checkpoints[0])
    sampling = with_period(cfg.sampling, period)
    path = Path(out) if out is not None else default_samples_path(run, sampling)
    sample_to_store(list(checkpoints), store or run.store, sampling, path, progress=progress)
    return path, sampling
