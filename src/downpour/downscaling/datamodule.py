"""LightningDataModule over a prepared store: stratified heavy batches, augmentation.

Training batches come from :class:`~downpour.data.sampler.StratifiedBatchSampler`
(at least ``train.min_heavy_fraction`` heavy days per batch), augmented with
flips and rain noise (``train.flips``, ``train.noise``) seeded by
(seed, epoch, day) so that a resumed run sees exactly the same batches.
Validation uses every validation day once, in order, without augmentation.

:func:`read_store_info` reads the store facts every downscaling checkpoint
carries (:class:`StoreInfo`): besides what the networks need (shapes,
channels, thresholds, normalisation), what ``downpour downscale`` needs to
run a model on new predictor files without the store: the predictor
variables, both grids, the mask, the training period and the training range
of every predictor (docs/layouts.md#checkpoints).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import xarray as xr
from torch.utils.data import DataLoader

from downpour.config import TrainConfig
from downpour.data.batching import FixedLengthBatchSampler, ShardSampler
from downpour.data.sampler import StratifiedBatchSampler
from downpour.data.transforms import build_transform
from downpour.downscaling.dataset import PrecipDataset
from downpour.downscaling.store import labels, open_store, store_attr_json

__all__ = [
    "IN_MEMORY_LIMIT",
    "PrecipDataModule",
    "StoreInfo",
    "decode_array",
    "encode_array",
    "mask_from_runs",
    "mask_runs",
    "read_store_info",
    "split_bytes",
]


#: Bytes of training + validation fields below which ``train.in_memory=None`` loads them.
IN_MEMORY_LIMIT = 2 * 2**30


def split_bytes(store: str | Path, splits: tuple[str, ...]) -> int:
    """Return the bytes of the float32 target and predictor fields of the days of ``splits``."""
    ds = open_store(store)
    try:
        days = int(np.isin(np.asarray(ds["split"].values).astype(object), list(splits)).sum())
        per_day = int(np.prod(ds["target"].shape[1:])) + int(np.prod(ds["predictors"].shape[1:]))
        return days * per_day * 4
    finally:
        ds.close()


class StoreInfo(dict):
    """Facts about a store that models, losses and ``downpour downscale`` need (plain, JSON-able).

    Keys: ``x_channels``, ``s_channels``, ``shape`` (H, W), ``lowres_shape``,
    ``scale_factor``, ``units``, ``thresholds`` (P90/P95/P99 of wet training
    values), ``wet_threshold``, ``normalization`` (dict), ``precip_channels``;
    and for downscaling new files: ``channels`` and ``static_channels``
    (names), ``predictors`` (per channel: ``name``, ``variable``, ``kind``,
    ``units``, ``path``; ``coarsened`` for the perfect-prognosis channel),
    ``grid`` (``coords``: ``latlon`` or ``yx``; ``lat``, ``lon``, ``lat_lr``,
    ``lon_lr`` through :func:`encode_array`), ``mask`` (:func:`mask_runs`),
    ``elevation`` (the normalised static channel, when the store has one),
    ``train_period`` (first and last real training day, ISO) and
    ``predictor_range`` (``min``, ``max`` per channel over the training days,
    physical units).
    """


def encode_array(a: np.ndarray) -> list[float] | dict[str, object]:
    """Return an array as plain data: a list when 1-D, else shape, dtype and base64 bytes.

    Examples
    --------
    >>> encode_array(np.array([1.5, 2.0]))
    [1.5, 2.0]
    >>> decode_array(encode_array(np.eye(2, dtype=np.float32))).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    a = np.asarray(a)
    if a.ndim == 1:
        return [float(v) for v in a]
    data = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    return {
        "shape": list(a.shape),
        "dtype": a.dtype.str.lstrip("<>|="),
        "base64": base64.b64encode(data.tobytes()).decode("ascii"),
    }


def decode_array(v: list[float] | dict[str, object]) -> np.ndarray:
    """Return the array of :func:`encode_array` (1-D lists as float64)."""
    if isinstance(v, dict):
        raw = base64.b64decode(str(v["base64"]))
        shape = tuple(int(n) for n in v["shape"])  # type: ignore[attr-defined]
        return np.frombuffer(raw, dtype=np.dtype("<" + str(v["dtype"]))).reshape(shape).copy()
    return np.asarray(v, dtype=np.float64)


def mask_runs(mask: np.ndarray) -> dict[str, list[int]]:
    """Return a bool mask as its shape and the run lengths of its row-major cells.

    Runs alternate, starting with a run of ``False`` (of length 0 when the
    first cell is valid).

    Examples
    --------
    >>> m = np.array([[False, True, True], [True, False, False]])
    >>> mask_runs(m)
    {'shape': [2, 3], 'runs': [1, 3, 2]}
    >>> bool((mask_from_runs(mask_runs(m)) == m).all())
    True
    """
    flat = np.asarray(mask, dtype=bool).ravel()
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        runs = [0, *runs]
    return {"shape": [int(n) for n in mask.shape], "runs": [int(r) for r in runs]}


def mask_from_runs(d: dict[str, list[int]]) -> np.ndarray:
    """Return the bool mask of :func:`mask_runs`."""
    runs = np.asarray(d["runs"], dtype=np.int64)
    values = np.arange(runs.size) % 2 == 1
    return np.repeat(values, runs).reshape(tuple(d["shape"]))


def _predictor_sources(ds: xr.Dataset, channels: list[str]) -> list[dict[str, object]]:
    """Per channel: name, variable, kind, units, path (from the store's ``source``)."""
    source = store_attr_json(ds, "source")
    recorded = source.get("predictors")
    if isinstance(recorded, list):
        return [
            {
                "name": name,
                "variable": str(p.get("variable", name)),
                "kind": str(p.get("kind", "other")),
                "units": p.get("units"),
                "path": p.get("path"),
            }
            for name, p in zip(channels, recorded, strict=False)
        ]
    target = source.get("target", {})
    return [
        {
            "name": channels[0],
            "variable": str(target.get("variable", channels[0])),
            "kind": "precip",
            "units": str(ds.attrs["units"]),
            "path": target.get("path"),
            "coarsened": True,
        }
    ]


def _downscale_facts(ds: xr.Dataset, channels: list[str]) -> dict[str, object]:
    """Return what ``downpour downscale`` needs: variables, grids, mask, period, range."""
    geo = "lat" in ds.coords
    names = ("lat", "lon", "lat_lr", "lon_lr") if geo else ("y", "x", "y_lr", "x_lr")
    grid: dict[str, object] = {"coords": "latlon" if geo else "yx"}
    for key, name in zip(("lat", "lon", "lat_lr", "lon_lr"), names, strict=True):
        grid[key] = encode_array(np.asarray(ds[name].values, dtype=np.float64))
    split = labels(np.asarray(ds["split"].values))
    train = np.flatnonzero(split == "train")
    synthetic = np.asarray(ds["is_synthetic"].values, bool) if "is_synthetic" in ds else None
    real = train if synthetic is None else train[~synthetic[train]]
    days = np.asarray(ds["time"].values)[real if real.size else train]
    lo = np.full(len(channels), np.inf)
    hi = np.full(len(channels), -np.inf)
    for start in range(0, train.size, 512):  # the training predictors, a block at a time
        x = np.asarray(ds["predictors"].isel(time=train[start : start + 512]).values)
        lo = np.minimum(lo, np.nanmin(x, axis=(0, 2, 3)))
        hi = np.maximum(hi, np.nanmax(x, axis=(0, 2, 3)))
    statics = [str(c) for c in ds["static_channel"].values]
    facts: dict[str, object] = {
        "channels": list(channels),
        "static_channels": statics,
        "predictors": _predictor_sources(ds, channels),
        "grid": grid,
        "mask": mask_runs(np.asarray(ds["mask"].values, dtype=bool)),
        "train_period": [str(days.min())[:10], str(days.max())[:10]],
        "predictor_range": {"min": lo.tolist(), "max": hi.tolist()},
    }
    if "elevation" in statics:
        elevation = ds["static"].isel(static_channel=statics.index("elevation")).values
        facts["elevation"] = encode_array(np.asarray(elevation, dtype=np.float32))
    return facts


def read_store_info(store: str | Path) -> StoreInfo:
    """Read the facts of :class:`StoreInfo` from a prepared (or augmented) store."""
    ds = open_store(store)
    try:
        norm = store_attr_json(ds, "normalization")
        return StoreInfo(
            x_channels=int(ds["predictors"].shape[1]),
            s_channels=int(ds["static"].shape[0]),
            shape=[int(ds["target"].shape[1]), int(ds["target"].shape[2])],
            lowres_shape=[int(ds["predictors"].shape[2]), int(ds["predictors"].shape[3])],
            scale_factor=int(ds.attrs["scale_factor"]),
            units=str(ds.attrs["units"]),
            thresholds=store_attr_json(ds, "thresholds"),
            wet_threshold=float(ds.attrs["wet_threshold"]),
            normalization=norm,
            precip_channels=[i for i, log in enumerate(norm["x_log1p"]) if log],
            **_downscale_facts(ds, [str(c) for c in norm["channels"]]),
        )
    finally:
        ds.close()


class _EpochBatchSampler(StratifiedBatchSampler):
    """Stratified sampler whose batches carry the epoch: lists of ``(epoch, index)``.

    The dataset seeds each item's augmentation with that epoch, which also
    reaches DataLoader workers kept alive across epochs (persistent workers
    hold copies of the dataset made at their start).
    """

    def __init__(self, dataset: PrecipDataset, **kwargs: Any) -> None:
        super().__init__(dataset.is_heavy, **kwargs)
        self._dataset = dataset

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self._dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:  # type: ignore[override]
        """Yield this rank's batches of the current epoch as ``(epoch, index)`` pairs."""
        for batch in super().__iter__():
            yield [(self.epoch, i) for i in batch]


class PrecipDataModule(L.LightningDataModule):
    """Train/validation loaders of one prepared store.

    Parameters
    ----------
    store
        The prepared store (or a run directory holding ``data/store.zarr``).
    train
        Batch size, workers, seed, heavy fraction and augmentation settings.
    batch_size
        Overrides ``train.batch_size`` (SRDRN has its own).
    in_memory
        Hold the training and validation days in memory (fast for small
        stores such as the demo); ``None``: ``train.in_memory``, and when
        that is ``None`` too, whether they take under :data:`IN_MEMORY_LIMIT`.
    batches_per_epoch
        Exactly this many training batches per epoch, read from the endless
        stream of stratified epochs (:class:`~downpour.data.sampler.FixedLengthBatchSampler`);
        ``None``: one pass over the training days.
    """

    def __init__(
        self,
        store: str | Path,
        train: TrainConfig,
        *,
        batch_size: int | None = None,
        in_memory: bool | None = None,
        batches_per_epoch: int | None = None,
    ) -> None:
        super().__init__()
        self.batches_per_epoch = batches_per_epoch
        self.store = Path(store)
        self.cfg = train
        self.batch_size = batch_size or train.batch_size
        self.info = read_store_info(store)
        if in_memory is None:
            in_memory = train.in_memory
        if in_memory is None:
            in_memory = split_bytes(store, ("train", "val")) < IN_MEMORY_LIMIT
        self.in_memory = in_memory
        self.train_set: PrecipDataset | None = None
        self.val_set: PrecipDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        """Open the datasets (called by Lightning on every process)."""
        if self.train_set is None:
            transform = build_transform(
                flips=self.cfg.flips,
                noise=self.cfg.noise,
                precip_channels=self.info["precip_channels"],
            )
            self.train_set = PrecipDataset(
                self.store,
                "train",
                transform=transform,
                in_memory=self.in_memory,
                seed=self.cfg.seed,
            )
            self.val_set = PrecipDataset(self.store, "val", in_memory=self.in_memory)

    def _loader_kwargs(self) -> dict[str, Any]:
        workers = self.cfg.num_workers
        return {
            "num_workers": workers,
            "persistent_workers": self.cfg.persistent_workers and workers > 0,
            "pin_memory": self.cfg.pin_memory
            if self.cfg.pin_memory is not None
            else torch.cuda.is_available(),
            "multiprocessing_context": "fork" if workers and _fork_ok() else None,
        }

    def train_dataloader(self) -> DataLoader:
        """Stratified, augmented batches (a fixed number with ``batches_per_epoch``), per rank."""
        assert self.train_set is not None
        trainer = self.trainer
        sampler = _EpochBatchSampler(
            self.train_set,
            batch_size=self.batch_size,
            min_heavy_fraction=self.cfg.min_heavy_fraction,
            seed=self.cfg.seed,
            num_replicas=trainer.world_size if trainer is not None else 1,
            rank=trainer.global_rank if trainer is not None else 0,
        )
        if self.batches_per_epoch is not None:
            sampler = FixedLengthBatchSampler(sampler, self.batches_per_epoch)
        return DataLoader(self.train_set, batch_sampler=sampler, **self._loader_kwargs())

    def val_dataloader(self) -> DataLoader:
        """Every validation day once, in time order, shared out across DDP ranks."""
        assert self.val_set is not None
        trainer = self.trainer
        sampler = ShardSampler(
            len(self.val_set),
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
        )
        return DataLoader(
            self.val_set, batch_size=self.batch_size, sampler=sampler, **self._loader_kwargs()
        )


def _fork_ok() -> bool:
    import multiprocessing as mp

    return "fork" in mp.get_all_start_methods()
