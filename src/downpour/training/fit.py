"""``downpour train cvae``: prepare (if needed), build, train, record.

:func:`train_cvae` is the Python API behind the command. It reuses the run's
prepared store when its data settings match the config (and prepares it
otherwise), trains with the trainer of :mod:`downpour.training.trainer`,
and writes ``RUN/metrics/train_cvae.json`` with the final metrics, the
parameter count and the seconds per epoch.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import Callback

from downpour.config import Config, save_config
from downpour.core.errors import DownpourError
from downpour.downscaling.cvae_module import CVAEModule
from downpour.downscaling.datamodule import PrecipDataModule
from downpour.training.trainer import build_trainer, checkpoint_paths, per_rank_batches
from downpour.core.files import atomic_write_text

__all__ = [
    "EpochTimer",
    "TrainResult",
    "collect_result",
    "ensure_store",
    "launched_processes",
    "train_cvae",
    "write_train_record",
]


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
    trainer: L.Trainer, run_dir: Path, kind: str, record: dict[str, Any]
) -> None:
    """Write ``RUN/metrics/train_<kind>.json`` atomically, from rank 0 only under DDP."""
    if trainer.is_global_zero:
        path = run_dir / "metrics" / f"train_{kind}.json"
        atomic_write_text(path, json.dumps(record, indent=2))


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


def ensure_store(cfg: Config, run_dir: Path, *, echo: Any = print) -> Path:
    """Return the run's prepared store, preparing it when missing or stale.

    The store is reused when ``RUN/config.yaml`` has the same ``data``
    section as ``cfg``; otherwise ``downpour prepare`` runs again.
    """
    store = run_dir / "data" / "store.zarr"
    saved = run_dir / "config.yaml"
    why = "is missing"
    if store.is_dir() and saved.is_file():
        old = yaml.safe_load(saved.read_text()).get("data")
        if old == cfg.data.model_dump(mode="json"):
            return store
        why = f"was prepared with other data settings ({saved})"
        echo(f"data settings differ from {saved}: preparing the store again")
    world = launched_processes()
    if world > 1:
        raise DownpourError(
            f"{store} {why}, and {world} training processes were launched together (srun / "
            "torchrun): they would all prepare it at once. Run `downpour prepare --config C "
            f"--out {run_dir}` once before the multi-process job"
        )
    from downpour.downscaling.prepare import prepare

    echo(f"preparing {'the embedded dataset' if cfg.data.target is None else cfg.data.target.path}")
    prepare(cfg, run_dir)
    return store


def train_cvae(
    cfg: Config,
    run_dir: str | Path,
    *,
    resume: str | Path | None = None,
    echo: Any = print,
    in_memory: bool | None = None,
    **trainer_overrides: Any,
) -> TrainResult:
    """Train the cVAE of ``cfg`` in ``run_dir``.

    Parameters
    ----------
    cfg
        Resolved configuration.
    run_dir
        Run directory (created; holds store, checkpoints, logs, metrics).
    resume
        A checkpoint to continue from (weights, optimiser, schedulers,
        epoch and callbacks are restored).
    echo
        Where progress lines go.
    in_memory
        Hold the training and validation days in memory; None: ``train.in_memory``
        (None there too: when they take under 2 GiB).
    **trainer_overrides
        Passed to the Lightning trainer (e.g. ``limit_val_batches``).

    Returns
    -------
    TrainResult
    """
    run_dir = Path(run_dir)
    if resume is not None and not Path(resume).is_file():
        raise DownpourError(f"--resume: checkpoint {resume} not found")
    store = ensure_store(cfg, run_dir, echo=echo)
    save_config(cfg, run_dir / "config.yaml")
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    dm = PrecipDataModule(store, cfg.train, in_memory=in_memory)
    dm.setup("fit")
    assert dm.train_set is not None
    batches = per_rank_batches(math.ceil(len(dm.train_set) / dm.batch_size), cfg.train)
    if cfg.train.max_batches_per_epoch:
        batches = min(batches, cfg.train.max_batches_per_epoch)
    steps_per_epoch = math.ceil(batches / cfg.train.accumulate)
    module = CVAEModule(cfg, dm.info, steps_per_epoch=steps_per_epoch)
    n_params = sum(p.numel() for p in module.net.parameters())
    h, w = dm.info["shape"]
    echo(
        f"cVAE {cfg.name}: {n_params:,} parameters ({n_params / 1e6:.2f} M) at {h}×{w}; "
        f"{len(dm.train_set)} training days, {batches} batches of {dm.batch_size} per epoch"
    )
    timer = EpochTimer()
    callbacks = [timer, *trainer_overrides.pop("extra_callbacks", [])]
    trainer = build_trainer(
        cfg.train, run_dir, kind="cvae", extra_callbacks=callbacks, **trainer_overrides
    )
    trainer.fit(module, datamodule=dm, ckpt_path=str(resume) if resume else None)
    result = collect_result(trainer, timer, run_dir, n_params)
    write_train_record(trainer, run_dir, "cvae", asdict(result))
    return result
