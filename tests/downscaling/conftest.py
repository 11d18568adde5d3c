"""Fixtures of the downscaling tests: a tiny store with closed-form values, an SRDRN checkpoint.

The tiny store is written by ``downpour.downscaling.store``:

60 days from 2001-01-01, high-res 24×24, low-res 4×4 (scale factor 6),
predictor channels ``pr`` (block mean of the target, precipitation) and
``q`` (a moisture-like field), static channels ``mask``, ``elevation``,
``lat``. Values follow closed forms so tests can check exact numbers:

- ``y[t, i, j] = t + 0.01 · (24 i + j)`` on land (``j ≥ 2``), 0 on the two
  ocean columns ``j < 2``; every day with ``t % 5 == 4`` is dry (all 0)
- ``x[t, 0]`` = 6×6 block mean of ``y[t]``; ``x[t, 1, a, b] = 100 + t + a - b``
- split: days 0-39 train, 40-49 val, 50-59 test
- heavy: ``t % 10 == 8`` (days 8, 18, 28, 38 train; 48 val; 58 test)
- synthetic: days 30 and 31
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _shared import QUARTER_JAN
from downpour.config import load_config
from downpour.data.normalize import Normalization, fit_normalization
from downpour.downscaling.store import StoreWriter, day_dataset, static_dataset, store_attrs

N_DAYS, SIZE, SCALE = 60, 24, 6


@dataclass
class TinyStore:
    """Path of a written store and the arrays written into it."""

    path: Path
    y: np.ndarray  # (T, H, W)
    x: np.ndarray  # (T, C, h, w)
    static: np.ndarray  # (S, H, W)
    mask: np.ndarray  # (H, W)
    split: np.ndarray  # (T,)
    is_heavy: np.ndarray  # (T,)
    is_synthetic: np.ndarray  # (T,)
    times: np.ndarray  # (T,) datetime64[ns]
    normalization: Normalization


def block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """Mean over f×f blocks of the last two axes."""
    *lead, h, w = a.shape
    return a.reshape(*lead, h // f, f, w // f, f).mean(axis=(-3, -1))


def write_store(
    path: Path,
    n_days: int = N_DAYS,
    size: tuple[int, int] | int = SIZE,
    scale: int = SCALE,
    synthetic: bool = True,
    splits: tuple[int, int] | None = None,
) -> TinyStore:
    """Write a store with the closed-form values of the module docstring.

    ``splits`` = (first val day, first test day); default (2/3, 5/6 of the days).
    """
    height, width = (size, size) if isinstance(size, int) else size
    t = np.arange(n_days)
    i = np.arange(height)[:, None]
    j = np.arange(width)[None, :]
    mask = np.broadcast_to(j >= 2, (height, width)).copy()
    y = (t[:, None, None] + 0.01 * (width * i + j)[None]).astype(np.float32)
    y = np.where(mask[None] & (t % 5 != 4)[:, None, None], y, 0).astype(np.float32)
    h, w = height // scale, width // scale
    a = np.arange(h)[:, None]
    b = np.arange(w)[None, :]
    x = np.empty((n_days, 2, h, w), dtype=np.float32)
    x[:, 0] = block_mean(y.astype(np.float64), scale)
    x[:, 1] = 100.0 + t[:, None, None] + (a - b)[None]
    lat = np.linspace(40.0, 40.0 + 0.1 * (height - 1), height)
    lon = np.linspace(10.0, 10.0 + 0.1 * (width - 1), width)
    static = np.stack(
        [
            mask.astype(np.float32),
            np.broadcast_to((i - (height - 1) / 2) / 7.0, (height, width)),
            np.broadcast_to(np.linspace(-1.0, 1.0, height)[:, None], (height, width)),
        ]
    ).astype(np.float32)
    v0, t0 = splits or (2 * n_days // 3, 5 * n_days // 6)
    split = np.where(t < v0, "train", np.where(t < t0, "val", "test")).astype(object)
    is_heavy = t % 10 == 8
    is_synthetic = np.isin(t, [30, 31]) if synthetic else np.zeros(n_days, dtype=bool)
    times = pd.date_range("2001-01-01", periods=n_days, freq="D").values.astype("datetime64[ns]")
    train = split == "train"
    norm = fit_normalization(x[train], y[train], mask, ("pr", "q"), (True, False))
    days = day_dataset(
        times,
        target=y,
        predictors=x,
        split=split,
        is_heavy=is_heavy,
        heavy_stat=y.mean(axis=(1, 2)).astype(np.float32),
        units="mm/day",
        heavy_statistic="mean",
        is_synthetic=is_synthetic,
    )
    static_ds = static_dataset(
        static=static,
        mask=mask,
        channels=["pr", "q"],
        static_channels=["mask", "elevation", "lat"],
        coords={
            "lat": (("y",), lat),
            "lon": (("x",), lon),
            "lat_lr": (("y_lr",), lat[: h * scale].reshape(h, scale).mean(axis=1)),
            "lon_lr": (("x_lr",), lon[: w * scale].reshape(w, scale).mean(axis=1)),
        },
    )
    attrs = store_attrs(
        units="mm/day",
        scale_factor=scale,
        wet_threshold=0.1,
        normalization=norm.to_json(),
        thresholds={"p90": 1.0, "p95": 2.0, "p99": 3.0},
        heavy_threshold=1.0,
        heavy_statistic="mean",
        source={"kind": "test fixture"},
    )
    with StoreWriter(path, static_ds, attrs) as writer:
        writer.write(days)
    if not synthetic:  # a store written before augmentation existed: no is_synthetic variable
        shutil.rmtree(Path(path) / "is_synthetic")
    return TinyStore(
        path=Path(path),
        y=y,
        x=x,
        static=static,
        mask=mask,
        split=split.astype(str),
        is_heavy=is_heavy,
        is_synthetic=is_synthetic,
        times=times,
        normalization=norm,
    )


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> TinyStore:
    """The 60-day store of the module docstring (read-only: do not modify)."""
    return write_store(tmp_path_factory.mktemp("store") / "store.zarr")


@pytest.fixture(scope="session")
def make_store() -> Callable[..., TinyStore]:
    """:func:`write_store` itself, for tests that need a store of their own."""
    return write_store


@pytest.fixture(scope="session")
def tiny_store_no_synthetic(tmp_path_factory: pytest.TempPathFactory) -> TinyStore:
    """The same store without the ``is_synthetic`` variable."""
    return write_store(tmp_path_factory.mktemp("store") / "store.zarr", synthetic=False)


@pytest.fixture(scope="session")
def srdrn_ckpt(quarter_jan_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained small SRDRN checkpoint of the quarter_jan store (as `train srdrn` writes)."""
    import torch

    from downpour.downscaling.datamodule import read_store_info
    from downpour.downscaling.srdrn_module import SRDRNModule

    over = ["srdrn.filters=8", "srdrn.res_blocks=2", "srdrn.upsample_filters=8"]
    torch.manual_seed(0)
    module = SRDRNModule(
        load_config("demo", [*QUARTER_JAN, *over]), read_store_info(quarter_jan_run)
    )
    ckpt = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)
    path = tmp_path_factory.mktemp("srdrn_ckpt") / "best.ckpt"
    torch.save(ckpt, path)
    return path
