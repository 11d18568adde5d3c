"""Lightning wiring of the cVAE: losses, KL schedule, validation metrics.

The network itself is a plain :class:`~downpour.models.cvae.CVAE`, built
through the model registry; this module only trains it, on the shared
:class:`~downpour.training.base.BaseModule` (reseeding, fast paths, NaN
guard, streaming validation sums, optimiser, checkpoint payload). Every loss
term is logged (``train/<term>``) and, on the validation days, ``val/MAE``
and ``val/MAE_tail`` (mm/day over valid cells; tail = truth above the
training P95 of wet values), ``val/MAE_prior`` (the same with z from the
prior: how much the decoder relies on z), the KL and every loss term.
Checkpoints carry the resolved config, the normalisation and the store
facts, so sampling needs nothing else.

With ``loss.objective: ensemble`` each training input gets ``loss.members``
members drawn from the prior (``net.members``), scored by
:func:`~downpour.losses.generator.ensemble_loss`; validation draws the same
number of members and logs ``val/CRPS`` (ECDF estimator, mm/day, valid
cells), ``val/MAE`` and ``val/MAE_tail`` of the ensemble mean, and
``val/spread_skill`` (√(mean member variance · (M+1)/M) / RMSE of the
ensemble mean; 1 for a calibrated ensemble).
"""

from __future__ import annotations

from typing import Any

import torch

from downpour.config import Config
from downpour.core.errors import DownpourError
from downpour.losses import almost_fair_crps, cvae_loss, ensemble_loss
from downpour.models.registry import build_model
from downpour.training.base import BaseModule, masked_mae, ratio
from downpour.training.schedules import kl_weight

__all__ = ["CVAEModule"]


class CVAEModule(BaseModule):
    """Train a :class:`~downpour.models.cvae.CVAE` from a :class:`Config` and the store facts.

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

    kind = "cvae"
    VAL_SUMS = (
        "MAE_sum", "MAE_n", "MAE_tail_sum", "MAE_tail_n", "MAE_prior_sum", "MAE_prior_n",
        "CRPS_sum", "VAR_sum", "SE_sum",
    )  # fmt: skip

    def __init__(self, cfg: Config, info: dict[str, Any], steps_per_epoch: int = 1) -> None:
        super().__init__(cfg, info, train_cfg=cfg.train, steps_per_epoch=steps_per_epoch)
        self.save_hyperparameters(
            {
                "config": cfg.model_dump(mode="json"),
                "info": self.info,
                "steps_per_epoch": self.steps_per_epoch,
            }
        )
        self.net = build_model("cvae", cfg, self.info)
        self.ensemble = cfg.loss.objective == "ensemble"
        if cfg.model.arch == "lowres" and not self.ensemble:
            raise DownpourError(
                "model.arch=lowres has no posterior encoder and trains with the ensemble "
                "objective only: set loss.objective=ensemble (or model.arch=pyramid)"
            )
        thr = info["thresholds"]
        self.tail_threshold = float(_quantile_threshold(thr, cfg.loss.tail_quantile))
        self.p95 = float(thr["P95"])
        self.wet_threshold = float(info["wet_threshold"])

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
    def _ensemble_losses(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        members = self.net.members(batch["x"], batch["s"], self.cfg.loss.members)
        total, terms = ensemble_loss(
            members,
            batch["y"],
            batch["mask"],
            self.cfg.loss,
            tail_threshold=self.tail_threshold,
            wet_threshold=self.wet_threshold,
        )
        return total, terms, members

    def step_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Return the training loss of ``batch`` under the configured objective (for benchmarks)."""
        return (self._ensemble_losses(batch) if self.ensemble else self._losses(batch))[0]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One optimisation step; stops with a clear message on a NaN/inf loss."""
        if self.ensemble:
            total, terms, _ = self._ensemble_losses(batch)
        else:
            total, terms, _ = self._losses(batch)
        self.check_finite(
            total, terms, batch_idx, "Lower train.lr, enable train.grad_clip, or check the data"
        )
        bs = batch["x"].shape[0]
        self.log("train/loss", total, prog_bar=True, batch_size=bs)
        if not self.ensemble:
            self.log("train/beta", self.beta(), batch_size=bs)
        self.log_dict({f"train/{k}": v for k, v in terms.items() if k != "total"}, batch_size=bs)
        return total

    def _ensemble_validation(self, batch: dict[str, torch.Tensor]) -> None:
        total, terms, members = self._ensemble_losses(batch)
        bs = batch["x"].shape[0]
        self.log("val/loss", total, batch_size=bs, sync_dist=True)
        self.log_dict(
            {f"val/{k}": v for k, v in terms.items() if k != "total"}, batch_size=bs, sync_dist=True
        )
        mask = batch["mask"].expand_as(batch["y"])
        truth = torch.expm1(batch["y"].float())
        mm = torch.expm1(members.float()).clamp_min(0)  # (B, M, H, W)
        crps = almost_fair_crps(mm, truth, mask, alpha=0.0, reduction="none")  # (B, H, W)
        m = mm.shape[1]
        mean = mm.mean(dim=1, keepdim=True)
        var = mm.var(dim=1, keepdim=True, unbiased=True)
        tail = mask & (truth > self.p95)
        for name, value in (
            ("CRPS_sum", crps[:, None][mask].sum()),
            ("VAR_sum", var[mask].sum() * (m + 1) / m),
            ("SE_sum", ((mean - truth) ** 2)[mask].sum()),
        ):
            self.accumulate(name, value)
        for name, p, msk in (("MAE", mean, mask), ("MAE_tail", mean, tail)):
            err, n = masked_mae(p, truth, msk)
            self.accumulate(f"{name}_sum", err)
            self.accumulate(f"{name}_n", n)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Loss terms (z = posterior mean) and streaming MAE / MAE_tail / MAE_prior."""
        if self.ensemble:
            self._ensemble_validation(batch)
            return
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
            self.accumulate(f"{name}_sum", err)
            self.accumulate(f"{name}_n", n)

    def on_validation_epoch_end(self) -> None:
        """Log MAE, MAE_tail and MAE_prior from the sums of every validation batch."""
        sums = self.gathered_sums()
        self.check_monitor(
            {"val/MAE_tail": sums["MAE_tail_n"]}, {"val/MAE_tail": "truth above the training P95"}
        )
        if self.ensemble:
            n = sums["MAE_n"]
            self.log("val/CRPS", ratio(sums["CRPS_sum"], n), prog_bar=True, sync_dist=False)
            for name in ("MAE", "MAE_tail"):
                value = ratio(sums[f"{name}_sum"], sums[f"{name}_n"])
                self.log(f"val/{name}", value, prog_bar=name == "MAE", sync_dist=False)
            spread = ratio(sums["VAR_sum"], n).sqrt()
            skill = ratio(sums["SE_sum"], n).sqrt()
            self.log("val/spread_skill", spread / skill, sync_dist=False)
            return
        for name in ("MAE", "MAE_tail", "MAE_prior"):
            value = ratio(sums[f"{name}_sum"], sums[f"{name}_n"])
            self.log(f"val/{name}", value, prog_bar=name != "MAE_prior", sync_dist=False)

    def payload_extra(self) -> dict[str, Any]:
        """Keep the normalisation at the top of the payload too (sampling reads it)."""
        return {"normalization": self.info["normalization"]}


def _quantile_threshold(thresholds: dict[str, float], q: float) -> float:
    key = f"P{round(q * 100):d}"
    if key not in thresholds:
        raise DownpourError(
            f"loss.tail_quantile={q} has no threshold in the store (has "
            f"{', '.join(sorted(thresholds))}); use 0.9, 0.95 or 0.99"
        )
    return thresholds[key]
