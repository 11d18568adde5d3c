"""The trainer factory: one Lightning ``Trainer`` built from ``train``.

Checkpoints go to ``RUN/checkpoints/``: ``epoch=NNN.ckpt`` every
``train.checkpoint_every`` epochs, ``best.ckpt`` on the monitored validation
metric and ``last.ckpt``, each written atomically (:class:`AtomicCheckpointIO`: a
temporary file beside it, renamed into place), so an interrupted save never
replaces a good checkpoint with a broken one. Logs go
to ``RUN/logs/<kind>/version_N/`` as CSV (``metrics.csv``), and as
TensorBoard events when TensorBoard is installed; a resumed fit writes the
next version, so no log is overwritten. Early stopping watches
``train.monitor`` with ``patience`` and ``min_delta``, and stops training when it
becomes NaN or infinite (a diverged model); a metric that is undefined because
the validation split holds nothing to average (no tail cell) is refused before,
with a clear message (:meth:`downpour.training.base.BaseModule.check_monitor`).
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    TQDMProgressBar,
)
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from downpour.config import TrainConfig
from downpour.core.files import atomic_file
from downpour.core.rundir import RunDir

__all__ = [
    "AtomicCheckpointIO",
    "LastCheckpoint",
    "batch_seed",
    "build_trainer",
    "per_rank_batches",
    "warn_slow_bf16",
    "checkpoint_paths",
    "processes_per_node",
    "resolve_strategy",
    "val_cadence",
]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file beside it and rename it into place.

    Lightning commits a checkpoint by moving it from a temporary location that
    may lie on another filesystem, where the move is a copy: a process killed
    during it leaves a truncated ``last.ckpt``. Here the file is written next
    to its destination and :func:`os.replace` swaps it in, so a killed save
    leaves the previous checkpoint (or none), never a broken one.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        """Save ``checkpoint`` at ``path`` atomically (same-directory temporary file + rename)."""
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(dest) as tmp:  # also removes temporaries of earlier killed saves
            torch.save(checkpoint, tmp)


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt`` after every epoch, with a state key of its own.

    ``save_last`` on the monitored callback rewrites ``last.ckpt`` only in
    epochs that improve the monitored metric, so a resume could restart from
    an old epoch; this callback always holds the newest epoch.
    """

    def __init__(self, dirpath: str | Path) -> None:
        super().__init__(
            dirpath=dirpath,
            filename="last",
            monitor=None,
            save_top_k=1,
            every_n_epochs=1,
            enable_version_counter=False,
        )

    @property
    def state_key(self) -> str:
        """Return a key distinct from any periodic checkpoint callback's."""
        return self._generate_state_key(role="last", every_n_epochs=1)


def checkpoint_paths(trainer: L.Trainer) -> tuple[str | None, str | None]:
    """Return the ``(best, last)`` checkpoint paths written by a fitted trainer (None if absent)."""
    best = last = None
    for cb in trainer.checkpoint_callbacks:
        if not isinstance(cb, ModelCheckpoint):
            continue
        if cb.monitor is not None:
            best = cb.best_model_path or None
        elif isinstance(cb, LastCheckpoint):
            last = cb.best_model_path or None
    return best, last


def processes_per_node(cfg: TrainConfig) -> int:
    """Training processes per node that ``train.devices`` asks for (1 when unsure).

    ``devices`` is a count (``2``), ``"auto"`` / ``-1`` (every visible GPU
    with a GPU accelerator, else 1) or a list of device indices (``"0,1"``).
    """
    d = cfg.devices
    text = str(d).strip()
    if text in ("auto", "-1"):
        gpu = cfg.accelerator in ("gpu", "cuda") or (
            cfg.accelerator == "auto" and torch.cuda.is_available()
        )
        return max(1, torch.cuda.device_count()) if gpu else 1
    if "," in text or text.startswith("["):
        return len([p for p in text.strip("[]").split(",") if p.strip()])
    try:
        return max(1, int(text))
    except ValueError:
        return 1


def resolve_strategy(cfg: TrainConfig) -> str:
    """Return the Lightning strategy of ``train.strategy``.

    ``"auto"`` is Lightning's choice on one device, and
    ``"ddp_find_unused_parameters_true"`` when ``devices × num_nodes > 1``:
    the cVAE's conditional prior enters the loss only through the KL term,
    which is skipped while the KL weight is 0 (warm-up, cyclical schedules),
    and plain ``"ddp"`` stops at such a step with "parameters that were not
    used in producing the loss". Parameters unused on every rank keep no
    gradient, as on one device, so the optimiser skips them the same way.
    Any other value is passed through (e.g. ``"ddp"`` for models that use
    every parameter in every step, ``"ddp_spawn"``).
    """
    if cfg.strategy != "auto":
        return cfg.strategy
    if cfg.num_nodes * processes_per_node(cfg) > 1:
        return "ddp_find_unused_parameters_true"
    return "auto"


def batch_seed(seed: int, epoch: int, batch_idx: int, rank: int = 0) -> int:
    """Torch seed of one training batch: a function of (seed, epoch, batch, rank).

    Reseeding per batch makes dropout and noise replay exactly after a
    resume; the rank term gives every DDP process its own draws (rank 0
    keeps the single-device seeds, so one-device runs are unchanged).
    """
    return ((seed * 1_000_003 + epoch) * 100_003 + batch_idx + rank * 1_000_000_007) % 2**63


def per_rank_batches(total_batches: int, cfg: TrainConfig) -> int:
    """Batches each training process takes per epoch when ``total_batches`` are dealt out.

    The stratified sampler deals whole batches round-robin and pads the
    schedule with full batches to a multiple of the world size, so every rank
    runs ``ceil(total / world)`` steps (DDP needs equal counts).
    """
    world = max(1, cfg.num_nodes * processes_per_node(cfg))
    return max(1, -(-total_batches // world))


def warn_slow_bf16(cfg: TrainConfig) -> bool:
    """Warn when ``bf16-mixed`` will run on a CPU without native bf16 kernels; return whether.

    Without AVX512-BF16 or AMX, PyTorch computes bf16 convolutions with
    its slow reference kernels: on the 2-core AVX2 machine of
    ``benchmarks/RESULTS.md`` a cVAE training step is 12× slower than fp32.
    """
    on_cpu = cfg.accelerator == "cpu" or (
        cfg.accelerator == "auto" and not torch.cuda.is_available()
    )
    if cfg.precision != "bf16-mixed" or not on_cpu:
        return False
    if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return False
    warnings.warn(
        f"train.precision=bf16-mixed on a CPU without native bf16 kernels "
        f"({torch.backends.cpu.get_cpu_capability()}): convolutions fall back to slow reference "
        "code (about 12× slower than fp32 here); use train.precision=32 on this machine",
        stacklevel=3,
    )
    return True


def val_cadence(val_every: int, epochs: int) -> int:
    """Validate every N epochs: the largest N ≤ ``val_every`` dividing ``epochs``.

    So the last epoch is always validated (and checkpointed), whatever the
    number of epochs.

    Examples
    --------
    >>> val_cadence(4, 8), val_cadence(4, 2), val_cadence(4, 5), val_cadence(1, 7)
    (4, 2, 1, 1)
    """
    return max(n for n in range(1, max(1, val_every) + 1) if epochs % n == 0)


def build_trainer(
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    kind: str,
    max_epochs: int | None = None,
    extra_callbacks: list[Callback] | None = None,
    enable_progress_bar: bool = True,
    **overrides: Any,
) -> L.Trainer:
    """Build the Lightning trainer for one model of a run.

    Parameters
    ----------
    cfg
        Training settings (epochs, precision, clipping, accumulation,
        early stopping, checkpointing, devices).
    run_dir
        The run directory.
    kind
        Model name, used for the checkpoint and log folders.
    max_epochs
        Overrides ``cfg.epochs``.
    extra_callbacks
        Appended to the standard callbacks.
    enable_progress_bar
        Show Lightning's progress bar.
    **overrides
        Passed to :class:`lightning.Trainer` last (e.g. ``limit_train_batches``).
    """
    run_dir = Path(run_dir)
    warn_slow_bf16(cfg)
    run = RunDir(run_dir)
    ckpt_dir = run.checkpoints(kind)
    periodic = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="{epoch:03d}",
        every_n_epochs=cfg.checkpoint_every,
        save_top_k=-1,
        auto_insert_metric_name=True,
        enable_version_counter=False,  # a resumed run rewrites epoch=NNN, not epoch=NNN-v1
    )
    best = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best",
        monitor=cfg.monitor,
        mode="min",
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    last = LastCheckpoint(ckpt_dir)
    callbacks: list[Callback] = [
        periodic,
        best,
        last,
        EarlyStopping(
            monitor=cfg.monitor,
            patience=cfg.patience,
            min_delta=cfg.min_delta,
            mode="min",
            check_finite=True,  # a NaN or infinite validation metric stops training
        ),
        LearningRateMonitor(logging_interval="epoch"),
    ]
    if enable_progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=1))
    callbacks.extend(extra_callbacks or [])
    # one version folder per fit (version_0, version_1 after a resume, ...): nothing is overwritten
    csv_logger = CSVLogger(run.logs_dir, name=kind)
    loggers: list[Logger] = [csv_logger]
    if importlib.util.find_spec("tensorboard") is not None:
        loggers.append(
            TensorBoardLogger(
                run.logs_dir, name=kind, version=csv_logger.version, default_hp_metric=False
            )
        )
    kwargs: dict[str, Any] = {
        "max_epochs": max_epochs or cfg.epochs,
        "accelerator": cfg.accelerator,
        "devices": cfg.devices,
        "num_nodes": cfg.num_nodes,
        "strategy": resolve_strategy(cfg),
        "precision": cfg.precision,
        "gradient_clip_val": cfg.grad_clip or None,
        "accumulate_grad_batches": cfg.accumulate,
        "limit_train_batches": cfg.max_batches_per_epoch or 1.0,
        "callbacks": callbacks,
        "logger": loggers,
        "default_root_dir": run_dir,
        "log_every_n_steps": 1,
        "enable_progress_bar": enable_progress_bar,
        "enable_model_summary": False,
        "use_distributed_sampler": False,  # the stratified batch sampler splits by rank itself
        "deterministic": False,
        "num_sanity_val_steps": 0,
        "check_val_every_n_epoch": val_cadence(cfg.val_every, max_epochs or cfg.epochs),
        "plugins": [AtomicCheckpointIO()],
    }
    kwargs.update(overrides)
    return L.Trainer(**kwargs)
