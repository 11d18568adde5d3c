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

A quantile SRDRN (``srdrn.quantiles``) trains with the pinball loss instead
(:func:`downpour.losses.pinball_loss`: each head's masked mean, heads
averaged), logged as ``train/loss`` and one ``train/pinball_<τ>`` per head.
Synthetic training days (batch key ``is_synthetic``) enter every head's
term with ``srdrn.synthetic_heads=all``, and only the median head's with
``median`` (the other heads see the real days only). On the validation days
``val/loss`` is the pinball loss; ``val/MAE``, ``val/MAE_tail`` and
``val/CSI_P95`` score the **median head**, the τ closest to 0.5 (the lower
of two equally close, :func:`~downpour.models.srdrn.median_head`), so the
monitors, early stopping and ``best.ckpt`` work as for the deterministic
network; ``val/cover_<τ>`` is each head's observed non-exceedance, the
fraction of valid cells whose truth is ≤ the head (nominal: τ; ties count
as covered).

Which training settings SRDRN uses is decided in one place,
:func:`srdrn_train_config`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from downpour.config import Config, TrainConfig
from downpour.core.errors import DownpourError
from downpour.losses import pinball_loss, weighted_reconstruction
from downpour.models.registry import build_model
from downpour.models.srdrn import SRDRN, median_head
from downpour.training.base import BaseModule, masked_mae, ratio

__all__ = [
    "SRDRN_MONITORS",
    "SRDRNModule",
    "cover_name",
    "srdrn_train_config",
    "store_threshold",
]

#: Validation metrics that early stopping and the best checkpoint may watch (all: lower is better).
SRDRN_MONITORS = ("val/loss", "val/MAE", "val/MAE_tail")


def srdrn_train_config(cfg: Config, *, epochs: int | None = None) -> TrainConfig:
    """Return the ``train`` settings SRDRN trains with: ``train`` overridden by ``srdrn``.

    From ``srdrn``: ``epochs`` (or the ``epochs`` given here, e.g. to fit a
    step budget), ``batch_size``, ``lr``, ``scheduler``,
    ``min_heavy_fraction`` and ``patience`` (None: no early stopping, so a
    fixed budget is trained whole), ``channels_last`` and ``val_every`` when set. No
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
            "channels_last": SRDRN.trained_channels_last(cfg),
            "val_every": s.val_every or t.val_every,
        }
    )


def cover_name(tau: float) -> str:
    """Name of a head's observed non-exceedance, logged as ``val/<name>``.

    Examples
    --------
    >>> cover_name(0.95), cover_name(0.999)
    ('cover_0.95', 'cover_0.999')
    """
    return f"cover_{float(tau)!r}"


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


class SRDRNModule(BaseModule):
    """Train an :class:`~downpour.models.srdrn.SRDRN` from a :class:`Config` and the store facts.

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
    ``mask (B, 1, H, W)``, ``is_synthetic (B,)``. The network returns mm/day,
    ``(B, 1, H, W)`` or ``(B, Q, H, W)`` for Q quantiles; the truth is
    ``expm1(y)``.
    """

    kind = "srdrn"
    VAL_SUMS = ("MAE_sum", "MAE_n", "MAE_tail_sum", "MAE_tail_n", "hits", "false_alarms", "misses")

    def __init__(
        self,
        cfg: Config,
        info: dict[str, Any],
        steps_per_epoch: int = 1,
        variant: str = "srdrn",
        train_cfg: TrainConfig | None = None,
    ) -> None:
        super().__init__(
            cfg,
            info,
            train_cfg=train_cfg or srdrn_train_config(cfg),
            steps_per_epoch=steps_per_epoch,
            variant=variant,
        )
        self.save_hyperparameters(
            {
                "config": cfg.model_dump(mode="json"),
                "info": self.info,
                "steps_per_epoch": self.steps_per_epoch,
                "variant": variant,
            }
        )
        self.net = build_model("srdrn", cfg, self.info)
        self.p95 = store_threshold(info["thresholds"], "P95")
        self.quantiles = tuple(float(t) for t in cfg.srdrn.quantiles)
        self.median = median_head(self.quantiles)
        #: validation sums: the class's, plus one non-exceedance count per head
        self.VAL_SUMS = (*type(self).VAL_SUMS, *(cover_name(t) for t in self.quantiles))

    # ----------------------------------------------------------------- loss
    def loss(
        self,
        pred: torch.Tensor,
        truth: torch.Tensor,
        mask: torch.Tensor,
        is_synthetic: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return the training loss of ``pred`` vs ``truth (B, 1, H, W)`` (:meth:`loss_terms`)."""
        return self.loss_terms(pred, truth, mask, is_synthetic)[0]

    def loss_terms(
        self,
        pred: torch.Tensor,
        truth: torch.Tensor,
        mask: torch.Tensor,
        is_synthetic: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return the training loss and its terms by name.

        Deterministic network (``pred (B, 1, H, W)``): the masked
        intensity-weighted MAE, no terms. Quantile network (``pred (B, Q, H,
        W)``): the pinball loss, one term per head (``pinball_<τ>``); with
        ``srdrn.synthetic_heads=median`` the items flagged ``is_synthetic
        (B,)`` weigh 0 in every head but the median one.
        """
        s = self.cfg.srdrn
        if not self.quantiles:
            loss = weighted_reconstruction(
                pred,
                truth,
                mask,
                scale=s.loss_scale,
                w_min=s.w_min,
                w_max=s.w_max,
                tail_threshold=math.inf,
                tail_boost=1.0,
            )
            return loss, {}
        weights = None
        if is_synthetic is not None and s.synthetic_heads == "median":
            real = (~is_synthetic.to(device=pred.device, dtype=torch.bool)).float()
            weights = real[:, None].repeat(1, len(self.quantiles))
            weights[:, self.median] = 1.0
        return pinball_loss(pred, truth, mask, self.quantiles, item_weights=weights)

    def _forward(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pred = self.net(batch["x"])
        truth = torch.expm1(batch["y"].float())
        return pred, truth, batch["mask"]

    # ---------------------------------------------------------------- steps
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One optimisation step; stops with a clear message on a NaN/inf loss."""
        pred, truth, mask = self._forward(batch)
        loss, terms = self.loss_terms(pred, truth, mask, batch.get("is_synthetic"))
        self.check_finite(
            loss, terms, batch_idx, "Lower srdrn.lr, enable train.grad_clip, or check the data"
        )
        n = batch["x"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        for name, value in terms.items():
            if name != "total":
                self.log(f"train/{name}", value.detach(), batch_size=n)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Loss, and streaming sums for MAE, MAE_tail, the P95 table and each head's cover."""
        pred, truth, mask = self._forward(batch)
        self.log(
            "val/loss",
            self.loss(pred, truth, mask),
            batch_size=batch["x"].shape[0],
            sync_dist=True,
        )
        mask = mask.expand_as(truth)
        for k, tau in enumerate(self.quantiles):
            self.accumulate(cover_name(tau), (mask & (truth <= pred[:, k : k + 1])).sum())
        pred = pred[:, self.median : self.median + 1]  # the point forecast
        tail = mask & (truth > self.p95)
        for name, m in (("MAE", mask), ("MAE_tail", tail)):
            err, n = masked_mae(pred, truth, m)
            self.accumulate(f"{name}_sum", err)
            self.accumulate(f"{name}_n", n)
        event = mask & (pred > self.p95)
        self.accumulate("hits", (event & tail).sum())
        self.accumulate("false_alarms", (event & ~tail).sum())
        self.accumulate("misses", (tail & ~event).sum())

    def on_validation_epoch_end(self) -> None:
        """Log ``val/MAE``, ``val/MAE_tail``, ``val/CSI_P95`` and ``val/cover_<τ>``."""
        sums = self.gathered_sums()
        self.check_monitor(
            {"val/MAE_tail": sums["MAE_tail_n"]}, {"val/MAE_tail": "truth above the training P95"}
        )
        for name in ("MAE", "MAE_tail"):
            value = ratio(sums[f"{name}_sum"], sums[f"{name}_n"])
            self.log(f"val/{name}", value, prog_bar=True, sync_dist=False)
        union = sums["hits"] + sums["false_alarms"] + sums["misses"]
        self.log("val/CSI_P95", ratio(sums["hits"], union), sync_dist=False)
        for tau in self.quantiles:
            name = cover_name(tau)
            self.log(f"val/{name}", ratio(sums[name], sums["MAE_n"]), sync_dist=False)

    def payload_extra(self) -> dict[str, Any]:
        """Keep the normalisation at the top of the payload too."""
        return {"normalization": self.info["normalization"]}
