"""The base LightningModule every downpour model trains with: :class:`BaseModule`.

It holds what the cVAE, SRDRN and nowcast modules share, so that they cannot
drift apart:

- **reseeding**: torch's RNG is seeded per (seed, epoch, batch, rank) at the
  start of every training batch (:func:`downpour.training.trainer.batch_seed`),
  so dropout, latent noise and augmentation replay exactly after a resume,
  whatever else drew from the global RNG in between;
- **fast paths**: channels_last and ``torch.compile`` (:class:`FastPathsMixin`);
- **NaN guard**: a non-finite training loss stops training with one message
  that names the step and the non-finite terms (:meth:`check_finite`);
- **streaming validation**: subclasses add sums (errors, counts, contingency
  cells) batch by batch with :meth:`accumulate`; :meth:`gathered_sums`
  returns them summed over every validation batch of every DDP rank (one
  ``all_gather`` per name, in a fixed order, on every rank), so validation
  may be sharded across ranks and still give the one-process numbers;
- **optimiser**: Adam with the warm-up and schedule of :attr:`train_cfg`;
- **checkpoint payload**: :meth:`on_save_checkpoint` stores the plain-data
  payload of :func:`downpour.core.checkpoint.payload` (kind, variant, config,
  data facts) that :func:`downpour.models.loading.load_model` reads back.

A subclass sets :attr:`kind`, builds ``self.net`` through
:func:`downpour.models.registry.build_model`, and implements
``training_step``/``validation_step``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import nn

from downpour.config import Config, TrainConfig
from downpour.core.checkpoint import PAYLOAD_KEY, payload
from downpour.core.errors import DownpourError
from downpour.training.fast import FastPathsMixin
from downpour.training.optim import configure_optimizers
from downpour.training.trainer import batch_seed

__all__ = ["BaseModule", "count_parameters", "masked_mae", "ratio"]


def count_parameters(net: nn.Module) -> int:
    """Return the number of parameters of ``net`` (trainable or not)."""
    return sum(p.numel() for p in net.parameters())


def ratio(num: torch.Tensor | float, den: torch.Tensor | float) -> torch.Tensor:
    """Return ``num / den`` as a float32 scalar, NaN when ``den`` is 0 (an empty mean)."""
    n = float(den)
    return torch.tensor(float(num) / n if n > 0 else math.nan, dtype=torch.float32)


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


class BaseModule(FastPathsMixin, L.LightningModule):
    """Shared Lightning wiring of every downpour model.

    Parameters
    ----------
    cfg
        The run's resolved configuration (stored in checkpoints).
    info
        Data facts the network needs to run (stored in checkpoints).
    train_cfg
        The training settings this model trains with (its own epochs, lr,
        batch size … already merged into ``train``).
    steps_per_epoch
        Optimiser steps per epoch, for per-step schedules.
    variant
        The run's name for this model (checkpoint and log folder); default :attr:`kind`.
    """

    #: Model kind: the registry name and the checkpoint's kind.
    kind: str = ""
    #: Names of the streaming validation sums, in the order they are gathered.
    VAL_SUMS: Sequence[str] = ()

    def __init__(
        self,
        cfg: Config,
        info: Mapping[str, Any],
        *,
        train_cfg: TrainConfig,
        steps_per_epoch: int = 1,
        variant: str | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.info = dict(info)
        self.train_cfg = train_cfg
        self.variant = variant or self.kind
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self._val: dict[str, torch.Tensor] = {}

    # ---------------------------------------------------------------- hooks
    def fast_config(self) -> TrainConfig:
        """Return the training settings holding the fast-path switches."""
        return self.train_cfg

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Reseed torch per (seed, epoch, batch, rank): random draws replay after a resume."""
        torch.manual_seed(
            batch_seed(self.train_cfg.seed, self.current_epoch, batch_idx, self.global_rank)
        )

    def check_finite(
        self, total: torch.Tensor, terms: Mapping[str, torch.Tensor], batch_idx: int, hint: str
    ) -> None:
        """Stop with one clear message when the training loss is NaN or infinite.

        Parameters
        ----------
        total
            The loss of this step.
        terms
            Its named terms; the non-finite ones are named in the message.
        batch_idx
            Batch of the epoch.
        hint
            What the user can change (e.g. ``"Lower train.lr, ..."``).
        """
        if torch.isfinite(total):
            return
        bad = [k for k, v in terms.items() if k != "total" and not torch.isfinite(v)]
        labels = {"cvae": "the loss", "srdrn": "the SRDRN loss"}
        label = labels.get(self.kind, f"the {self.kind} loss")
        named = f"; non-finite term(s): {', '.join(bad) or 'total'}" if terms else ""
        raise DownpourError(
            f"{label} became {float(total.detach())} at step {self.global_step} (epoch "
            f"{self.current_epoch}, batch {batch_idx}){named}. Training stopped; the last good "
            f"checkpoint is kept in checkpoints/{self.variant}/. {hint}"
        )

    # ------------------------------------------------------ streaming sums
    def on_validation_epoch_start(self) -> None:
        """Reset the streaming validation sums."""
        self._val = {}

    def accumulate(self, name: str, value: torch.Tensor | float) -> None:
        """Add ``value`` to the streaming validation sum ``name`` (float64)."""
        if isinstance(value, torch.Tensor):
            value = value.detach().double()
        else:
            value = torch.tensor(float(value), dtype=torch.float64, device=self.device)
        self._val[name] = self._val.get(name, 0.0) + value

    def gathered_sums(self) -> dict[str, torch.Tensor]:
        """Return every sum of :attr:`VAL_SUMS` over all validation batches of all ranks.

        A name no batch added is 0. Under DDP each sum is gathered from every
        rank (the same names in the same order on each, so no rank waits).
        """
        zero = torch.tensor(0.0, dtype=torch.float64, device=self.device)
        sums = {k: self._val.get(k, zero) for k in self.VAL_SUMS}
        if self.trainer.world_size > 1:
            sums = {k: self.all_gather(v).sum() for k, v in sums.items()}
        return sums

    def check_monitor(self, counts: Mapping[str, torch.Tensor], what: Mapping[str, str]) -> None:
        """Refuse a monitored validation metric that is undefined because it averages nothing.

        Parameters
        ----------
        counts
            ``{metric: number of cells it averaged}`` over the whole validation split.
        what
            ``{metric: what its cells are}`` for the message (e.g. ``"truth above the
            training P95"``).

        Raises
        ------
        DownpourError
            When ``train.monitor`` is one of ``counts`` and its count is 0: early
            stopping and the best checkpoint would be blind.
        """
        monitor = self.train_cfg.monitor
        if monitor in counts and float(counts[monitor]) == 0:
            raise DownpourError(
                f"{monitor} is undefined: the validation split holds no cell with "
                f"{what.get(monitor, 'data')}, so early stopping and best.ckpt would be blind; "
                "set train.monitor=val/MAE or choose validation days with heavy rain"
            )

    # ----------------------------------------------------------- optimiser
    def configure_optimizers(self) -> Any:
        """Adam with :attr:`train_cfg`'s warm-up and schedule (cosine, plateau or none)."""
        return configure_optimizers(self.net.parameters(), self.train_cfg, self.steps_per_epoch)

    # ----------------------------------------------------------- checkpoint
    def payload_extra(self) -> dict[str, Any]:
        """Return further plain-data keys of the checkpoint payload (none by default)."""
        return {}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the payload that rebuilds the network (kind, config, data facts)."""
        checkpoint[PAYLOAD_KEY] = payload(
            self.kind,
            self.cfg.model_dump(mode="json"),
            self.info,
            variant=self.variant,
            **self.payload_extra(),
        )
