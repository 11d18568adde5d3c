"""Lightning wiring of the cVAE: losses, KL schedule, metrics, optimiser.

The network itself is a plain :class:`~downpour.models.cvae.CVAE`; this
module only trains it. Every loss term is logged (``train/<term>``) and,
on the validation days, ``val/MAE`` and ``val/MAE_tail`` (mm/day over valid
cells; tail = truth above the training P95 of wet values), ``val/MAE_prior``
(the same with z from the prior: how much the decoder relies on z), the KL
and every loss term. Checkpoints carry the resolved config, the
normalisation and the store facts, so sampling needs nothing else.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from downpour.config import Config, TrainConfig
from downpour.core.errors import DownpourError
from downpour.losses import cvae_loss
from downpour.models.cvae import CVAE
from downpour.training.fast import FastPathsMixin
from downpour.training.optim import configure_optimizers
from downpour.training.schedules import kl_weight
from downpour.training.trainer import batch_seed

__all__ = ["CVAEModule", "masked_mae"]


def masked_mae(
    pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of absolute errors and count over ``mask`` (for streaming means).

    Parameters
    ----------
    pred, true
        ``(B, 1, H, W)`` in physical units.
    mask
        ``(B, 1, H, W)`` bool.

    Returns
    -------
    (Tensor, Tensor)
        Scalar sum of ``|pred − true|`` over the mask, and the number of cells.
    """
    err = (pred.float() - true.float()).abs()
    return torch.where(mask, err, 0.0).sum(), mask.sum()


class CVAEModule(FastPathsMixin, L.LightningModule):
    """Train a :class:`CVAE` from a :class:`Config` and the store facts.

    Parameters
    ----------
    cfg
        The resolved configuration (``model``, ``loss``, ``train`` are used).
    info
        Store facts from :func:`downpour.downscaling.datamodule.read_store_info`:
        channels, shapes, scale factor, thresholds, normalisation.
    steps_per_epoch
        Optimiser steps per epoch, for per-step KL schedules and LR warm-up.
    """

    def __init__(self, cfg: Config, info: dict[str, Any], steps_per_epoch: int = 1) -> None:
        super().__init__()
        self.cfg = cfg
        self.info = dict(info)
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.save_hyperparameters(
            {
                "config": cfg.model_dump(mode="json"),
                "info": self.info,
                "steps_per_epoch": self.steps_per_epoch,
            }
        )
        self.net = CVAE(
            cfg.model,
            x_channels=info["x_channels"],
            s_channels=info["s_channels"],
            shape=tuple(info["shape"]),
            scale_factor=info["scale_factor"],
        )
        thr = info["thresholds"]
        self.tail_threshold = float(_quantile_threshold(thr, cfg.loss.tail_quantile))
        self.p95 = float(thr["P95"])
        self.wet_threshold = float(info["wet_threshold"])
        self._val: dict[str, torch.Tensor] = {}

    # ----------------------------------------------------------------- helpers
    def beta(self) -> float:
        """KL weight at the current (fractional) epoch."""
        lc = self.cfg.loss
        epoch = (
            self.current_epoch + (self.global_step % self.steps_per_epoch) / self.steps_per_epoch
        )
        return kl_weight(
            epoch,
            beta=lc.beta_kl,
            schedule=lc.kl_schedule,
            warmup_epochs=lc.kl_warmup_epochs,
            cycle_period=lc.kl_cycle_period,
            cycle_drop=lc.kl_cycle_drop,
        )

    def _losses(
        self, batch: dict[str, torch.Tensor], *, temperature: float = 1.0
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], Any]:
        out = self.net(
            batch["x"], batch["s"], batch["y"], mode="posterior", temperature=temperature
        )
        total, terms = cvae_loss(
            out,
            batch["y"],
            batch["mask"],
            self.cfg.loss,
            beta=self.beta(),
            tail_threshold=self.tail_threshold,
            wet_threshold=self.wet_threshold,
            head=self.cfg.model.head,
        )
        return total, terms, out

    # ------------------------------------------------------------------- steps
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Reseed torch per batch so dropout and z-noise replay exactly after a resume.

        Seeding per (epoch, batch) rather than per epoch keeps the draws
        independent of whatever else consumed the global RNG in between
        (e.g. a DataLoader iterator drawing its base seed).
        """
        torch.manual_seed(
            batch_seed(self.cfg.train.seed, self.current_epoch, batch_idx, self.global_rank)
        )

    def fast_config(self) -> TrainConfig:
        """Return the training settings holding the fast-path switches."""
        return self.cfg.train

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One optimisation step; stops with a clear message on a NaN/inf loss."""
        total, terms, _ = self._losses(batch)
        if not torch.isfinite(total):
            bad = [k for k, v in terms.items() if k != "total" and not torch.isfinite(v)]
            raise DownpourError(
                f"the loss became {float(total)} at step {self.global_step} (epoch "
                f"{self.current_epoch}, batch {batch_idx}); non-finite term(s): "
                f"{', '.join(bad) or 'total'}. Training stopped; the last good checkpoint is "
                "kept in checkpoints/. Lower train.lr, enable train.grad_clip, or check the data"
            )
        bs = batch["x"].shape[0]
        self.log("train/loss", total, prog_bar=True, batch_size=bs)
        self.log("train/beta", self.beta(), batch_size=bs)
        self.log_dict({f"train/{k}": v for k, v in terms.items() if k != "total"}, batch_size=bs)
        return total

    def on_validation_epoch_start(self) -> None:
        """Reset the streaming MAE sums."""
        self._val = {}

    def _accumulate(self, name: str, value: torch.Tensor) -> None:
        self._val[name] = self._val.get(name, 0.0) + value.detach().double()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Loss terms (z = posterior mean) and streaming MAE / MAE_tail / MAE_prior."""
        total, terms, out = self._losses(batch, temperature=0.0)
        bs = batch["x"].shape[0]
        self.log("val/loss", total, batch_size=bs, sync_dist=True)
        self.log_dict(
            {f"val/{k}": v for k, v in terms.items() if k != "total"}, batch_size=bs, sync_dist=True
        )
        mask = batch["mask"].expand_as(batch["y"])
        truth = torch.expm1(batch["y"].float())
        pred = torch.expm1(out.y_hat.float()).clamp_min(0)
        prior = self.net(batch["x"], batch["s"], mode="prior", temperature=1.0)
        pred_prior = torch.expm1(prior.y_hat.float()).clamp_min(0)
        tail = mask & (truth > self.p95)
        for name, p, m in (
            ("MAE", pred, mask),
            ("MAE_tail", pred, tail),
            ("MAE_prior", pred_prior, mask),
        ):
            err, n = masked_mae(p, truth, m)
            self._accumulate(f"{name}_sum", err)
            self._accumulate(f"{name}_n", n)

    def on_validation_epoch_end(self) -> None:
        """Log MAE, MAE_tail and MAE_prior from the sums of every validation batch."""
        for name in ("MAE", "MAE_tail", "MAE_prior"):
            s = self._val.get(f"{name}_sum", torch.tensor(0.0, dtype=torch.float64))
            n = self._val.get(f"{name}_n", torch.tensor(0.0, dtype=torch.float64))
            if self.trainer.world_size > 1:
                s, n = self.all_gather(s).sum(), self.all_gather(n).sum()
            value = (s / n).float() if float(n) > 0 else torch.tensor(math.nan)
            self.log(f"val/{name}", value, prog_bar=name != "MAE_prior", sync_dist=False)

    # --------------------------------------------------------------- optimiser
    def configure_optimizers(self) -> Any:
        """Adam with cosine or plateau schedule and linear LR warm-up (``train``)."""
        return configure_optimizers(self.net.parameters(), self.cfg.train, self.steps_per_epoch)

    # -------------------------------------------------------------- checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store what sampling needs next to the weights."""
        checkpoint["downpour"] = {
            "kind": "cvae",
            "config": self.cfg.model_dump(mode="json"),
            "info": self.info,
            "normalization": self.info["normalization"],
        }


def _quantile_threshold(thresholds: dict[str, float], q: float) -> float:
    key = f"P{round(q * 100):d}"
    if key not in thresholds:
        raise DownpourError(
            f"loss.tail_quantile={q} has no threshold in the store (has "
            f"{', '.join(sorted(thresholds))}); use 0.9, 0.95 or 0.99"
        )
    return thresholds[key]
