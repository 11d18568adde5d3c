"""One ``fit()`` scaffold that every model kind trains through, and what a fit produced.

:func:`fit` seeds, builds the data module and the module (in that order, so
the initial weights depend only on the seed), prints one line about the
model and its data, builds the trainer (:func:`~downpour.training.trainer.build_trainer`),
fits (resuming exactly from a checkpoint when asked), and writes
``RUN/metrics/train_<variant>.json`` from rank 0 (:func:`write_train_record`).
:func:`epoch_steps` is the one place where batches and optimiser steps per
epoch and rank are counted.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from downpour.config import TrainConfig
from downpour.core.checkpoint import read_checkpoint
from downpour.core.errors import DownpourError
from downpour.core.files import atomic_write_text
from downpour.core.rundir import RunDir
from downpour.training.base import BaseModule, count_parameters
from downpour.training.trainer import build_trainer, checkpoint_paths, per_rank_batches

__all__ = [
    "EpochTimer",
    "TrainResult",
    "check_resume",
    "collect_result",
    "epoch_steps",
    "fit",
    "launched_processes",
    "write_train_record",
]

DM = TypeVar("DM", bound=L.LightningDataModule)


@dataclass
class TrainResult:
    """What a training run produced."""

    run_dir: str
    best_checkpoint: str | None
    last_checkpoint: str | None
    epochs: int
    parameters: int
    seconds_per_epoch: float
    metrics: dict[str, float] = field(default_factory=dict)


class EpochTimer(Callback):
    """Wall-clock seconds of each training epoch (validation included)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._t0 = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start the epoch's clock."""
        self._t0 = time.perf_counter()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Record the epoch's seconds (sanity checks excluded)."""
        if not trainer.sanity_checking:
            self.times.append(time.perf_counter() - self._t0)


def collect_result(
    trainer: L.Trainer, timer: EpochTimer, run_dir: str | Path, n_params: int
) -> TrainResult:
    """Gather a finished fit's checkpoints, scalar metrics and timing as a :class:`TrainResult`."""
    best_path, last_path = checkpoint_paths(trainer)
    metrics = {
        k: float(v)
        for k, v in trainer.callback_metrics.items()
        if torch.is_tensor(v) and v.numel() == 1
    }
    return TrainResult(
        run_dir=str(run_dir),
        best_checkpoint=best_path,
        last_checkpoint=last_path,
        epochs=trainer.current_epoch,
        parameters=n_params,
        seconds_per_epoch=float(sum(timer.times) / len(timer.times)) if timer.times else math.nan,
        metrics=metrics,
    )


def write_train_record(
    trainer: L.Trainer, run_dir: str | Path, kind: str, record: dict[str, Any]
) -> None:
    """Write ``RUN/metrics/train_<kind>.json`` atomically, from rank 0 only under DDP."""
    if trainer.is_global_zero:
        atomic_write_text(RunDir(run_dir).train_record(kind), json.dumps(record, indent=2))


def launched_processes() -> int:
    """Return how many processes a launcher started together (``WORLD_SIZE``, ``SLURM_NTASKS``)."""
    import os

    for var in ("WORLD_SIZE", "SLURM_NTASKS"):
        try:
            n = int(os.environ.get(var, "1"))
        except ValueError:
            continue
        if n > 1:
            return n
    return 1


def check_resume(resume: str | Path | None, kind: str | None = None) -> None:
    """Refuse a ``--resume`` checkpoint before any work starts.

    The file must exist and read safely as a downpour checkpoint of ``kind``
    (:func:`downpour.core.checkpoint.read_checkpoint`, tensors and plain data
    only): Lightning then restores the training state from the same bytes,
    which can therefore hold nothing that runs code.
    """
    if resume is None:
        return
    if not Path(resume).is_file():
        raise DownpourError(f"--resume: checkpoint {resume} not found")
    try:
        read_checkpoint(resume, kind)
    except DownpourError as exc:
        raise DownpourError(f"--resume: {exc}") from None


def epoch_steps(
    n_items: int,
    batch_size: int,
    cfg: TrainConfig,
    *,
    batches: int | None = None,
    cap: int | None = None,
) -> tuple[int, int]:
    """Return ``(batches, optimiser steps)`` that each training process takes per epoch.

    Parameters
    ----------
    n_items
        Training items (days, windows) of the epoch.
    batch_size
        Items per batch.
    cfg
        Training settings (world size from ``devices × num_nodes``, ``accumulate``).
    batches
        A fixed number of batches per epoch (e.g. ``srdrn.batches_per_epoch``)
        instead of one pass over the items dealt out across ranks.
    cap
        At most this many batches (``max_batches_per_epoch``).

    Examples
    --------
    >>> cfg = TrainConfig(accumulate=2)
    >>> epoch_steps(100, 16, cfg)  # 7 batches, 4 optimiser steps (the last one short)
    (7, 4)
    >>> epoch_steps(100, 16, cfg, batches=10, cap=5)
    (5, 3)
    """
    n = batches or per_rank_batches(math.ceil(n_items / batch_size), cfg)
    if cap:
        n = min(n, cap)
    return n, math.ceil(n / cfg.accumulate)


def fit(
    run_dir: str | Path,
    *,
    train_cfg: TrainConfig,
    variant: str,
    module_kind: str | None = None,
    make_datamodule: Callable[[], DM],
    make_module: Callable[[DM], BaseModule],
    describe: Callable[[BaseModule, DM, int], str],
    resume: str | Path | None = None,
    echo: Callable[[str], Any] = print,
    record: Callable[[L.Trainer, TrainResult], dict[str, Any]] | None = None,
    max_epochs: int | None = None,
    **trainer_overrides: Any,
) -> TrainResult:
    """Train one model of a run; the scaffold shared by the cVAE, SRDRN and the nowcaster.

    Parameters
    ----------
    run_dir
        The run directory (checkpoints, logs and the training record go there).
    train_cfg
        The training settings of this model (seed, epochs, devices, ...).
    variant
        The run's name for the model: checkpoint and log folder, record name.
    module_kind
        The model kind a ``resume`` checkpoint must be of (``cvae``, ``srdrn``, ``nowcast``).
    make_datamodule
        Builds the data module (after seeding).
    make_module
        Builds the LightningModule from the data module (after it).
    describe
        Returns the line printed before training, from the module, the
        data module and the parameter count.
    resume
        A checkpoint to continue from exactly (weights, optimiser,
        schedulers, epoch, callbacks).
    echo
        Where progress lines go.
    record
        Returns extra keys of the training record (may also update the
        result's ``metrics``).
    max_epochs
        Overrides ``train_cfg.epochs``.
    **trainer_overrides
        Passed to the Lightning trainer (``extra_callbacks`` are appended to
        the standard ones).

    Returns
    -------
    TrainResult
    """
    check_resume(resume, module_kind)
    L.seed_everything(train_cfg.seed, workers=True, verbose=False)
    dm = make_datamodule()
    module = make_module(dm)
    n_params = count_parameters(module.net)
    echo(describe(module, dm, n_params))
    timer = EpochTimer()
    callbacks = [timer, *trainer_overrides.pop("extra_callbacks", [])]
    trainer = build_trainer(
        train_cfg,
        run_dir,
        kind=variant,
        max_epochs=max_epochs,
        extra_callbacks=callbacks,
        **trainer_overrides,
    )
    trainer.fit(module, datamodule=dm, ckpt_path=str(resume) if resume else None)
    result = collect_result(trainer, timer, run_dir, n_params)
    extra = record(trainer, result) if record is not None else {}
    write_train_record(trainer, run_dir, variant, {**asdict(result), **extra})
    return result
