"""Lightning wiring of the radar nowcaster: data split by time, windows, losses, rollout.

The network is a plain :class:`~downpour.models.nowcast.NowcastUNet`; this
module trains it. The radar sequence (mm/h, dims ``(time, y, x)``, at the
model step) is cut by time into three contiguous blocks, training | validation
| test (``nowcast.val_fraction``, ``nowcast.test_fraction``); windows are
built inside each block, so no window crosses a boundary and no test frame is
ever a training input or target. A training window holds ``n_frames`` inputs
and ``rollout_steps`` targets: the network is unrolled that many steps,
feeding its predictions back, and every step enters the loss
(:func:`downpour.losses.nowcast_loss`, in the transformed space). Each term
is logged (``train/<term>``, ``val/<term>``), plus ``val/MAE`` and
``val/MAE_persistence`` (mm/h, first step).

Augmentation (flips of inputs, targets and mask; multiplicative noise on the
input rates in mm/h; crops, the rainiest of four random ones) is applied to the batch in
``training_step`` after torch's RNG is reseeded from (seed, epoch, batch), and
the shuffle order is a function of (seed, epoch), so a resumed run replays
exactly the batches of an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
import xarray as xr
from torch.utils.data import DataLoader, Dataset, Sampler

from downpour.config import Config, NowcastConfig, TrainConfig, VariableSource
from downpour.nowcast.radar import (
    DBR_FLOOR,
    RadarSequenceDataset,
    accumulate,
    coarsen_radar,
    inverse_rain_transform,
    load_radar,
    make_embedded_radar,
    no_rain_value,
    rain_transform,
    temporal_encoding,
)
from downpour.data.transforms import MultiplicativeNoise, RandomFlip
from downpour.core.errors import DownpourError
from downpour.nowcast.loss import nowcast_loss
from downpour.models.nowcast import NowcastUNet
from downpour.training.fast import FastPathsMixin
from downpour.training.optim import configure_optimizers
from downpour.training.trainer import batch_seed

__all__ = [
    "NowcastDataModule",
    "NowcastModule",
    "NowcastWindows",
    "build_nowcast_net",
    "load_nowcast_source",
    "nowcast_train_config",
    "rollout_batch",
    "split_blocks",
    "training_stats",
]

WET = 0.1  # mm/h: wet-pixel threshold of the statistics and range checks
_CROP_TRIES = 4


# ------------------------------------------------------------------ data


def load_nowcast_source(
    nc: NowcastConfig, source: VariableSource | xr.DataArray | None = None
) -> xr.DataArray:
    """Load the radar sequence of a nowcast config at its step and grid.

    Parameters
    ----------
    nc
        The ``nowcast`` section (``target``, ``step_minutes``, ``coarsen`` and
        the ``embedded_*`` generator settings).
    source
        Overrides ``nc.target``: a radar file, or a rate DataArray in mm/h
        already at the model step (dims ``(time, y, x)``).

    Returns
    -------
    xarray.DataArray
        float32 mm/h, dims ``(time, y, x)``, NaN = no data
        (:func:`downpour.nowcast.radar.load_radar`).
    """
    if isinstance(source, xr.DataArray):
        if tuple(source.dims) != ("time", "y", "x"):
            raise DownpourError(f"nowcast source: expected dims (time, y, x), got {source.dims}")
        return source
    src = source if source is not None else nc.target
    if src is not None:
        return load_radar(src, step_minutes=nc.step_minutes, coarsen=nc.coarsen)
    ds = make_embedded_radar(
        seed=nc.embedded_seed,
        hours=nc.embedded_hours,
        height=nc.embedded_size,
        width=nc.embedded_size,
        step_minutes=nc.embedded_step_minutes,
    )
    da = accumulate(ds["precip_rate"], nc.step_minutes, key="nowcast.step_minutes")
    da.attrs["source"] = ds.attrs["source"]
    return coarsen_radar(da, nc.coarsen) if nc.coarsen > 1 else da


def split_blocks(n_times: int, val_fraction: float, test_fraction: float) -> dict[str, slice]:
    """Contiguous train | val | test index ranges of a time axis of ``n_times`` frames.

    ``train = [0, round(T·(1 − v − t)))``, ``val`` up to ``round(T·(1 − t))``,
    ``test`` the rest.

    Examples
    --------
    >>> split_blocks(10, 0.2, 0.3)
    {'train': slice(0, 5, None), 'val': slice(5, 7, None), 'test': slice(7, 10, None)}
    """
    i_val = int(round(n_times * (1.0 - val_fraction - test_fraction)))
    i_test = int(round(n_times * (1.0 - test_fraction)))
    return {"train": slice(0, i_val), "val": slice(i_val, i_test), "test": slice(i_test, n_times)}


def training_stats(da: xr.DataArray) -> dict[str, float]:
    """Range of the training rain for the rollout checks (mm/h, valid cells only).

    Returns
    -------
    dict
        ``max`` (largest rate), ``mean`` (mean rate), ``mean_max`` (largest
        domain-mean of one frame), ``wet_fraction`` (share of valid cells
        > 0.1 mm/h), ``frames``.
    """
    v = np.asarray(da.values, dtype=np.float64)
    finite = np.isfinite(v)
    n = finite.sum(axis=(1, 2))
    frames = n > 0
    if not frames.any():
        raise DownpourError("nowcast: the training period holds no valid radar pixel")
    frame_mean = np.where(finite, v, 0.0).sum(axis=(1, 2))[frames] / n[frames]
    return {
        "max": float(np.nanmax(v)),
        "mean": float(np.nanmean(v)),
        "mean_max": float(frame_mean.max()),
        "wet_fraction": float((v[finite] > WET).mean()),
        "frames": int(frames.sum()),
    }


class NowcastWindows(Dataset):
    """Windows of ``n_frames`` inputs and ``steps`` targets, exactly one step apart.

    Built on :class:`~downpour.nowcast.radar.RadarSequenceDataset` (its gap
    handling and no-data fill); windows without any valid target cell are
    left out.

    Parameters
    ----------
    da
        Rain rate in mm/h, dims ``(time, y, x)`` (one block of the split).
    n_frames, steps
        Inputs and targets per window.
    transform
        ``nowcast.transform``.

    Notes
    -----
    An item: ``inputs`` ``(n_frames, H, W)`` and ``targets`` ``(steps, H, W)``
    float32 (transformed), ``valid`` bool ``(1, H, W)`` (finite in every
    frame of the window), ``temporal`` ``(steps, 4)`` (encoding of each
    target time), ``time`` int64 ns of the first target.
    """

    def __init__(self, da: xr.DataArray, n_frames: int, steps: int, transform: Any) -> None:
        self.n_frames, self.steps = int(n_frames), int(steps)
        self.base = RadarSequenceDataset(da, self.n_frames + self.steps - 1, transform)
        finite = np.isfinite(np.asarray(da.values))
        span = self.n_frames + self.steps
        self.index = np.array(
            [j for j, s in enumerate(self.base.starts) if finite[s : s + span].all(axis=0).any()],
            dtype=np.int64,
        )
        self.report = dict(self.base.report, kept=int(self.index.size))

    def __len__(self) -> int:
        return int(self.index.size)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        j = int(self.index[i])
        item = self.base[j]
        frames = torch.cat([item["inputs"], item["target"]], dim=0)
        s = int(self.base.starts[j])
        n = self.n_frames
        times = self.base.times[s + n : s + n + self.steps]
        return {
            "inputs": frames[:n],
            "targets": frames[n:],
            "valid": item["valid"],
            "temporal": torch.from_numpy(temporal_encoding(times)),
            "time": torch.tensor(times[0].astype(np.int64), dtype=torch.int64),
        }


class _EpochShuffle(Sampler[int]):
    """A permutation drawn from (seed, epoch), split across DDP ranks (every rank-th item).

    The same order on a resumed run. The permutation is padded by wrapping
    around to a multiple of the world size (as ``DistributedSampler``), so
    every rank takes the same number of windows and steps (DDP would hang
    otherwise); without padding the ranks see disjoint windows.
    """

    def __init__(self, n: int, seed: int, *, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.seed, self.epoch = n, seed, 0
        self.rank, self.world_size = rank, max(1, world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.n // self.world_size)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        total = len(self) * self.world_size
        order = (order * (-(-total // max(1, self.n))))[:total] if self.n else []
        return iter(order[self.rank :: self.world_size])


class NowcastDataModule(L.LightningDataModule):
    """Training and validation windows of one radar sequence, split by time.

    Parameters
    ----------
    da
        Rain rate in mm/h, dims ``(time, y, x)``, at the model step.
    nc
        ``nowcast`` section (frames, steps, transform, fractions, batch size).
    seed
        Shuffle seed (``train.seed``).
    num_workers
        DataLoader workers.

    Attributes
    ----------
    blocks : dict of slice
        Index ranges of :func:`split_blocks`.
    stats : dict
        :func:`training_stats` of the training block.
    """

    def __init__(
        self, da: xr.DataArray, nc: NowcastConfig, *, seed: int = 0, num_workers: int = 0
    ) -> None:
        super().__init__()
        self.nc, self.seed, self.num_workers = nc, seed, num_workers
        self.blocks = split_blocks(da.sizes["time"], nc.val_fraction, nc.test_fraction)
        t = da["time"].values
        sets = {}
        for name in ("train", "val"):
            block = da.isel(time=self.blocks[name])
            sets[name] = NowcastWindows(block, nc.n_frames, nc.rollout_steps, nc.transform)
            if len(sets[name]) == 0:
                span = (
                    f"{block.sizes['time']} frames"
                    if block.sizes["time"] == 0
                    else f"{block.sizes['time']} frames {_iso(block['time'].values[0])} .. "
                    f"{_iso(block['time'].values[-1])}"
                )
                raise DownpourError(
                    f"nowcast: the {name} period ({span} of {t.size} from "
                    f"{_iso(t[0])} .. {_iso(t[-1])}) holds no window of "
                    f"{nc.n_frames} + {nc.rollout_steps} consecutive valid frames; "
                    "use a longer sequence, or change nowcast.val_fraction / "
                    "nowcast.test_fraction / nowcast.n_frames / nowcast.rollout_steps"
                )
        self.train_set, self.val_set = sets["train"], sets["val"]
        self.stats = training_stats(da.isel(time=self.blocks["train"]))

    def train_dataloader(self) -> DataLoader:
        """Shuffled (seed, epoch) windows of the training block, split across DDP ranks."""
        trainer = self.trainer
        sampler = _EpochShuffle(
            len(self.train_set),
            self.seed,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
        )
        return DataLoader(
            self.train_set,
            batch_size=self.nc.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def val_dataloader(self) -> DataLoader:
        """Every validation window once, in time order."""
        return DataLoader(self.val_set, batch_size=self.nc.batch_size, num_workers=self.num_workers)


def _iso(t: Any) -> str:
    return str(np.datetime_as_string(np.datetime64(t, "ns"), unit="m"))


# ------------------------------------------------------------------ model


def build_nowcast_net(nc: NowcastConfig) -> NowcastUNet:
    """Build the U-Net of a ``nowcast`` section (input scaling from the transform)."""
    offset, scale = {"log": (0.0, 1.0), "dbr": (DBR_FLOOR, 10.0), "none": (0.0, 10.0)}[nc.transform]
    return NowcastUNet(
        n_frames=nc.n_frames,
        base_features=nc.base_features,
        depth=nc.depth,
        floor=no_rain_value(nc.transform),
        offset=offset,
        scale=scale,
    )


def nowcast_train_config(cfg: Config) -> TrainConfig:
    """Return ``train`` with the nowcaster's lr, epochs, batch, accumulation and monitor.

    Also ``patience``, ``max_batches_per_epoch``, ``flips``, ``noise``; the LR
    schedule is always cosine.
    """
    nc = cfg.nowcast
    return cfg.train.model_copy(
        update={
            "lr": nc.lr,
            "epochs": nc.epochs,
            "batch_size": nc.batch_size,
            "accumulate": nc.accumulate,
            "max_batches_per_epoch": nc.max_batches_per_epoch,
            "patience": nc.patience,
            "monitor": nc.monitor,
            "scheduler": "cosine",
            "flips": nc.flips,
            "noise": nc.noise,
        }
    )


def rollout_batch(
    net: torch.nn.Module,
    inputs: torch.Tensor,
    temporal: torch.Tensor,
    post: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Unroll the network, feeding each prediction back as the newest input frame.

    Parameters
    ----------
    net
        Maps ``(B, n, H, W)`` frames and ``(B, 4)`` encoding to ``(B, 1, H, W)``.
    inputs
        ``(B, n, H, W)``, oldest first.
    temporal
        ``(B, K, 4)``: encoding of each target time.
    post
        Applied to each prediction ``(B, 1, H, W)`` before it is kept and fed
        back (e.g. probability matching); ``None``: unchanged.

    Returns
    -------
    torch.Tensor
        ``(B, K, H, W)``: the predictions of steps 1..K.
    """
    window, preds = inputs, []
    for k in range(temporal.shape[1]):
        pred = net(window, temporal[:, k])
        if post is not None:
            pred = post(pred)
        preds.append(pred)
        window = torch.cat([window[:, 1:], pred], dim=1)
    return torch.cat(preds, dim=1)


def _rainy_crop(batch: dict[str, torch.Tensor], size: int, dry: float) -> dict[str, torch.Tensor]:
    """Crop ``inputs``, ``targets``, ``valid`` to ``size`` (one offset for the batch).

    Of :data:`_CROP_TRIES` random offsets, the one with the most wet valid
    target cells is kept, so that crops of a mostly dry radar domain still
    show rain.
    """
    h, w = batch["inputs"].shape[-2:]
    ch, cw = min(size, h), min(size, w)
    if (ch, cw) == (h, w):
        return batch
    wet = ((batch["targets"] > dry) & batch["valid"]).sum(dim=(0, 1)).float()  # (H, W)
    box = torch.nn.functional.avg_pool2d(wet[None, None], (ch, cw), stride=1)[0, 0]
    ys = torch.randint(0, h - ch + 1, (_CROP_TRIES,))
    xs = torch.randint(0, w - cw + 1, (_CROP_TRIES,))
    best = int(torch.argmax(box[ys, xs]))  # first of equals: a dry batch keeps try 0
    y0, x0 = int(ys[best]), int(xs[best])
    out = dict(batch)
    for key in ("inputs", "targets", "valid"):
        out[key] = batch[key][..., y0 : y0 + ch, x0 : x0 + cw]
    return out


class NowcastModule(FastPathsMixin, L.LightningModule):
    """Train a :class:`NowcastUNet` from a :class:`Config`.

    Parameters
    ----------
    cfg
        Resolved configuration (``nowcast`` and ``train`` are used).
    stats
        :func:`training_stats` of the training block, stored in checkpoints.
    steps_per_epoch
        Optimiser steps per epoch (cosine schedule length).
    """

    def __init__(self, cfg: Config, stats: dict[str, float], steps_per_epoch: int = 1) -> None:
        super().__init__()
        self.cfg, self.nc = cfg, cfg.nowcast
        self.train_cfg = nowcast_train_config(cfg)
        self.stats = dict(stats)
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.save_hyperparameters(
            {
                "config": cfg.model_dump(mode="json"),
                "stats": self.stats,
                "steps_per_epoch": self.steps_per_epoch,
            }
        )
        self.net = build_nowcast_net(self.nc)
        self.flip = RandomFlip() if self.nc.flips else None
        channels = range(self.nc.n_frames)
        self.noise = MultiplicativeNoise(self.nc.noise, channels) if self.nc.noise > 0 else None
        self._val: dict[str, float] = {}

    # ----------------------------------------------------------------- helpers
    def _loss(
        self, preds: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        nc = self.nc
        return nowcast_loss(
            preds,
            batch["targets"],
            batch["valid"],
            w_l1=nc.w_l1,
            w_spectral=nc.w_spectral,
            w_mse=nc.w_mse,
            w_grad=nc.w_grad,
            spectral=nc.spectral,
        )

    def augment(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Noise (inputs, in mm/h), flips and a crop of a batch (torch's global RNG)."""
        out = dict(batch)
        kind = self.nc.transform
        if self.noise is not None:
            rate = inverse_rain_transform(out["inputs"], kind)
            noisy = self.noise({"x": rate})["x"]
            out["inputs"] = rain_transform(noisy, kind)
        if self.flip is not None:
            flipped = self.flip({"x": out["inputs"], "y": out["targets"], "mask": out["valid"]})
            out["inputs"], out["targets"], out["valid"] = (
                flipped["x"],
                flipped["y"],
                flipped["mask"],
            )
        if self.nc.crop is not None:
            out = _rainy_crop(out, self.nc.crop, no_rain_value(kind))
        return out

    # ------------------------------------------------------------------- steps
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Reseed torch per (epoch, batch) so augmentation replays exactly after a resume."""
        torch.manual_seed(
            batch_seed(self.train_cfg.seed, self.current_epoch, batch_idx, self.global_rank)
        )

    def fast_config(self) -> TrainConfig:
        """Return the training settings holding the fast-path switches."""
        return self.train_cfg

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Unrolled prediction and loss; stops with a clear message on a NaN/inf loss."""
        batch = self.augment(batch)
        preds = rollout_batch(self.net, batch["inputs"], batch["temporal"])
        total, terms = self._loss(preds, batch)
        if not torch.isfinite(total):
            bad = [k for k, v in terms.items() if k != "total" and not torch.isfinite(v)]
            raise DownpourError(
                f"the nowcast loss became {float(total.detach())} at step {self.global_step} "
                f"(epoch {self.current_epoch}, batch {batch_idx}); non-finite term(s): "
                f"{', '.join(bad) or 'total'}. Training stopped; the last good checkpoint is "
                "kept in checkpoints/nowcast/. Lower nowcast.lr, enable train.grad_clip, "
                "or check the data"
            )
        bs = batch["inputs"].shape[0]
        self.log("train/loss", total, prog_bar=True, batch_size=bs)
        self.log_dict({f"train/{k}": v for k, v in terms.items() if k != "total"}, batch_size=bs)
        return total

    def on_validation_epoch_start(self) -> None:
        """Reset the streaming MAE sums."""
        self._val = {"model": 0.0, "persistence": 0.0, "n": 0.0}

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Loss terms of the unrolled forecast; MAE (mm/h, step 1) of model and persistence."""
        preds = rollout_batch(self.net, batch["inputs"], batch["temporal"])
        total, terms = self._loss(preds, batch)
        bs = batch["inputs"].shape[0]
        self.log("val/loss", total, batch_size=bs, prog_bar=True)
        self.log_dict({f"val/{k}": v for k, v in terms.items() if k != "total"}, batch_size=bs)
        kind = self.nc.transform
        truth = inverse_rain_transform(batch["targets"][:, :1].double(), kind)
        mask = batch["valid"]
        for name, field in (("model", preds[:, :1]), ("persistence", batch["inputs"][:, -1:])):
            err = (inverse_rain_transform(field.double(), kind) - truth).abs()
            self._val[name] += float(torch.where(mask, err, 0.0).sum())
        self._val["n"] += float(mask.sum())

    def on_validation_epoch_end(self) -> None:
        """Log ``val/MAE`` and ``val/MAE_persistence`` (mm/h) over every validation window."""
        n = self._val.get("n", 0.0)
        for name, key in (("model", "val/MAE"), ("persistence", "val/MAE_persistence")):
            value = self._val.get(name, 0.0) / n if n > 0 else math.nan
            self.log(key, value, prog_bar=name == "model")

    # --------------------------------------------------------------- optimiser
    def configure_optimizers(self) -> Any:
        """Adam with linear warm-up and cosine decay (``nowcast.lr``, ``nowcast.epochs``)."""
        return configure_optimizers(self.net.parameters(), self.train_cfg, self.steps_per_epoch)

    # -------------------------------------------------------------- checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store what forecasting needs next to the weights."""
        checkpoint["downpour"] = {
            "kind": "nowcast",
            "config": self.cfg.model_dump(mode="json"),
            "stats": self.stats,
        }
