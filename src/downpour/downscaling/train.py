"""``downpour train cvae`` and ``downpour train srdrn``: prepare (if needed), train, record.

:func:`train_cvae` and :func:`train_srdrn` are the Python API behind the
commands. Both reuse the run's prepared store when its data settings match
the config (and prepare it otherwise, :func:`ensure_store`) and train
through the shared scaffold :func:`downpour.training.fit.fit`, which writes
``RUN/metrics/train_<variant>.json``.

:func:`train_srdrn` trains one SRDRN variant (``kind``: its checkpoint and
log folder, e.g. ``srdrn_real`` and ``srdrn_augmented`` in one run
directory) on the run's prepared store or on another store of the same
layout, e.g. an augmented one (real + synthetic training days, flagged
``is_synthetic``). For the augmentation experiment two variants must see
the same number of optimiser steps whatever their number of training days:
``srdrn.batches_per_epoch`` fixes the batches of every epoch (drawn from the
endlessly reshuffled stream of the training days, see
:class:`~downpour.data.sampler.FixedLengthBatchSampler`), or ``max_steps``
fixes the total. The steps taken are recorded in the training record.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import yaml

from downpour.config import Config, save_config
from downpour.core.errors import DownpourError
from downpour.core.rundir import RunDir
from downpour.downscaling.cvae_module import CVAEModule
from downpour.downscaling.datamodule import PrecipDataModule, read_store_info
from downpour.downscaling.prepare import prepare
from downpour.downscaling.srdrn_module import SRDRNModule, srdrn_train_config
from downpour.downscaling.store import labels, open_store, resolve_store_path, store_attr_json
from downpour.models.srdrn import residual_inputs
from downpour.training.base import BaseModule
from downpour.training.fit import TrainResult, check_resume, epoch_steps, fit, launched_processes
from downpour.training.trainer import per_rank_batches

__all__ = ["ensure_store", "srdrn_budget", "srdrn_variant", "train_cvae", "train_srdrn"]


def ensure_store(cfg: Config, run_dir: str | Path, *, echo: Any = print) -> Path:
    """Return the run's prepared store, preparing it when missing or stale.

    The store is reused when it was prepared with the same ``data`` section
    as ``cfg``: the settings recorded in the store itself (attribute
    ``data_config``, written with it atomically), so a ``prepare`` killed
    between replacing the store and rewriting ``config.yaml`` can never make
    an old config pass for a new store. Stores of earlier versions, without
    the attribute, are compared with ``RUN/config.yaml``.
    """
    run = RunDir(run_dir)
    store = run.store
    why = "is missing"
    if store.is_dir():
        recorded = _recorded_data(store, run.config)
        if recorded == cfg.data.model_dump(mode="json"):
            return store
        why = "was prepared with other data settings"
        echo(f"data settings differ from those of {store}: preparing the store again")
    world = launched_processes()
    if world > 1:
        raise DownpourError(
            f"{store} {why}, and {world} training processes were launched together (srun / "
            "torchrun): they would all prepare it at once. Run `downpour prepare --config C "
            f"--out {run.root}` once before the multi-process job"
        )
    echo(f"preparing {'the embedded dataset' if cfg.data.target is None else cfg.data.target.path}")
    prepare(cfg, run_dir)
    return store


def _recorded_data(store: Path, config: Path) -> dict[str, Any] | None:
    """Return the ``data`` settings a store was prepared with (None when unknown)."""
    try:
        ds = open_store(store)
    except DownpourError:
        return None
    try:
        if "data_config" in ds.attrs:
            return store_attr_json(ds, "data_config")
    finally:
        ds.close()
    if config.is_file():  # stores of earlier versions
        return yaml.safe_load(config.read_text()).get("data")
    return None


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
    check_resume(resume, "cvae")
    run = RunDir(run_dir)
    store = ensure_store(cfg, run.root, echo=echo)
    save_config(cfg, run.config)
    steps: dict[str, int] = {}

    def make_datamodule() -> PrecipDataModule:
        dm = PrecipDataModule(store, cfg.train, in_memory=in_memory)
        dm.setup("fit")
        return dm

    def make_module(dm: PrecipDataModule) -> BaseModule:
        assert dm.train_set is not None
        steps["batches"], steps["steps"] = epoch_steps(
            len(dm.train_set), dm.batch_size, cfg.train, cap=cfg.train.max_batches_per_epoch
        )
        return CVAEModule(cfg, dm.info, steps_per_epoch=steps["steps"])

    def describe(module: BaseModule, dm: PrecipDataModule, n_params: int) -> str:
        assert dm.train_set is not None
        h, w = dm.info["shape"]
        return (
            f"cVAE {cfg.name}: {n_params:,} parameters ({n_params / 1e6:.2f} M) at {h}×{w}; "
            f"{len(dm.train_set)} training days, {steps['batches']} batches of {dm.batch_size} "
            "per epoch"
        )

    return fit(
        run.root,
        train_cfg=cfg.train,
        variant="cvae",
        module_kind="cvae",
        make_datamodule=make_datamodule,
        make_module=make_module,
        describe=describe,
        resume=resume,
        echo=echo,
        **trainer_overrides,
    )


def _store_days(store: Path) -> dict[str, int]:
    """Count training days, synthetic among them; refuse synthetic days outside ``train``."""
    ds = open_store(store)
    try:
        split = labels(np.asarray(ds["split"].values))
        synthetic = (
            np.asarray(ds["is_synthetic"].values, dtype=bool)
            if "is_synthetic" in ds.variables
            else np.zeros(split.shape, dtype=bool)
        )
    finally:
        ds.close()
    leaked = synthetic & (split != "train")
    if leaked.any():
        raise DownpourError(
            f"{store} has {int(leaked.sum())} synthetic day(s) outside the training split; "
            "synthetic fields may only train, never validate or test: rebuild the store "
            "with `downpour augment`"
        )
    train = split == "train"
    return {"train_days": int(train.sum()), "synthetic_train_days": int((synthetic & train).sum())}


def srdrn_variant(store: str | Path | None) -> str:
    """Return the variant name of SRDRN trained on ``store``.

    ``srdrn_augmented`` when the store holds synthetic days, else
    ``srdrn_real`` (also for ``None``, the run's own store).
    """
    if store is None:
        return "srdrn_real"
    days = _store_days(resolve_store_path(store))
    return "srdrn_augmented" if days["synthetic_train_days"] else "srdrn_real"


def srdrn_budget(cfg: Config, days: dict[str, int]) -> tuple[int | None, str]:
    """Return the batches per epoch SRDRN trains with, and the rule that chose them.

    ``srdrn.batches_per_epoch`` when set. Otherwise one pass over the *real*
    training days: an augmented store then takes the same number of
    optimiser steps per epoch as the real-only store it was built from
    (``None`` for a real-only store, which is the same count), so the
    real-only and augmented variants always get equal budgets.

    Parameters
    ----------
    cfg
        Resolved configuration.
    days
        ``train_days`` and ``synthetic_train_days`` of the store.

    Examples
    --------
    >>> from downpour.config import load_config
    >>> cfg = load_config(None, ["srdrn.batch_size=8"])
    >>> srdrn_budget(cfg, {"train_days": 100, "synthetic_train_days": 0})[0] is None
    True
    >>> srdrn_budget(cfg, {"train_days": 140, "synthetic_train_days": 40})[0]  # 100 real days / 8
    13
    """
    if cfg.srdrn.batches_per_epoch is not None:
        return cfg.srdrn.batches_per_epoch, "srdrn.batches_per_epoch"
    real = days["train_days"] - days["synthetic_train_days"]
    if not days["synthetic_train_days"]:
        return None, "one pass over the training days per epoch"
    n = per_rank_batches(math.ceil(real / cfg.srdrn.batch_size), cfg.train)
    return n, (
        f"srdrn.batches_per_epoch is unset: {n} batches per epoch, one pass over the {real} "
        f"real training days, so the {days['synthetic_train_days']} synthetic days do not buy "
        "extra optimiser steps over the real-only variant"
    )


def train_srdrn(
    cfg: Config,
    run_dir: str | Path,
    *,
    store: str | Path | None = None,
    kind: str = "srdrn",
    resume: str | Path | None = None,
    echo: Any = print,
    max_steps: int | None = None,
    in_memory: bool | None = None,
    **trainer_overrides: Any,
) -> TrainResult:
    """Train SRDRN (``cfg.srdrn``) in ``run_dir``.

    Parameters
    ----------
    cfg
        Resolved configuration; SRDRN trains with
        :func:`~downpour.downscaling.srdrn_module.srdrn_train_config`.
        ``srdrn.quantiles`` trains a quantile SRDRN (pinball loss,
        :class:`~downpour.downscaling.srdrn_module.SRDRNModule`), and
        ``srdrn.residual=bicubic`` one that corrects the bicubic
        interpolation of the store's precipitation predictor.
    run_dir
        Run directory (checkpoints in ``checkpoints/<kind>/``, logs in
        ``logs/<kind>/``, metrics in ``metrics/train_<kind>.json``).
    store
        The store to train on; default the run's ``data/store.zarr``
        (prepared when missing or stale). An augmented store may be given;
        its synthetic days must all be training days.
    kind
        Name of this variant (folders above), e.g. ``srdrn_real``
        (:func:`srdrn_variant` names a store's variant).
    resume
        A checkpoint of this variant to continue from (exactly).
    echo
        Where progress lines go.
    max_steps
        Stop after this many optimiser steps (a budget independent of the
        number of days); the epochs and LR schedule are sized to reach it.
    in_memory
        Hold the training and validation days in memory; None: ``train.in_memory``
        (None there too: when they take under 2 GiB).
    **trainer_overrides
        Passed to the Lightning trainer (e.g. ``max_epochs``, ``limit_val_batches``).

    Returns
    -------
    TrainResult
        ``metrics`` includes ``steps`` (optimiser steps taken).

    Raises
    ------
    DownpourError
        ``srdrn.residual`` is set and the store has no precipitation predictor,
        or the store's synthetic days are not all training days.
    """
    check_resume(resume, "srdrn")
    run = RunDir(run_dir)
    if store is None:
        store_path = ensure_store(cfg, run.root, echo=echo)
        save_config(cfg, run.config)
    else:
        store_path = resolve_store_path(store)
    days = _store_days(store_path)
    if cfg.srdrn.residual != "none":  # refuse a store without precipitation before training
        residual_inputs(read_store_info(store_path))
    fixed, budget = srdrn_budget(cfg, days)
    if budget != "srdrn.batches_per_epoch":
        echo(f"SRDRN {kind}: {budget}")
    n_batches, steps_per_epoch = epoch_steps(
        days["train_days"], cfg.srdrn.batch_size, cfg.train, batches=fixed
    )
    epochs = math.ceil(max_steps / steps_per_epoch) if max_steps else None
    train_cfg = srdrn_train_config(cfg, epochs=epochs)
    if max_steps:
        trainer_overrides["max_steps"] = max_steps

    def make_datamodule() -> PrecipDataModule:
        dm = PrecipDataModule(
            store_path,
            train_cfg,
            in_memory=in_memory,
            batches_per_epoch=fixed,
        )
        dm.setup("fit")
        return dm

    def make_module(dm: PrecipDataModule) -> BaseModule:
        return SRDRNModule(
            cfg, dm.info, steps_per_epoch=steps_per_epoch, variant=kind, train_cfg=train_cfg
        )

    def describe(module: BaseModule, dm: PrecipDataModule, n_params: int) -> str:
        stages = "×".join(map(str, module.net.factors))
        s = cfg.srdrn
        heads = (
            f", quantile heads τ = {', '.join(f'{t:g}' for t in s.quantiles)} (synthetic days: "
            f"{'every head' if s.synthetic_heads == 'all' else 'median head only'})"
            if s.quantiles
            else ""
        )
        residual = ", residual over bicubic" if s.residual != "none" else ""
        return (
            f"SRDRN {kind}: {n_params:,} parameters, upsampling ×{stages}{heads}{residual}"
            f"; {days['train_days']} training days ({days['synthetic_train_days']} synthetic), "
            f"{n_batches} batches of {train_cfg.batch_size} per epoch"
        )

    def record(trainer: L.Trainer, result: TrainResult) -> dict[str, Any]:
        result.metrics["steps"] = float(trainer.global_step)
        return {
            "kind": kind,
            "store": str(store_path),
            "optimizer_steps": int(trainer.global_step),
            "batches_per_epoch": n_batches,
            "budget": budget,
            "batch_size": train_cfg.batch_size,
            **days,
        }

    return fit(
        run.root,
        train_cfg=train_cfg,
        variant=kind,
        module_kind="srdrn",
        make_datamodule=make_datamodule,
        make_module=make_module,
        describe=describe,
        resume=resume,
        echo=echo,
        record=record,
        max_epochs=trainer_overrides.pop("max_epochs", None),
        **trainer_overrides,
    )
