"""``downpour train srdrn``: train SRDRN on a store, predict with it and with the baselines.

:func:`train_srdrn` trains one SRDRN variant (``kind``: its checkpoint and
log folder, e.g. ``srdrn_real`` and ``srdrn_augmented`` in one run
directory) on the run's prepared store or on another store of the same
layout, e.g. an augmented one (real + synthetic training days, flagged
``is_synthetic``). For the augmentation experiment two variants must see
the same number of optimiser steps whatever their number of training days:
``srdrn.batches_per_epoch`` fixes the batches of every epoch (drawn from the
endlessly reshuffled stream of the training days, see
:class:`FixedLengthBatchSampler`), or ``max_steps`` fixes the total. The
steps taken are recorded in ``RUN/metrics/train_<kind>.json``.

:func:`predict_srdrn` and :func:`predict_baseline` return the high-res
prediction of every day of a split (or of chosen days of it, ``times``) as
an ``xr.DataArray`` (time, y, x) in the store's units, NaN outside the mask;
they read and predict the days batch by batch. Baselines are fitted on the
real training days only (:func:`fit_baseline`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import xarray as xr
from torch.utils.data import DataLoader

from downpour.config import Config, TrainConfig, save_config
from downpour.downscaling.dataset import _as_str
from downpour.data.normalize import Normalization
from downpour.data.splits import SPLITS
from downpour.downscaling.store import open_store, resolve_store_path
from downpour.core.errors import DownpourError
from downpour.models.baselines import Baseline, build_baseline, precip_channel
from downpour.models.srdrn import SRDRN
from downpour.downscaling.datamodule import PrecipDataModule
from downpour.training.fast import prepare_net
from downpour.training.fit import (
    EpochTimer,
    TrainResult,
    collect_result,
    ensure_store,
    write_train_record,
)
from downpour.downscaling.srdrn_module import SRDRNModule, srdrn_train_config
from downpour.training.trainer import build_trainer, per_rank_batches, read_checkpoint

__all__ = [
    "FixedLengthBatchSampler",
    "fit_baseline",
    "load_srdrn",
    "predict_baseline",
    "predict_srdrn",
    "train_srdrn",
]


# ------------------------------------------------------------------ batches


class FixedLengthBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Exactly ``batches`` batches per epoch, read from an inner batch sampler's epochs.

    The inner sampler's epochs ``0, 1, 2, …`` (each a reshuffle of the
    training days) are laid end to end; epoch ``e`` here yields batches
    ``e·N … (e+1)·N − 1`` of that sequence. So the batches of an epoch depend
    only on the seed and ``e`` (a resume replays them), and over many epochs
    every day is visited equally often, whatever the number of days.

    Parameters
    ----------
    inner
        A batch sampler with ``set_epoch`` and ``__len__`` (e.g.
        :class:`~downpour.data.sampler.StratifiedBatchSampler`).
    batches
        Batches per epoch N.
    """

    def __init__(self, inner: Any, batches: int) -> None:
        super().__init__()
        if batches < 1:
            raise ValueError(f"batches must be ≥ 1, got {batches}")
        self.inner = inner
        self.batches = int(batches)
        self.epoch = 0

    @property
    def sampler(self) -> FixedLengthBatchSampler:
        """Return ``self``: Lightning calls ``batch_sampler.sampler.set_epoch(e)``."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Return the number of batches per epoch."""
        return self.batches

    def __iter__(self) -> Iterator[list[int]]:
        """Yield the epoch's batches as lists of dataset indices."""
        per_inner = len(self.inner)
        if per_inner == 0:
            return
        cached_epoch, cached = -1, []
        for k in range(self.epoch * self.batches, (self.epoch + 1) * self.batches):
            inner_epoch, pos = divmod(k, per_inner)
            if inner_epoch != cached_epoch:
                self.inner.set_epoch(inner_epoch)
                cached, cached_epoch = list(self.inner), inner_epoch
            yield cached[pos]


class _SRDRNDataModule(PrecipDataModule):
    """:class:`PrecipDataModule` with optional fixed-length training epochs."""

    def __init__(
        self,
        store: Path,
        train: TrainConfig,
        *,
        in_memory: bool | None,
        batches_per_epoch: int | None,
    ) -> None:
        super().__init__(store, train, in_memory=in_memory)
        self.batches_per_epoch = batches_per_epoch

    def train_dataloader(self) -> DataLoader:
        """Return the stratified batches, or exactly ``batches_per_epoch`` of them per epoch."""
        loader = super().train_dataloader()
        if self.batches_per_epoch is None:
            return loader
        sampler = FixedLengthBatchSampler(loader.batch_sampler, self.batches_per_epoch)
        return DataLoader(self.train_set, batch_sampler=sampler, **self._loader_kwargs())


# ----------------------------------------------------------------- training


def _store_days(store: Path) -> dict[str, int]:
    """Count training days, synthetic among them; refuse synthetic days outside ``train``."""
    ds = open_store(store)
    try:
        split = _as_str(np.asarray(ds["split"].values))
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
        Resolved configuration; SRDRN trains with :func:`srdrn_train_config`.
    run_dir
        Run directory (checkpoints in ``checkpoints/<kind>/``, logs in
        ``logs/<kind>/``, metrics in ``metrics/train_<kind>.json``).
    store
        The store to train on; default the run's ``data/store.zarr``
        (prepared when missing or stale). An augmented store may be given;
        its synthetic days must all be training days.
    kind
        Name of this variant (folders above), e.g. ``srdrn_real``.
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
    """
    run_dir = Path(run_dir)
    if resume is not None and not Path(resume).is_file():
        raise DownpourError(f"--resume: checkpoint {resume} not found")
    if store is None:
        store_path = ensure_store(cfg, run_dir, echo=echo)
        save_config(cfg, run_dir / "config.yaml")
    else:
        store_path = resolve_store_path(store)
    days = _store_days(store_path)
    n_batches = cfg.srdrn.batches_per_epoch or per_rank_batches(
        math.ceil(days["train_days"] / cfg.srdrn.batch_size), cfg.train
    )
    steps_per_epoch = math.ceil(n_batches / cfg.train.accumulate)
    epochs = math.ceil(max_steps / steps_per_epoch) if max_steps else None
    train_cfg = srdrn_train_config(cfg, epochs=epochs)
    L.seed_everything(train_cfg.seed, workers=True, verbose=False)
    dm = _SRDRNDataModule(
        store_path,
        train_cfg,
        in_memory=in_memory,
        batches_per_epoch=cfg.srdrn.batches_per_epoch,
    )
    dm.setup("fit")
    module = SRDRNModule(
        cfg, dm.info, steps_per_epoch=steps_per_epoch, variant=kind, train_cfg=train_cfg
    )
    n_params = module.net.count_parameters()
    stages = "×".join(map(str, module.net.factors))
    echo(
        f"SRDRN {kind}: {n_params:,} parameters, upsampling ×{stages}"
        f"; {days['train_days']} training days ({days['synthetic_train_days']} synthetic), "
        f"{n_batches} batches of {train_cfg.batch_size} per epoch"
    )
    timer = EpochTimer()
    callbacks = [timer, *trainer_overrides.pop("extra_callbacks", [])]
    if max_steps:
        trainer_overrides["max_steps"] = max_steps
    trainer = build_trainer(
        train_cfg,
        run_dir,
        kind=kind,
        max_epochs=trainer_overrides.pop("max_epochs", None),
        extra_callbacks=callbacks,
        **trainer_overrides,
    )
    trainer.fit(module, datamodule=dm, ckpt_path=str(resume) if resume else None)
    result = collect_result(trainer, timer, run_dir, n_params)
    result.metrics["steps"] = float(trainer.global_step)
    record = {
        **asdict(result),
        "kind": kind,
        "store": str(store_path),
        "optimizer_steps": int(trainer.global_step),
        "batches_per_epoch": n_batches,
        "batch_size": train_cfg.batch_size,
        **days,
    }
    write_train_record(trainer, run_dir, kind, record)
    return result


# --------------------------------------------------------------- prediction


def load_srdrn(checkpoint: str | Path) -> tuple[SRDRN, Config, dict[str, Any]]:
    """Rebuild a trained SRDRN from a checkpoint alone.

    Returns
    -------
    (SRDRN, Config, dict)
        The network in eval mode, the run's resolved config and the store
        facts recorded at training time (shapes, thresholds, normalisation).
    """
    cfg, info, state = read_checkpoint(checkpoint, "srdrn")
    net = SRDRN.from_config(
        cfg.srdrn, in_channels=info["x_channels"], scale_factor=info["scale_factor"]
    )
    net.load_state_dict(state)
    # the training's memory format: predictions equal the network's outputs during training
    prepare_net(net, channels_last=srdrn_train_config(cfg).channels_last)
    return net.eval(), cfg, info


def _rows(ds: xr.Dataset, split: str, *, real_only: bool = False) -> np.ndarray:
    """Store positions of the days of ``split`` (only the real ones with ``real_only``)."""
    if split not in SPLITS:
        raise DownpourError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    keep = _as_str(np.asarray(ds["split"].values)) == split
    if real_only and "is_synthetic" in ds.variables:
        keep &= ~np.asarray(ds["is_synthetic"].values, dtype=bool)
    rows = np.flatnonzero(keep)
    if rows.size == 0:
        raise DownpourError(f"split '{split}' of the store has no days; check data.splits")
    return rows


def _select_rows(ds: xr.Dataset, rows: np.ndarray, split: str, times: Any) -> np.ndarray:
    """Store positions of the days ``times`` (in that order), each a day of ``rows``.

    ``times`` holds time stamps of the store (datetime64 of any unit, or
    ISO strings); ``None`` keeps every row.
    """
    if times is None:
        return rows
    stamps = np.asarray(ds["time"].values)[rows]
    wanted = np.atleast_1d(np.asarray(times)).astype(stamps.dtype)
    if wanted.size == 0:
        raise DownpourError(f"no days selected to predict in the {split!r} split")
    order = np.argsort(stamps, kind="stable")
    ordered = stamps[order]
    if (ordered[1:] == ordered[:-1]).any():
        raise DownpourError(
            f"the {split!r} split of the store holds a time stamp twice (synthetic days?); "
            "days cannot be selected by time there: predict the whole split"
        )
    pos = np.minimum(np.searchsorted(ordered, wanted), ordered.size - 1)
    missing = wanted[ordered[pos] != wanted]
    if missing.size:
        raise DownpourError(
            f"{missing.size} selected day(s) are not days of the {split!r} split of the store, "
            f"the first {str(missing[0])[:10]}; select days of that split"
        )
    return rows[order[pos]]


def _as_dataarray(
    values: np.ndarray, ds: xr.Dataset, rows: np.ndarray, name: str, attrs: dict[str, Any]
) -> xr.DataArray:
    """Wrap ``(T, H, W)`` predictions with the store's time and lat/lon; NaN off the mask."""
    mask = np.asarray(ds["mask"].values, dtype=bool)
    values = np.where(mask, values, np.nan).astype(np.float32)
    coords: dict[str, Any] = {"time": ("time", np.asarray(ds["time"].values)[rows])}
    for c in ("lat", "lon"):
        if c in ds.coords:
            coords[c] = (tuple(map(str, ds[c].dims)), np.asarray(ds[c].values))
    units = str(ds.attrs.get("units", "mm/day"))
    return xr.DataArray(
        values, dims=("time", "y", "x"), coords=coords, name=name, attrs={"units": units, **attrs}
    )


def predict_srdrn(
    checkpoint: str | Path,
    store: str | Path,
    *,
    split: str = "test",
    times: np.ndarray | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> xr.DataArray:
    """Downscale every day of a split (or the days ``times`` of it) with a trained SRDRN.

    Only the chosen days are read, ``batch_size`` at a time.

    Parameters
    ----------
    checkpoint
        An SRDRN checkpoint (``checkpoints/<kind>/best.ckpt``).
    store
        A store of the same grid and predictors (the run's, or an augmented one).
    split
        ``"train"``, ``"val"`` or ``"test"``.
    times
        Time stamps (datetime64) of days of ``split`` to predict, in the order
        wanted; default every day of the split.
    batch_size
        Days per forward pass.
    device
        Where to run; default CUDA when available, else CPU.

    Returns
    -------
    xarray.DataArray
        ``(time, y, x)`` float32 in the store's units, NaN outside the mask,
        coordinates ``time`` and ``lat``/``lon`` from the store.

    Raises
    ------
    DownpourError
        When the checkpoint does not fit the store, or a day of ``times`` is
        not a day of the split.
    """
    net, _, info = load_srdrn(checkpoint)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    norm = Normalization.from_dict(info["normalization"])
    ds = open_store(store)
    try:
        channels = [str(c) for c in ds["channel"].values]
        shapes = (list(ds["target"].shape[1:]), list(ds["predictors"].shape[2:]))
        if channels != list(norm.channels) or shapes != (info["shape"], info["lowres_shape"]):
            raise DownpourError(
                f"{checkpoint} was trained on channels {list(norm.channels)} at "
                f"{info['lowres_shape']} → {info['shape']}; {store} has {channels} at "
                f"{shapes[1]} → {shapes[0]}: use a checkpoint of this dataset"
            )
        rows = _select_rows(ds, _rows(ds, split), split, times)
        out = np.empty((rows.size, *info["shape"]), dtype=np.float32)
        net = net.to(device)
        with torch.no_grad():
            for start in range(0, rows.size, batch_size):
                batch = rows[start : start + batch_size]
                x = np.asarray(ds["predictors"].isel(time=batch).values, np.float32)
                x = np.ascontiguousarray(norm.normalize_x(x), dtype=np.float32)
                pred = net(torch.from_numpy(x).to(device))
                out[start : start + batch.size] = pred[:, 0].float().cpu().numpy()
        attrs = {"model": "srdrn", "checkpoint": str(checkpoint), "split": split}
        return _as_dataarray(out, ds, rows, "srdrn", attrs)
    finally:
        ds.close()


def fit_baseline(name: str, store: str | Path, *, n_quantiles: int = 1000) -> Baseline:
    """Build the baseline ``name`` and fit it on the real training days of ``store``.

    Synthetic training days (augmented stores) and the validation and test
    days never reach the fit.
    """
    ds = open_store(store)
    try:
        kwargs: dict[str, Any] = {"scale": int(ds.attrs["scale_factor"])}
        if name == "bcsd":
            kwargs.update(wet_threshold=float(ds.attrs["wet_threshold"]), n_quantiles=n_quantiles)
        model = build_baseline(name, **kwargs)
        if model.requires_fit:
            rows = _rows(ds, "train", real_only=True)
            ch = precip_channel(ds)
            x = np.asarray(ds["predictors"].isel(time=rows, channel=ch).values, np.float32)
            y = np.asarray(ds["target"].isel(time=rows).values, np.float32)
            model.fit(x, y, np.asarray(ds["mask"].values, dtype=bool))
        return model
    finally:
        ds.close()


def predict_baseline(
    name: str,
    store: str | Path,
    *,
    split: str = "test",
    times: np.ndarray | None = None,
    n_quantiles: int = 1000,
    batch_size: int = 256,
) -> xr.DataArray:
    """Downscale every day of a split (or the days ``times`` of it) with a baseline.

    The baseline is fitted on the real training days whatever days are
    predicted; only the chosen days are read, ``batch_size`` at a time.

    Parameters
    ----------
    name
        ``"bicubic"`` or ``"bcsd"`` (:data:`~downpour.models.baselines.BASELINES`).
    store
        The prepared store.
    split
        The days to predict.
    times
        As in :func:`predict_srdrn`: days of ``split``, default all of them.
    n_quantiles
        Quantile levels of BCSD per cell.
    batch_size
        Days read and predicted at once.

    Returns
    -------
    xarray.DataArray
        As :func:`predict_srdrn`.
    """
    model = fit_baseline(name, store, n_quantiles=n_quantiles)
    ds = open_store(store)
    try:
        rows = _select_rows(ds, _rows(ds, split), split, times)
        ch = precip_channel(ds)
        pred = np.empty((rows.size, *ds["target"].shape[1:]), dtype=np.float32)
        for start in range(0, rows.size, batch_size):
            batch = rows[start : start + batch_size]
            x = np.asarray(ds["predictors"].isel(time=batch, channel=ch).values, np.float32)
            pred[start : start + batch.size] = model.predict(x)
        attrs = {"model": name, "split": split, "fitted_on": "train (real days)"}
        return _as_dataarray(pred, ds, rows, name, attrs)
    finally:
        ds.close()
