"""Lightning wiring of SRDRN: loss, validation metrics, optimiser, checkpoint payload.

The network is a plain :class:`~downpour.models.srdrn.SRDRN`; this module only
trains it, with the same machinery as the cVAE (trainer factory, data module,
checkpoints, exact resume). The loss is the masked intensity-weighted MAE in
mm/day (:func:`downpour.losses.weighted_reconstruction` with
``w = clip(y / srdrn.loss_scale, srdrn.w_min, srdrn.w_max)`` and no tail
boost). Logged: ``train/loss``; on the validation days ``val/loss``,
``val/MAE`` and ``val/MAE_tail`` (mm/day over valid cells; tail = truth above
the training P95 of wet values) and ``val/CSI_P95`` (event = value > P95),
each streamed over every validation batch.

Which training settings SRDRN uses is decided in one place,
:func:`srdrn_train_config`.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from downpour.config import Config, TrainConfig
from downpour.core.errors import DownpourError
from downpour.losses import weighted_reconstruction
from downpour.models.srdrn import SRDRN
from downpour.downscaling.cvae_module import masked_mae
from downpour.training.fast import FastPathsMixin
from downpour.training.optim import configure_optimizers
from downpour.training.trainer import batch_seed

__all__ = ["SRDRN_MONITORS", "SRDRNModule", "srdrn_train_config", "store_threshold"]

#: Validation metrics that early stopping and the best checkpoint may watch (all: lower is better).
SRDRN_MONITORS = ("val/loss", "val/MAE", "val/MAE_tail")


def srdrn_train_config(cfg: Config, *, epochs: int | None = None) -> TrainConfig:
    """Return the ``train`` settings SRDRN trains with: ``train`` overridden by ``srdrn``.

    From ``srdrn``: ``epochs`` (or the ``epochs`` given here, e.g. to fit a
    step budget), ``batch_size``, ``lr``, ``scheduler``,
    ``min_heavy_fraction`` and ``patience`` (None: no early stopping, so a
    fixed budget is trained whole) and ``channels_last`` when set. No
    flips or noise (the published recipe
    has no augmentation), and no ``max_batches_per_epoch`` cap (SRDRN's
    epoch length is ``srdrn.batches_per_epoch``). ``train.monitor`` is kept
    when SRDRN logs it, otherwise ``val/MAE_tail`` is monitored. Everything
    else (seed, warm-up, clipping, accumulation, precision, devices,
    checkpoint cadence) comes from ``train``.
    """
    s, t = cfg.srdrn, cfg.train
    epochs = epochs or s.epochs
    return t.model_copy(
        update={
            "epochs": epochs,
            "batch_size": s.batch_size,
            "lr": s.lr,
            "scheduler": s.scheduler,
            "min_heavy_fraction": s.min_heavy_fraction,
            "patience": s.patience or epochs + 1,
            "flips": False,
            "noise": 0.0,
            "max_batches_per_epoch": None,
            "monitor": t.monitor if t.monitor in SRDRN_MONITORS else "val/MAE_tail",
            "channels_last": t.channels_last if s.channels_last is None else s.channels_last,
        }
    )


def store_threshold(thresholds: dict[str, float], name: str) -> float:
    """Return a threshold of the store's ``thresholds`` attribute by name (``"P95"``, any case).

    Raises
    ------
    DownpourError
        The store does not record it.
    """
    found = {k.upper(): float(v) for k, v in thresholds.items()}
    if name.upper() not in found:
        raise DownpourError(
            f"the store's thresholds attribute has no {name} (has {', '.join(thresholds)}); "
            "run `downpour prepare` again"
        )
    return found[name.upper()]


class SRDRNModule(FastPathsMixin, L.LightningModule):
    """Train an :class:`SRDRN` from a :class:`Config` and the store facts.

    Parameters
    ----------
    cfg
        The resolved configuration (``srdrn`` and ``train`` are used).
    info
        Store facts from :func:`downpour.downscaling.datamodule.read_store_info`.
    steps_per_epoch
        Optimiser steps per epoch, for the LR schedule.
    variant
        Name of this training run (the checkpoint folder, e.g. ``srdrn_real``).
    train_cfg
        Training settings; default :func:`srdrn_train_config` of ``cfg``.

    Notes
    -----
    Batches are those of :class:`~downpour.downscaling.dataset.PrecipDataset`:
    ``x (B, C, h, w)`` normalised predictors, ``y (B, 1, H, W)`` log1p rain,
    ``mask (B, 1, H, W)``. The network returns mm/day; the truth is
    ``expm1(y)``.
    """

    def __init__(
        self,
        cfg: Config,
        info: dict[str, Any],
        steps_per_epoch: int = 1,
        variant: str = "srdrn",
        train_cfg: TrainConfig | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.info = dict(info)
        self.variant = variant
        self.train_cfg = train_cfg or srdrn_train_config(cfg)
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.save_hyperparameters(
            {
                "config": cfg.model_dump(mode="json"),
                "info": self.info,
                "steps_per_epoch": self.steps_per_epoch,
                "variant": variant,
            }
        )
        self.net = SRDRN.from_config(
            cfg.srdrn, in_channels=info["x_channels"], scale_factor=info["scale_factor"]
        )
        self.p95 = store_threshold(info["thresholds"], "P95")
        self._val: dict[str, torch.Tensor] = {}

    # ----------------------------------------------------------------- loss
    def loss(self, pred: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Masked intensity-weighted MAE of ``pred`` vs ``truth`` ``(B, 1, H, W)``, mm/day."""
        s = self.cfg.srdrn
        return weighted_reconstruction(
            pred,
            truth,
            mask,
            scale=s.loss_scale,
            w_min=s.w_min,
            w_max=s.w_max,
            tail_threshold=math.inf,
            tail_boost=1.0,
        )

    def _forward(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pred = self.net(batch["x"])
        truth = torch.expm1(batch["y"].float())
        return pred, truth, batch["mask"]

    # ---------------------------------------------------------------- steps
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Reseed torch per (epoch, batch), so any random draw replays exactly after a resume."""
        torch.manual_seed(
            batch_seed(self.train_cfg.seed, self.current_epoch, batch_idx, self.global_rank)
        )

    def fast_config(self) -> TrainConfig:
        """Return the training settings holding the fast-path switches."""
        return self.train_cfg

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One optimisation step; stops with a clear message on a NaN/inf loss."""
        pred, truth, mask = self._forward(batch)
        loss = self.loss(pred, truth, mask)
        if not torch.isfinite(loss):
            raise DownpourError(
                f"the SRDRN loss became {float(loss.detach())} at step {self.global_step} (epoch "
                f"{self.current_epoch}, batch {batch_idx}). Training stopped; the last good "
                f"checkpoint is kept in checkpoints/{self.variant}/. Lower srdrn.lr, enable "
                "train.grad_clip, or check the data"
            )
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["x"].shape[0])
        return loss

    def on_validation_epoch_start(self) -> None:
        """Reset the streaming sums."""
        self._val = {}

    def _accumulate(self, name: str, value: torch.Tensor) -> None:
        self._val[name] = self._val.get(name, 0.0) + value.detach().double()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Loss, and streaming sums for MAE, MAE_tail and the P95 contingency table."""
        pred, truth, mask = self._forward(batch)
        self.log(
            "val/loss",
            self.loss(pred, truth, mask),
            batch_size=batch["x"].shape[0],
            sync_dist=True,
        )
        mask = mask.expand_as(truth)
        tail = mask & (truth > self.p95)
        for name, m in (("MAE", mask), ("MAE_tail", tail)):
            err, n = masked_mae(pred, truth, m)
            self._accumulate(f"{name}_sum", err)
            self._accumulate(f"{name}_n", n)
        event = mask & (pred > self.p95)
        self._accumulate("hits", (event & tail).sum())
        self._accumulate("false_alarms", (event & ~tail).sum())
        self._accumulate("misses", (tail & ~event).sum())

    def on_validation_epoch_end(self) -> None:
        """Log ``val/MAE``, ``val/MAE_tail`` and ``val/CSI_P95`` from the summed batches."""
        zero = torch.tensor(0.0, dtype=torch.float64, device=self.device)
        sums = {k: self._val.get(k, zero) for k in self._NAMES}
        if self.trainer.world_size > 1:
            sums = {k: self.all_gather(v).sum() for k, v in sums.items()}
        for name in ("MAE", "MAE_tail"):
            n = float(sums[f"{name}_n"])
            value = (sums[f"{name}_sum"] / n).float() if n > 0 else torch.tensor(math.nan)
            self.log(f"val/{name}", value, prog_bar=True, sync_dist=False)
        union = float(sums["hits"] + sums["false_alarms"] + sums["misses"])
        csi = float(sums["hits"]) / union if union > 0 else math.nan
        self.log("val/CSI_P95", torch.tensor(csi, dtype=torch.float32), sync_dist=False)

    _NAMES = ("MAE_sum", "MAE_n", "MAE_tail_sum", "MAE_tail_n", "hits", "false_alarms", "misses")

    # ------------------------------------------------------------ optimiser
    def configure_optimizers(self) -> Any:
        """Adam at ``srdrn.lr`` with ``srdrn.scheduler`` and ``train``'s warm-up."""
        return configure_optimizers(self.net.parameters(), self.train_cfg, self.steps_per_epoch)

    # ----------------------------------------------------------- checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store what prediction needs next to the weights."""
        checkpoint["downpour"] = {
            "kind": "srdrn",
            "variant": self.variant,
            "config": self.cfg.model_dump(mode="json"),
            "info": self.info,
            "normalization": self.info["normalization"],
        }
