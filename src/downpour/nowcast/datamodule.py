"""Training and validation windows of the radar events of a config.

The events (:func:`downpour.nowcast.events.load_events`) are split by block
or by event (:func:`downpour.nowcast.events.split_events`); windows are built
inside each block of each event, so no window spans two files or crosses a
split boundary, and no test frame is ever a training input or target.
:class:`NowcastDataModule` serves the training and validation windows (of
grids of different sizes, padded to the largest of the batch as no-data,
:func:`pad_collate`); the shuffle order is a function of (seed, epoch), so a
resumed run replays exactly the batches of an uninterrupted one.
:func:`training_stats` records the range of the training rain for the
rollout range checks.

Examples
--------
>>> items = [{"inputs": torch.ones(2, 3, 4), "valid": torch.ones(1, 3, 4, dtype=torch.bool)},
...          {"inputs": torch.ones(2, 5, 2), "valid": torch.ones(1, 5, 2, dtype=torch.bool)}]
>>> batch = pad_collate(items, fill=0.0)
>>> batch["inputs"].shape, int(batch["valid"][1].sum())
(torch.Size([2, 2, 5, 4]), 10)
"""

from __future__ import annotations

from functools import partial

import lightning as L
import numpy as np
import torch
import xarray as xr
from torch.utils.data import ConcatDataset, DataLoader

from downpour.config import NowcastConfig
from downpour.core.errors import DownpourError
from downpour.data.batching import ShardSampler, ShuffledBatchSampler
from downpour.data.rain import WET, no_rain_value
from downpour.data.splits import dry_split_warnings
from downpour.nowcast.events import SPLITS, block_wet_fraction, split_events
from downpour.nowcast.windows import NowcastWindows, iso_minute

__all__ = ["NowcastDataModule", "pad_collate", "training_stats"]


def _describe(blocks: dict[str, xr.DataArray]) -> str:
    parts = []
    for name, da in blocks.items():
        t = da["time"].values
        span = f"{iso_minute(t[0])} .. {iso_minute(t[-1])}" if t.size else "empty"
        parts.append(f"{name}: {t.size} frames {span}")
    return "; ".join(parts) or "no event"


#: Padding of each key of a window when grids of a batch differ (``None``: the rain fill).
_PAD = {"inputs": None, "targets": None, "valid": False, "motion": 0.0}


def pad_collate(items: list[dict[str, torch.Tensor]], fill: float) -> dict[str, torch.Tensor]:
    """Stack windows into a batch, padding smaller grids at the bottom and right.

    Rain frames are padded with ``fill`` (the no-rain value of the network's
    space), ``valid`` with False (padding never enters a loss or score),
    ``motion`` with 0; other keys are stacked as they are.
    """
    h = max(it["inputs"].shape[-2] for it in items)
    w = max(it["inputs"].shape[-1] for it in items)
    out = {}
    for key in items[0]:
        parts = []
        for it in items:
            t = it[key]
            if key in _PAD and t.shape[-2:] != (h, w):
                value = fill if _PAD[key] is None else _PAD[key]
                t = torch.nn.functional.pad(
                    t, (0, w - t.shape[-1], 0, h - t.shape[-2]), value=value
                )
            parts.append(t)
        out[key] = torch.stack(parts)
    return out


def training_stats(blocks: list[xr.DataArray] | xr.DataArray) -> dict[str, float]:
    """Range of the training rain for the rollout checks (mm/h, valid cells only).

    ``blocks``: the training block of each event (or one sequence).

    Returns
    -------
    dict
        ``max`` (largest rate), ``mean`` (mean rate), ``mean_max`` (largest
        domain-mean of one frame), ``wet_fraction`` (share of valid cells
        > 0.1 mm/h), ``frames``.
    """
    blocks = [blocks] if isinstance(blocks, xr.DataArray) else blocks
    vmax, total, count, wet, mean_max, n_frames = -np.inf, 0.0, 0, 0, -np.inf, 0
    for da in blocks:
        v = np.asarray(da.values, dtype=np.float64)
        finite = np.isfinite(v)
        n = finite.sum(axis=(1, 2))
        frames = n > 0
        if not frames.any():
            continue
        frame_mean = np.where(finite, v, 0.0).sum(axis=(1, 2))[frames] / n[frames]
        vmax = max(vmax, float(np.nanmax(v)))
        total += float(v[finite].sum())
        count += int(finite.sum())
        wet += int((v[finite] > WET).sum())
        mean_max = max(mean_max, float(frame_mean.max()))
        n_frames += int(frames.sum())
    if count == 0:
        raise DownpourError("nowcast: the training period holds no valid radar pixel")
    return {
        "max": vmax,
        "mean": total / count,
        "mean_max": mean_max,
        "wet_fraction": wet / count,
        "frames": n_frames,
    }


class NowcastDataModule(L.LightningDataModule):
    """Training and validation windows of the radar events, split by block or by event.

    Parameters
    ----------
    events
        Event name → rain rate in mm/h, dims ``(time, y, x)``, at the model
        step (:func:`~downpour.nowcast.events.load_events`); one DataArray is
        one event.
    nc
        ``nowcast`` section (frames, steps, transform, holdout, batch size).
    seed
        Shuffle seed (``train.seed``).
    num_workers
        DataLoader workers.

    Attributes
    ----------
    splits : dict
        ``{split: {event: block}}`` (:func:`~downpour.nowcast.events.split_events`).
    train_set, val_set : torch.utils.data.ConcatDataset
        The windows of every event's training (validation) block; a window
        never spans two events.
    stats : dict
        :func:`training_stats` of the training blocks.
    wet_fraction : dict
        Share of wet valid cells of each split (``train``, ``val``, ``test``).
    warnings : list of str
        The splits with far less rain than the training split
        (:func:`downpour.data.splits.dry_split_warnings`), naming their events.
    """

    def __init__(
        self,
        events: dict[str, xr.DataArray] | xr.DataArray,
        nc: NowcastConfig,
        *,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(events, xr.DataArray):
            events = {"source": events}
        self.nc, self.seed, self.num_workers = nc, seed, num_workers
        self.splits = split_events(events, nc)
        motion = nc.model == "advection"
        sets = {}
        for name in ("train", "val"):
            parts = [
                NowcastWindows(block, nc.n_frames, nc.rollout_steps, nc.transform, motion=motion)
                for block in self.splits[name].values()
                if block.sizes["time"]
            ]
            if not any(len(p) for p in parts):
                raise DownpourError(
                    f"nowcast: the {name} split ({_describe(self.splits[name])}) holds no "
                    f"window of {nc.n_frames} + {nc.rollout_steps} consecutive valid frames "
                    "inside one event; use longer events, or change nowcast.val_fraction / "
                    "nowcast.test_fraction / nowcast.val_events / nowcast.n_frames / "
                    "nowcast.rollout_steps"
                )
            sets[name] = ConcatDataset([p for p in parts if len(p)])
        self.train_set, self.val_set = sets["train"], sets["val"]
        self.stats = training_stats(list(self.splits["train"].values()))
        self.wet_fraction = {
            name: block_wet_fraction(list(self.splits[name].values())) for name in SPLITS
        }
        self.warnings = [
            f"{msg} (events: {', '.join(self.splits[name])})"
            for name in ("val", "test")
            for msg in dry_split_warnings(
                {"train": self.wet_fraction["train"], name: self.wet_fraction[name]}
            )
        ]
        self.collate = partial(pad_collate, fill=no_rain_value(nc.transform))

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def train_dataloader(self) -> DataLoader:
        """Shuffled (seed, epoch) batches of training windows, dealt whole across DDP ranks."""
        rank, world = self._rank()
        sampler = ShuffledBatchSampler(
            len(self.train_set), self.nc.batch_size, self.seed, rank=rank, world_size=world
        )
        return DataLoader(
            self.train_set,
            batch_sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            collate_fn=self.collate,
        )

    def val_dataloader(self) -> DataLoader:
        """Every validation window once, in time order, shared out across DDP ranks."""
        rank, world = self._rank()
        return DataLoader(
            self.val_set,
            batch_size=self.nc.batch_size,
            sampler=ShardSampler(len(self.val_set), rank=rank, world_size=world),
            num_workers=self.num_workers,
            collate_fn=self.collate,
        )
