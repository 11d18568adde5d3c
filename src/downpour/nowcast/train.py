"""Train the nowcaster of a config in a run directory, and load what it wrote.

``train_nowcast`` trains the nowcaster of ``nowcast.model`` on the radar
events (``nowcast.target``: one file or several, or the embedded generator) with the shared
Lightning trainer: ``RUN/config.yaml``, ``RUN/checkpoints/nowcast/``,
``RUN/logs/nowcast/`` and ``RUN/metrics/train_nowcast.json``
(:class:`~downpour.core.rundir.RunDir`). ``load_nowcaster`` reads a checkpoint
back as the network, the run's config and its training statistics.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from downpour.config import Config, save_config
from downpour.core.rundir import RunDir
from downpour.data.splits import DrySplitWarning
from downpour.models.loading import load_model
from downpour.nowcast.datamodule import NowcastDataModule
from downpour.nowcast.events import load_events
from downpour.nowcast.module import NowcastModule, nowcast_train_config
from downpour.nowcast.windows import iso_minute
from downpour.training.base import BaseModule
from downpour.training.fit import TrainResult, check_resume, epoch_steps, fit

__all__ = ["load_nowcaster", "train_nowcast"]


def train_nowcast(
    cfg: Config,
    run_dir: str | Path,
    *,
    resume: str | Path | None = None,
    echo: Callable[[str], Any] = print,
    **trainer_overrides: Any,
) -> TrainResult:
    """Train the nowcaster of ``cfg`` in ``run_dir``.

    Parameters
    ----------
    cfg
        Resolved configuration (``nowcast``; ``train`` for seed, clipping,
        precision, devices, checkpoint interval, warm-up).
    run_dir
        Run directory: ``config.yaml``, ``checkpoints/nowcast/``,
        ``logs/nowcast/``, ``metrics/train_nowcast.json``.
    resume
        A checkpoint to continue from (continues exactly).
    echo
        Where progress lines go.
    **trainer_overrides
        Passed to the Lightning trainer (e.g. ``max_epochs``, ``enable_progress_bar``).

    Returns
    -------
    TrainResult
    """
    check_resume(resume, "nowcast")
    run = RunDir(run_dir)
    nc = cfg.nowcast
    events = load_events(nc)
    save_config(cfg, run.config)
    train_cfg = nowcast_train_config(cfg)
    steps: dict[str, int] = {}

    def make_datamodule() -> NowcastDataModule:
        dm = NowcastDataModule(events, nc, seed=train_cfg.seed, num_workers=train_cfg.num_workers)
        for split, blocks in dm.splits.items():
            names = ", ".join(f"{k} ({v.sizes['time']} frames)" for k, v in blocks.items())
            echo(
                f"{split}: wet fraction (> 0.1 mm/h) {dm.wet_fraction[split]:.3f}; "
                f"{names or 'no event'}"
            )
        for message in dm.warnings:
            echo(f"warning: {message}")
            warnings.warn(message, DrySplitWarning, stacklevel=2)
        return dm

    def make_module(dm: NowcastDataModule) -> BaseModule:
        steps["batches"], steps["steps"] = epoch_steps(
            len(dm.train_set), nc.batch_size, train_cfg, cap=nc.max_batches_per_epoch
        )
        return NowcastModule(cfg, dm.stats, steps_per_epoch=steps["steps"])

    def describe(module: BaseModule, dm: NowcastDataModule, n_params: int) -> str:
        if len(events) == 1:
            da = next(iter(events.values()))
            t = da["time"].values
            data = (
                f"at {da.sizes['y']}×{da.sizes['x']}, {nc.step_minutes}-min steps, {t.size} "
                f"frames {iso_minute(t[0])} .. {iso_minute(t[-1])}"
            )
        else:
            data = f"{nc.model} model, {len(events)} events at {nc.step_minutes}-min steps"
        return (
            f"nowcast {cfg.name}: {n_params:,} parameters {data}; {len(dm.train_set)} training / "
            f"{len(dm.val_set)} validation windows, {steps['batches']} batches of "
            f"{nc.batch_size} × accumulate {nc.accumulate} per epoch"
        )

    return fit(
        run.root,
        train_cfg=train_cfg,
        variant="nowcast",
        module_kind="nowcast",
        make_datamodule=make_datamodule,
        make_module=make_module,
        describe=describe,
        resume=resume,
        echo=echo,
        **trainer_overrides,
    )


def load_nowcaster(checkpoint: str | Path) -> tuple[nn.Module, Config, dict[str, float]]:
    """Load a nowcast checkpoint (:func:`~downpour.models.loading.load_model`).

    Returns
    -------
    (NowcastUNet, Config, dict)
        The network in eval mode, the run's config and its training statistics.
    """
    model = load_model(checkpoint, "nowcast")
    return model.net, model.config, dict(model.info)
