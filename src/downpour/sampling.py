"""Sampling synthetic fields from trained cVAEs (``downpour sample``).

:func:`sample_cvae` draws K members per selected day from one or several
checkpoints, in prior mode (z from the prior, conditioned on X only) or
posterior mode (z from q(z | X, Y): variants of a real day), batched over
days and members with a seeded generator. The result is an
``xr.Dataset`` with dims (event, member, y, x):

- ``samples`` (event, member, y, x) float32, mm/day (NaN outside the mask);
- ``target`` (event, y, x): the real field of each event (for evaluation);
- ``mask`` (y, x); coordinates ``time`` (event), ``lat``/``lon``,
  ``checkpoint`` (member);
- attributes: checkpoints, mode, temperature, pixel_threshold, seed, split,
  members, days, and ``for_evaluation_only`` (True when the days come from
  the validation or test split: such samples must never be used for
  training, and ``downpour augment`` refuses them).
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from downpour.config import Config, SamplingConfig
from downpour.data.dataset import PrecipDataset
from downpour.data.store import open_store
from downpour.errors import DownpourError
from downpour.models.cvae import CVAE
from downpour.training.trainer import read_checkpoint
from downpour.utils import write_dataset

__all__ = ["load_cvae", "sample_cvae", "select_days", "write_samples"]


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
    return net.eval(), cfg, info


def select_days(dataset: PrecipDataset, days: str | Sequence[dt.date]) -> np.ndarray:
    """Positions (in ``dataset``) of the days to sample.

    Parameters
    ----------
    dataset
        The split's dataset.
    days
        ``"heavy_only"``, ``"all"`` or a list of dates.
    """
    if days == "all":
        return np.arange(len(dataset))
    if days == "heavy_only":
        idx = np.flatnonzero(dataset.is_heavy)
        if idx.size == 0:
            raise DownpourError(
                f"no heavy day in split {'+'.join(dataset.split)} of {dataset.store_path}; "
                "use sampling.days=all, or lower data.heavy.quantile and prepare again"
            )
        return idx
    want = np.array([np.datetime64(d, "D") for d in days])
    have = dataset.times.astype("datetime64[D]")
    missing = want[~np.isin(want, have)]
    if missing.size:
        raise DownpourError(
            f"sampling.days: {', '.join(str(d) for d in missing[:5])} not in split "
            f"{'+'.join(dataset.split)} of {dataset.store_path}"
        )
    return np.flatnonzero(np.isin(have, want))


def sample_cvae(
    checkpoints: Sequence[str | Path],
    store: str | Path,
    sampling: SamplingConfig,
    *,
    progress: bool = True,
) -> xr.Dataset:
    """Draw ``sampling.members`` fields per selected day from each checkpoint.

    Parameters
    ----------
    checkpoints
        One or several cVAE checkpoints (members are concatenated, each
        labelled with its checkpoint).
    store
        The prepared store the days come from (the run's ``data/store.zarr``).
    sampling
        Mode, members, temperature, pixel threshold, days, split, seed, batch size.
    progress
        Show a progress bar.

    Returns
    -------
    xarray.Dataset
        See the module docstring.
    """
    if not checkpoints:
        raise DownpourError("give at least one --checkpoint")
    ds = PrecipDataset(store, sampling.split)
    events = select_days(ds, sampling.days)
    store_ds = open_store(store)
    h, w = store_ds["target"].shape[1:]
    mask = store_ds["mask"].values.astype(bool)
    gen = torch.Generator().manual_seed(sampling.seed)
    mask_t = torch.from_numpy(mask)
    blocks = []
    for ckpt in checkpoints:
        net, _, info = load_cvae(ckpt)
        if tuple(info["shape"]) != (h, w) or info["x_channels"] != store_ds["predictors"].shape[1]:
            raise DownpourError(
                f"{ckpt} was trained on a {info['shape'][0]}×{info['shape'][1]} grid with "
                f"{info['x_channels']} predictor channels; {store} has {h}×{w} and "
                f"{store_ds['predictors'].shape[1]}: use a checkpoint of this dataset"
            )
        out = np.empty((events.size, sampling.members, h, w), dtype=np.float32)
        batches = range(0, events.size, sampling.batch_size)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc=f"sampling {Path(ckpt).name}", unit="batch")
        for start in batches:
            items = [ds[int(i)] for i in events[start : start + sampling.batch_size]]
            batch = torch.utils.data.default_collate(items)
            with torch.no_grad():
                z = net.sample(
                    batch["x"],
                    batch["s"],
                    sampling.members,
                    mode=sampling.mode,
                    y=batch["y"] if sampling.mode == "posterior" else None,
                    temperature=sampling.temperature,
                    generator=gen,
                    wet_rule=sampling.wet_rule,
                    mask=mask_t,
                )
            out[start : start + len(items)] = torch.expm1(z.float()).clamp_min(0).numpy()
        blocks.append(out)
    samples = np.concatenate(blocks, axis=1)
    before = float((samples[:, :, mask] > 0).mean())
    if sampling.pixel_threshold > 0:
        samples[samples < sampling.pixel_threshold] = 0.0
        after = float((samples[:, :, mask] > 0).mean())
        if after == 0.0:
            warnings.warn(
                f"sampling.pixel_threshold={sampling.pixel_threshold} removes all rain: the wet "
                f"share of samples fell from {before:.3f} to 0 (max value "
                f"{float(np.max(np.concatenate(blocks, axis=1))):.3g}); lower the threshold",
                stacklevel=2,
            )
    samples[:, :, ~mask] = np.nan
    target = store_ds["target"].isel(time=ds.store_index[events]).values
    target = np.where(mask, target, np.nan).astype(np.float32)
    coords: dict[str, Any] = {"time": ("event", ds.times[events])}
    for name in ("lat", "lon"):
        if name in store_ds.coords:
            c = store_ds[name]
            coords[name] = (tuple(map(str, c.dims)), c.values)
    names = [str(Path(c)) for c in checkpoints]
    coords["checkpoint"] = ("member", np.repeat(np.array(names, dtype=object), sampling.members))
    units = str(store_ds.attrs["units"])
    result = xr.Dataset(
        {
            "samples": (("event", "member", "y", "x"), samples, {"units": units}),
            "target": (("event", "y", "x"), target, {"units": units}),
            "mask": (("y", "x"), mask),
        },
        coords=coords,
    )
    result.attrs.update(
        checkpoints=json.dumps(names),
        mode=sampling.mode,
        temperature=sampling.temperature,
        pixel_threshold=sampling.pixel_threshold,
        wet_rule=sampling.wet_rule,
        seed=sampling.seed,
        split=sampling.split,
        members_per_checkpoint=sampling.members,
        days=sampling.days
        if isinstance(sampling.days, str)
        else json.dumps([str(d) for d in sampling.days]),
        for_evaluation_only=int(sampling.split != "train"),
        store=str(store),
        units=units,
        wet_threshold=float(store_ds.attrs.get("wet_threshold", 0.1)),
        thresholds=store_ds.attrs["thresholds"],
    )
    return result


def write_samples(ds: xr.Dataset, path: str | Path, fmt: str = "zarr") -> Path:
    """Write a samples dataset atomically as zarr (one event per chunk) or NetCDF."""
    return write_dataset(ds, path, fmt, "samples")
