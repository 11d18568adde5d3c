"""What the test folders import by name: override lists of the small runs, and small helpers.

``tests/conftest.py`` puts ``tests/`` on ``sys.path``, so every test module can
``from _shared import ...`` (the name cannot clash with a test module: those
start with ``test_``). Fixtures stay in the ``conftest.py`` files; the shared
prepared and trained runs built from these lists are fixtures of
``tests/conftest.py``.

Data sections of the small 48×36 embedded runs (one prepared run each,
``tests/conftest.py``); the split sizes are what the tests' assertions count:

- :data:`HALF_YEAR`: train 2001-01-01..06-30 (181 days), val 2001-07..08,
  test 2002; heavy = days above the 0.9 training quantile
- :data:`HALF_YEAR_Q95`: as :data:`HALF_YEAR`, heavy above the demo preset's
  0.95 quantile (the channels_last training test's tolerance is set on it)
- :data:`QUARTER`: train 2001-01-01..03-31 (90 days), val 2001-04, test 2002;
  heavy quantile 0.8
- :data:`QUARTER_JAN`: as :data:`QUARTER`, test January 2002 (31 days)
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

#: The repository's root folder.
ROOT = Path(__file__).resolve().parents[1]

#: Two years (2001-2002) of the embedded dataset on a 48×36 grid (scale 12: 4×3 predictors).
EMBEDDED = ["data.embedded.n_years=2", "data.embedded.height=48", "data.embedded.width=36"]
#: Train 2001-01-01..06-30, heavy days: the demo's 0.95 training quantile.
HALF_YEAR_Q95 = [
    *EMBEDDED,
    "data.splits.train={start: 2001-01-01, end: 2001-06-30}",
    "data.splits.val={start: 2001-07-01, end: 2001-08-31}",
    "data.splits.test.years=[2002]",
]
HALF_YEAR = [*HALF_YEAR_Q95, "data.heavy.quantile=0.9"]
QUARTER = [
    *EMBEDDED,
    "data.splits.train={start: 2001-01-01, end: 2001-03-31}",
    "data.splits.val={start: 2001-04-01, end: 2001-04-30}",
    "data.splits.test.years=[2002]",
    "data.heavy.quantile=0.8",
]
QUARTER_JAN = [
    *EMBEDDED,
    "data.splits.train={start: 2001-01-01, end: 2001-03-31}",
    "data.splits.val={start: 2001-04-01, end: 2001-04-30}",
    "data.splits.test={start: 2002-01-01, end: 2002-01-31}",
    "data.heavy.quantile=0.8",
]
#: A tiny demo-preset SRDRN (two optimiser steps) for the downscale tests.
TINY_SRDRN = [
    "srdrn.filters=8",
    "srdrn.res_blocks=2",
    "srdrn.upsample_filters=8",
    "srdrn.batch_size=8",
    "srdrn.lr=1e-3",
    "srdrn.epochs=1",
    "srdrn.batches_per_epoch=2",
]


#: The design notes' cVAE (arch pyramid, ELBO objective) with every mechanism of its former
#: demo preset (skips, attention, residual blocks, hurdle head, conditional prior, cyclical KL,
#: every loss term, posterior sampling with the calibrated wet rule), at a tiny width: the
#: generic machinery (sampling, evaluate, augment, verify, downscale) is tested on it; the
#: demo's ensemble generator has its own tests (``TINY_GENERATOR``).
PYRAMID_CVAE = [
    "model.arch=pyramid", "model.skips=true", "model.attention=true", "model.res_blocks=true",
    "model.dropout=0.1", "model.head=hurdle", "model.prior=conditional", "model.residual=none",
    "loss.objective=elbo", "loss.w_max=10", "loss.tail_boost=5", "loss.lambda_mass=0.005",
    "loss.beta_kl=0.005", "loss.kl_schedule=cyclical", "loss.kl_warmup_epochs=2",
    "loss.kl_cycle_period=4", "loss.kl_cycle_drop=1", "loss.free_bits=0.5",
    "loss.lambda_sparse=0.01", "loss.lambda_multiscale=0.1", "loss.lambda_grad=0.05",
    "loss.lambda_focal=1.0", "train.monitor=val/MAE_tail", "train.val_every=1",
    "train.channels_last=false", "train.checkpoint_every=2", "train.max_batches_per_epoch=22",
    "sampling.mode=posterior", "sampling.wet_rule=calibrated",
]  # fmt: skip
#: A tiny cVAE (base_filters 8, d_z 8) of the design notes' architecture.
TINY_CVAE = [*PYRAMID_CVAE, "model.base_filters=8", "model.d_z=8", "model.d_x=16", "model.d_y=16"]
#: The demo's ensemble generator at a tiny width (arch lowres, ensemble objective, 3 members).
TINY_GENERATOR = ["model.base_filters=8", "model.d_z=8", "model.d_x=16", "loss.members=3"]
#: The small run of ``trained_run`` (fixture ``small_overrides``): HALF_YEAR, a tiny cVAE, 1 epoch.
SMALL = [*HALF_YEAR, *TINY_CVAE, "train.batch_size=16", "train.epochs=1"]

#: ``nowcast train --set ...`` of the tiny nowcast run (fixture ``trained_nowcast``):
#: 24 hourly frames of 24×24 (generated directly at 60 min), one epoch.
NOWCAST_TINY_RUN = [
    "nowcast.embedded_hours=24",
    "nowcast.embedded_size=24",
    "nowcast.embedded_step_minutes=60",
    "nowcast.n_frames=3",
    "nowcast.base_features=4",
    "nowcast.depth=2",
    "nowcast.batch_size=2",
    "nowcast.accumulate=1",
    "nowcast.epochs=1",
    "nowcast.hours=3",
    "nowcast.verify_every=1",
    "nowcast.fss_scales=[1,3]",
    "nowcast.rollout_steps=1",
]


def copy_run(src: Path, dst: Path) -> Path:
    """Copy a (shared, read-only) run directory to ``dst`` for a test that writes into it."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


def fingerprint(path: Path) -> dict[str, tuple[int, int]]:
    """Return ``{relative path: (size, mtime)}`` of every file under ``path``."""
    out = {}
    for p in sorted(Path(path).rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(path))] = (st.st_size, st.st_mtime_ns)
    return out


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread: tiny networks run several times faster so, on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def write_augmented(
    store: Path,
    dst: Path,
    *,
    target_factor: float,
    predictor_factor: float = 1.0,
    synthetic_split: str = "train",
) -> int:
    """Write ``dst``: the days of ``store``, then copies of its heavy training days.

    The copies are flagged synthetic, their target and predictors multiplied by
    the factors, their split set to ``synthetic_split``; the store is written
    through :mod:`downpour.downscaling.store` like any other. Return the number
    of copies.
    """
    from downpour.downscaling.store import (
        StoreWriter,
        day_dataset,
        labels,
        open_store,
        static_dataset,
        store_attr_json,
        store_attrs,
    )

    ds = open_store(store).load()
    split = labels(ds["split"].values)
    heavy = np.flatnonzero((split == "train") & ds["is_heavy"].values)

    def days(rows: np.ndarray, synthetic: bool):
        sub = ds.isel(time=rows)
        y_factor, x_factor = (target_factor, predictor_factor) if synthetic else (1.0, 1.0)
        return day_dataset(
            sub["time"].values,
            target=sub["target"].values * np.float32(y_factor),
            predictors=sub["predictors"].values * np.float32(x_factor),
            split=np.full(rows.size, synthetic_split, dtype=object) if synthetic else split[rows],
            is_heavy=sub["is_heavy"].values,
            heavy_stat=sub["heavy_stat"].values,
            units=ds.attrs["units"],
            heavy_statistic=ds.attrs["heavy_statistic"],
            is_synthetic=np.ones(rows.size, bool) if synthetic else sub["is_synthetic"].values,
        )

    static = static_dataset(
        static=ds["static"].values,
        mask=ds["mask"].values,
        channels=list(labels(ds["channel"].values)),
        static_channels=list(labels(ds["static_channel"].values)),
        coords={c: ds[c].variable for c in ("lat", "lon", "lat_lr", "lon_lr") if c in ds.coords},
    )
    attrs = store_attrs(
        units=ds.attrs["units"],
        scale_factor=int(ds.attrs["scale_factor"]),
        wet_threshold=float(ds.attrs["wet_threshold"]),
        normalization=ds.attrs["normalization"],
        thresholds=store_attr_json(ds, "thresholds"),
        heavy_threshold=float(ds.attrs["heavy_threshold"]),
        heavy_statistic=ds.attrs["heavy_statistic"],
        source=store_attr_json(ds, "source"),
    )
    with StoreWriter(dst, static, attrs) as writer:
        writer.write(days(np.arange(ds.sizes["time"]), synthetic=False))
        writer.write(days(heavy, synthetic=True))
    return heavy.size


def assert_same_result(got, ref, rel: float = 1e-12) -> None:
    """Counts exactly, every other number to ``rel`` (relative), NaN where the other is NaN."""
    if isinstance(ref, dict):
        assert set(got) == set(ref)
        for k in ref:
            assert_same_result(got[k], ref[k], rel)
    elif isinstance(ref, list):
        assert len(got) == len(ref)
        for a, b in zip(got, ref, strict=True):
            assert_same_result(a, b, rel)
    elif isinstance(ref, bool | int | str) or ref is None:
        assert got == ref
    else:
        assert got == pytest.approx(ref, rel=rel, abs=rel * 1e-3, nan_ok=True)


def record_days(monkeypatch: pytest.MonkeyPatch, cls: type, method: str) -> list[int]:
    """Wrap ``cls.method(self, x, ...)`` to record the days (``len(x)``) of every call."""
    seen: list[int] = []
    real = getattr(cls, method)

    def wrapped(self, x, *args, **kwargs):
        seen.append(len(x))
        return real(self, x, *args, **kwargs)

    monkeypatch.setattr(cls, method, wrapped)
    return seen


#: Thresholds and FSS scales of the verification-state tests (:func:`verification_fields`).
VERIFY_THR = {"P95": 6.0, "10mm": 10.0}
VERIFY_SCALES = (1, 3, 4)


def verification_fields(days: int = 30, shape: tuple[int, int] = (14, 11), seed: int = 0):
    """Gamma rain truth, a noisy prediction (one NaN cell), a mask and daily time stamps."""
    rng = np.random.default_rng(seed)
    size = (days, *shape)
    truth = np.where(rng.random(size) < 0.5, rng.gamma(0.8, 6.0, size), 0.0).astype(np.float32)
    pred = np.maximum(truth + rng.normal(0.0, 3.0, size), 0.0).astype(np.float32)
    pred[min(4, days - 1), 2, 3] = np.nan
    mask = rng.random(shape) > 0.3
    times = np.arange("2001-01-01", days, dtype="datetime64[D]").astype("datetime64[ns]")
    return pred, truth, mask, times


def accumulate_days(pred, truth, mask, times, days: slice, batch: int = 7):
    """A :class:`VerificationAccumulator` of the days ``days``, updated ``batch`` days at a time."""
    from downpour.metrics.accumulator import VerificationAccumulator

    acc = VerificationAccumulator(VERIFY_THR, scales=VERIFY_SCALES, mask=mask)
    idx = np.arange(len(times))[days]
    for i in range(0, idx.size, batch):
        sel = idx[i : i + batch]
        acc.update(pred[sel], truth[sel], time=times[sel])
    return acc


def cvae_checkpoint(run: Path) -> Path:
    """``RUN/checkpoints/cvae/last.ckpt``."""
    return run / "checkpoints" / "cvae" / "last.ckpt"


def opened(path: Path):
    """A samples store (zarr folder or NetCDF file) opened and loaded into memory."""
    import xarray as xr

    if path.is_dir():
        return xr.open_zarr(path, consolidated=False).load()
    return xr.open_dataset(path).load()
