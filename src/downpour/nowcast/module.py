"""Lightning wiring of the radar nowcaster: the network, rollout, augmentation, losses.

The network is a plain :class:`~downpour.models.nowcast.NowcastUNet`; this
module trains it on the windows of :mod:`downpour.nowcast.datamodule` (split
by time, so no test frame is ever a training input or target). A training
window holds ``n_frames`` inputs and ``rollout_steps`` targets: the network is
unrolled that many steps, feeding its predictions back
(:func:`rollout_batch`), and every step enters the loss
(:func:`downpour.nowcast.loss.nowcast_loss`, in the transformed space). Each term
is logged (``train/<term>``, ``val/<term>``), plus ``val/MAE`` and
``val/MAE_persistence`` (mm/h, first step).

Augmentation (flips of inputs, targets, mask and motion, whose velocity
component changes sign with its axis; multiplicative noise on the input rates
in mm/h; crops, the rainiest of four random ones) is applied to the batch in
``training_step`` after torch's RNG is reseeded from (seed, epoch, batch), and
the shuffle order is a function of (seed, epoch), so a resumed run replays
exactly the batches of an uninterrupted one.

Examples
--------
>>> class PlusOne(torch.nn.Module):
...     def forward(self, frames, enc):
...         return frames[:, -1:] + 1.0
>>> inputs = torch.tensor([1.0, 2.0, 5.0]).reshape(1, 3, 1, 1)
>>> rollout_batch(PlusOne(), inputs, torch.zeros(1, 3, 4))[0, :, 0, 0].tolist()
[6.0, 7.0, 8.0]
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from downpour.config import Config, TrainConfig
from downpour.data.rain import (
    inverse_rain_transform,
    no_rain_value,
    rain_transform,
)
from downpour.data.transforms import MultiplicativeNoise
from downpour.models.registry import build_model
from downpour.nowcast.loss import nowcast_loss
from downpour.training.base import BaseModule, ratio

__all__ = [
    "NowcastModule",
    "nowcast_train_config",
    "rollout_batch",
]

_CROP_TRIES = 4


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
    motion: torch.Tensor | None = None,
) -> torch.Tensor:
    """Unroll the network, feeding each prediction back as the newest input frame.

    A network with ``needs_motion`` (the advection model) unrolls itself
    (its ``rollout``, given ``motion``); any other is called step by step.

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
    if getattr(net, "needs_motion", False):
        if motion is None:
            raise ValueError("this nowcaster advects: rollout_batch needs the motion field")
        return net.rollout(inputs, temporal, motion, post)  # type: ignore[operator]
    window, preds = inputs, []
    for k in range(temporal.shape[1]):
        pred = net(window, temporal[:, k])
        if post is not None:
            pred = post(pred)
        preds.append(pred)
        window = torch.cat([window[:, 1:], pred], dim=1)
    return torch.cat(preds, dim=1)


_SPATIAL = ("inputs", "targets", "valid", "motion")


def _flip(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Flip each window left-right and up-down with probability 1/2 (torch's global RNG).

    The motion's x velocity changes sign with a left-right flip, its y
    velocity with an up-down flip.
    """
    out = dict(batch)
    n = batch["inputs"].shape[0]
    for dim, comp in ((-1, 0), (-2, 1)):
        flip = torch.rand(n) < 0.5
        for key in _SPATIAL:
            t = out.get(key)
            if t is None:
                continue
            f = t.flip(dim)
            if key == "motion":
                f = f.clone()
                f[:, comp] = -f[:, comp]
            out[key] = torch.where(flip.view(n, *([1] * (t.ndim - 1))), f, t)
    return out


def _rainy_crop(batch: dict[str, torch.Tensor], size: int, dry: float) -> dict[str, torch.Tensor]:
    """Crop the spatial fields of a batch to ``size`` (one offset for the batch).

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
    for key in _SPATIAL:
        if key in batch:
            out[key] = batch[key][..., y0 : y0 + ch, x0 : x0 + cw]
    return out


class NowcastModule(BaseModule):
    """Train a :class:`~downpour.models.nowcast.NowcastUNet` from a :class:`Config`.

    Parameters
    ----------
    cfg
        Resolved configuration (``nowcast`` and ``train`` are used).
    stats
        :func:`~downpour.nowcast.datamodule.training_stats` of the training block, stored in
        checkpoints as the model's data facts.
    steps_per_epoch
        Optimiser steps per epoch (cosine schedule length).
    """

    kind = "nowcast"
    VAL_SUMS = ("model", "persistence", "n")

    def __init__(self, cfg: Config, stats: dict[str, float], steps_per_epoch: int = 1) -> None:
        super().__init__(
            cfg, stats, train_cfg=nowcast_train_config(cfg), steps_per_epoch=steps_per_epoch
        )
        self.nc = cfg.nowcast
        self.stats = self.info
        self.save_hyperparameters(
            {
                "config": cfg.model_dump(mode="json"),
                "stats": self.stats,
                "steps_per_epoch": self.steps_per_epoch,
            }
        )
        self.net = build_model("nowcast", cfg, self.stats)
        channels = range(self.nc.n_frames)
        self.noise = MultiplicativeNoise(self.nc.noise, channels) if self.nc.noise > 0 else None

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
            w_fss=nc.w_fss,
            fss_thresholds=tuple(
                float(rain_transform(torch.tensor(t), nc.transform)) for t in nc.fss_loss_thresholds
            ),
            fss_scales=tuple(nc.fss_loss_scales),
            fss_sharpness=nc.fss_loss_sharpness,
        )

    def augment(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Noise (inputs, in mm/h), flips and a crop of a batch (torch's global RNG)."""
        out = dict(batch)
        kind = self.nc.transform
        if self.noise is not None:
            rate = inverse_rain_transform(out["inputs"], kind)
            noisy = self.noise({"x": rate})["x"]
            out["inputs"] = rain_transform(noisy, kind)
        if self.nc.flips:
            out = _flip(out)
        if self.nc.crop is not None:
            out = _rainy_crop(out, self.nc.crop, no_rain_value(kind))
        return out

    # ------------------------------------------------------------------- steps
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Unrolled prediction and loss; stops with a clear message on a NaN/inf loss."""
        batch = self.augment(batch)
        preds = rollout_batch(
            self.net, batch["inputs"], batch["temporal"], motion=batch.get("motion")
        )
        total, terms = self._loss(preds, batch)
        self.check_finite(
            total,
            terms,
            batch_idx,
            "Lower nowcast.lr, enable train.grad_clip, or check the data",
        )
        bs = batch["inputs"].shape[0]
        self.log("train/loss", total, prog_bar=True, batch_size=bs)
        self.log_dict({f"train/{k}": v for k, v in terms.items() if k != "total"}, batch_size=bs)
        return total

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Loss terms of the unrolled forecast; MAE (mm/h, step 1) of model and persistence."""
        preds = rollout_batch(
            self.net, batch["inputs"], batch["temporal"], motion=batch.get("motion")
        )
        total, terms = self._loss(preds, batch)
        bs = batch["inputs"].shape[0]
        self.log("val/loss", total, batch_size=bs, prog_bar=True, sync_dist=True)
        self.log_dict(
            {f"val/{k}": v for k, v in terms.items() if k != "total"}, batch_size=bs, sync_dist=True
        )
        kind = self.nc.transform
        truth = inverse_rain_transform(batch["targets"][:, :1].double(), kind)
        mask = batch["valid"]
        for name, field in (("model", preds[:, :1]), ("persistence", batch["inputs"][:, -1:])):
            err = (inverse_rain_transform(field.double(), kind) - truth).abs()
            self.accumulate(name, torch.where(mask, err, 0.0).sum())
        self.accumulate("n", mask.sum())

    def on_validation_epoch_end(self) -> None:
        """Log ``val/MAE`` and ``val/MAE_persistence`` (mm/h) over every validation window."""
        sums = self.gathered_sums()
        for name, key in (("model", "val/MAE"), ("persistence", "val/MAE_persistence")):
            self.log(key, ratio(sums[name], sums["n"]), prog_bar=name == "model")
