"""Torch dataset over the days of one split of a prepared store.

:class:`PrecipDataset` reads the layout described in
:mod:`downpour.downscaling.store`. The small per-day variables (time, split, heavy
and synthetic flags) are read once with xarray when the dataset is built;
the fields themselves are read per item straight from the zarr arrays
(``zarr.open_group(..., mode="r")``, one chunk per day, no dask), which is
the fastest path and safe in ``DataLoader`` workers. The zarr group is opened
lazily on first access in each process (and reopened after a fork), and is
never pickled, so the dataset travels to workers started by fork or spawn
without open handles.

Examples
--------
>>> import tempfile
>>> from downpour.config import load_config
>>> from downpour.downscaling.prepare import prepare
>>> small = ["data.embedded.n_years=1", "data.embedded.height=48", "data.embedded.width=36",
...          "data.splits.train={start: 2001-01-01, end: 2001-08-31}",
...          "data.splits.val={start: 2001-09-01, end: 2001-10-31}",
...          "data.splits.test={start: 2001-11-01, end: 2001-12-31}"]
>>> run = tempfile.mkdtemp()
>>> _ = prepare(load_config("demo", small), run)
>>> ds = PrecipDataset(f"{run}/data/store.zarr", "train")
>>> item = ds[0]
>>> len(ds), item["x"].shape, item["y"].shape
(243, torch.Size([2, 4, 3]), torch.Size([1, 48, 36]))
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr

from downpour.core.errors import DownpourError
from downpour.data.normalize import Normalization
from downpour.data.splits import SPLITS
from downpour.downscaling.store import labels, open_store, resolve_store_path, store_attr_json

__all__ = ["PrecipDataset"]

Sample = dict[str, torch.Tensor]


class PrecipDataset(torch.utils.data.Dataset):
    """The days of one (or several) splits of a prepared store, as tensors.

    Parameters
    ----------
    store
        The prepared ``.zarr`` store, or a run directory holding ``data/store.zarr``.
    split
        ``"train"``, ``"val"`` or ``"test"``, or a sequence of them: the days
        whose ``split`` variable is one of these, in store (time) order.
    normalization
        Transform to network space; default: the one stored in the store's
        ``normalization`` attribute (fitted on the training split).
    transform
        Augmentation applied to the physical-unit sample (keys ``x``, ``y``,
        ``s``, ``mask``; see :mod:`downpour.data.transforms`) *before*
        normalisation; ``None`` for none.
    in_memory
        Load the split's ``x`` and ``y`` once into NumPy instead of reading
        each item from disk (≈ days × H × W × 4 bytes).
    seed
        With a ``transform``: the augmentation of item ``i`` in epoch ``e``
        draws from torch's RNG seeded with ``(seed, e, i)``, so it is the same
        in any worker and after a resume (see :meth:`set_epoch`). ``None``
        leaves the global RNG as it is.

    Raises
    ------
    DownpourError
        The store is missing or malformed, a split name is unknown, or the
        split has no days.

    Notes
    -----
    ``ds[i]`` returns a dict of tensors (H, W: high-res grid; h, w: low-res;
    C predictor channels; S static channels):

    ================  ==================  =========================================
    key               shape, dtype        content
    ================  ==================  =========================================
    ``x``             (C, h, w) float32   predictors, ``normalization.normalize_x``
    ``y``             (1, H, W) float32   ``normalization.normalize_y`` (log1p) of rain
    ``s``             (S, H, W) float32   static fields (normalised in the store)
    ``mask``          (1, H, W) bool      valid (land) cells
    ``time``          () int64            day, nanoseconds since 1970-01-01
    ``index``         () int64            position in the store's time axis
    ``is_heavy``      () bool             heavy-event day
    ``is_synthetic``  () bool             generated day (augmented stores)
    ================  ==================  =========================================
    """

    def __init__(
        self,
        store: str | Path,
        split: str | Sequence[str],
        normalization: Normalization | None = None,
        transform: Callable[[Sample], Sample] | None = None,
        in_memory: bool = False,
        seed: int | None = None,
    ) -> None:
        splits = (split,) if isinstance(split, str) else tuple(split)
        unknown = [s for s in splits if s not in SPLITS]
        if unknown or not splits:
            raise DownpourError(
                f"unknown split {unknown or list(splits)}; choose from {', '.join(SPLITS)}"
            )
        ds = open_store(store)
        self._path = resolve_store_path(store)
        try:
            split_values = labels(np.asarray(ds["split"].values))
            rows = np.flatnonzero(np.isin(split_values, splits))
            label = "+".join(splits)
            if rows.size == 0:
                raise DownpourError(
                    f"split '{label}' of {self._path} has no days; check data.splits in the config"
                )
            self._rows = rows.astype(np.int64)
            self._times = np.asarray(ds["time"].values)[rows].astype("datetime64[ns]")
            self._is_heavy = np.asarray(ds["is_heavy"].values)[rows].astype(bool)
            if "is_synthetic" in ds.variables:
                self._is_synthetic = np.asarray(ds["is_synthetic"].values)[rows].astype(bool)
            else:
                self._is_synthetic = np.zeros(rows.size, dtype=bool)
            n_channels = int(ds["predictors"].shape[1])
            if normalization is None:
                if "normalization" not in ds.attrs:
                    raise DownpourError(
                        f"{self._path} has no 'normalization' attribute; run `downpour prepare` "
                        "again or pass a Normalization"
                    )
                normalization = Normalization.from_dict(store_attr_json(ds, "normalization"))
        finally:
            ds.close()
        if len(normalization.channels) != n_channels:
            raise DownpourError(
                f"normalization has {len(normalization.channels)} predictor channels "
                f"{list(normalization.channels)} but {self._path} has {n_channels}; use the "
                "normalization of this store"
            )
        self.split = splits
        self.normalization = normalization
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.in_memory = bool(in_memory)
        self._times_ns = self._times.astype(np.int64)
        self._pid: int | None = None
        self._x: Any = None
        self._y: Any = None
        self._static: np.ndarray | None = None
        self._mask: np.ndarray | None = None
        if self.in_memory:
            self._open()
            self._x = np.ascontiguousarray(self._x.oindex[self._rows], dtype=np.float32)
            self._y = np.ascontiguousarray(self._y.oindex[self._rows], dtype=np.float32)

    # ---------------------------------------------------------------- reading
    def _open(self) -> None:
        """Open the zarr arrays in this process (lazily; again after a fork)."""
        try:
            group = zarr.open_group(str(self._path), mode="r")
            x, y = group["predictors"], group["target"]
            static = np.asarray(group["static"][...], dtype=np.float32)
            mask = np.asarray(group["mask"][...], dtype=bool)
        except (KeyError, FileNotFoundError, ValueError) as exc:
            raise DownpourError(
                f"cannot read {self._path} ({type(exc).__name__}: {exc}); "
                "run `downpour prepare` again"
            ) from None
        for name, arr in (("x", x), ("y", y)):
            packed = {"scale_factor", "add_offset"} & set(arr.attrs)
            if packed:
                raise DownpourError(
                    f"variable {name!r} of {self._path} is stored packed ({sorted(packed)}); "
                    "the store must hold plain float32, run `downpour prepare` again"
                )
        self._x, self._y = x, y
        self._static, self._mask = static, mask[None]
        self._pid = os.getpid()

    def _read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Physical ``x`` (C, h, w) and ``y`` (H, W) of item ``i``."""
        if self.in_memory:
            return self._x[i].copy(), self._y[i].copy()
        if self._pid != os.getpid():
            self._open()
        row = int(self._rows[i])
        x = np.asarray(self._x[row], dtype=np.float32)
        return x, np.asarray(self._y[row], dtype=np.float32)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without open zarr handles (in-memory arrays travel along)."""
        state = self.__dict__.copy()
        if not self.in_memory:
            state.update(_pid=None, _x=None, _y=None, _static=None, _mask=None)
        return state

    # -------------------------------------------------------------- interface
    def __len__(self) -> int:
        """Return the number of days in the split."""
        return int(self._rows.size)

    def __getitem__(self, key: int | tuple[int, int]) -> Sample:
        """Return item ``i`` as a dict of tensors (see the class Notes for keys and shapes).

        ``key`` is the index ``i``, or ``(epoch, i)``: the epoch seeding the
        augmentation travels with the index, so DataLoader workers that live
        across epochs (``persistent_workers``) augment each epoch differently.
        """
        epoch = self.epoch
        if isinstance(key, tuple):
            epoch, i = (int(k) for k in key)
        else:
            i = key
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} days")
        i = int(i) % n
        x, y = self._read(i)
        mask = self._mask.copy()
        missing = ~np.isfinite(y)
        if missing.any():  # a gap in the truth of a validation or test day: invalid that day
            mask &= ~missing[None]
            y = np.where(missing, np.float32(0.0), y)
        sample = {
            "x": torch.from_numpy(x),
            "y": torch.from_numpy(y)[None],
            "s": torch.from_numpy(self._static.copy()),
            "mask": torch.from_numpy(mask),
        }
        if self.transform is not None and self.seed is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(hash((self.seed, epoch, int(self._rows[i]))) & 0x7FFFFFFF)
                sample = self.transform(sample)
        elif self.transform is not None:
            sample = self.transform(sample)
        norm = self.normalization
        return {
            "x": norm.normalize_x(sample["x"]).to(torch.float32),
            "y": norm.normalize_y(sample["y"]).to(torch.float32),
            "s": sample["s"].to(torch.float32),
            "mask": sample["mask"].to(torch.bool),
            "time": torch.tensor(self._times_ns[i], dtype=torch.int64),
            "index": torch.tensor(self._rows[i], dtype=torch.int64),
            "is_heavy": torch.tensor(bool(self._is_heavy[i])),
            "is_synthetic": torch.tensor(bool(self._is_synthetic[i])),
        }

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that seeds the augmentations (with ``seed`` set)."""
        self.epoch = int(epoch)

    @property
    def is_heavy(self) -> np.ndarray:
        """Heavy-event flag of each item, bool array of shape ``(len(self),)``."""
        return self._is_heavy.copy()

    @property
    def is_synthetic(self) -> np.ndarray:
        """Synthetic-day flag of each item, bool array of shape ``(len(self),)``."""
        return self._is_synthetic.copy()

    @property
    def times(self) -> np.ndarray:
        """Day of each item, ``datetime64[ns]`` array of shape ``(len(self),)``."""
        return self._times.copy()

    @property
    def store_index(self) -> np.ndarray:
        """Position of each item in the store's time axis, int64 array ``(len(self),)``."""
        return self._rows.copy()

    @property
    def store_path(self) -> Path:
        """The zarr store read."""
        return self._path

    def __repr__(self) -> str:
        return (
            f"PrecipDataset({str(self._path)!r}, split={'+'.join(self.split)!r}, "
            f"days={len(self)}, heavy={int(self._is_heavy.sum())}, in_memory={self.in_memory})"
        )
