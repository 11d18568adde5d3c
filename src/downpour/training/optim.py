"""Optimiser and learning-rate schedules: Adam, linear warm-up, cosine or plateau."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from downpour.config import TrainConfig

__all__ = ["configure_optimizers", "cosine_factor"]


def cosine_factor(step: int, *, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """LR multiplier: linear warm-up, then cosine decay to ``min_ratio``.

    Parameters
    ----------
    step
        Optimiser step (0-based).
    warmup_steps
        Steps of linear warm-up from ``1 / warmup_steps`` to 1.
    total_steps
        Steps of the whole run; the cosine reaches ``min_ratio`` there.
    min_ratio
        ``min_lr / lr``.

    Examples
    --------
    >>> cosine_factor(0, warmup_steps=0, total_steps=10, min_ratio=0.0)
    1.0
    >>> round(cosine_factor(5, warmup_steps=0, total_steps=10, min_ratio=0.0), 6)
    0.5
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def configure_optimizers(
    params: Iterable[torch.nn.Parameter], cfg: TrainConfig, steps_per_epoch: int
) -> Any:
    """Build Lightning's optimiser/scheduler configuration from ``train``.

    ``cosine``: per-step linear warm-up over ``warmup_epochs``, then cosine
    decay to ``min_lr`` at ``epochs``. ``plateau``: the same warm-up, then
    ReduceLROnPlateau on ``train.monitor`` (factor ``plateau_factor``,
    patience ``plateau_patience``, floor ``min_lr``). ``none``: constant
    after the warm-up.
    """
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = cfg.warmup_epochs * steps_per_epoch
    total = cfg.epochs * steps_per_epoch
    min_ratio = min(1.0, cfg.min_lr / cfg.lr)
    if cfg.scheduler == "cosine":
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt,
            lambda step: cosine_factor(
                step, warmup_steps=warm, total_steps=total, min_ratio=min_ratio
            ),
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
    schedulers: list[dict[str, Any]] = []
    if warm > 0:
        # multiplicative (chainable) warm-up: leaves later plateau reductions intact
        schedulers.append(
            {
                "scheduler": torch.optim.lr_scheduler.LinearLR(
                    opt, start_factor=1.0 / warm, end_factor=1.0, total_iters=max(1, warm - 1)
                ),  # steps 0..warm-1 see lr·(k+1)/warm, as the cosine warm-up
                "interval": "step",
            }
        )
    if cfg.scheduler == "plateau":
        schedulers.append(
            {
                "scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(
                    opt,
                    mode="min",
                    factor=cfg.plateau_factor,
                    patience=cfg.plateau_patience,
                    min_lr=cfg.min_lr,
                ),
                "interval": "epoch",
                "monitor": cfg.monitor,
            }
        )
    return ([opt], schedulers) if schedulers else {"optimizer": opt}
