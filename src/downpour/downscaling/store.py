"""The prepared training store: its layout, and reading it back.

``downpour prepare`` writes one zarr (v3) store per dataset. Everything later
in the flow (datasets, sampling, augmentation, verification) reads this
layout and nothing else:

================ ============================= ======================================
variable         dims, dtype                   content
================ ============================= ======================================
``target``       (time, y, x) float32          high-res precipitation Y in ``units``
                                               (mm/day or mm/h), 0 outside ``mask``;
                                               one chunk per day
``predictors``   (time, channel, y_lr, x_lr)   low-res predictors X in physical
                 float32                       units; one chunk per day
``static``       (static_channel, y, x)        static fields S, already normalised
                 float32                       (mask, z-scored elevation, lat/lon
                                               scaled to [-1, 1])
``mask``         (y, x) bool                   valid (land) cells of the target
``split``        (time) str                    ``"train"``, ``"val"`` or ``"test"``
``is_heavy``     (time) bool                   domain statistic ≥ training quantile
``heavy_stat``   (time) float32                the domain statistic of each day
``is_synthetic`` (time) bool                   False here; True for generated days in
                                               an augmented store
================ ============================= ======================================

An augmented store (``downpour augment``) has two more per-day variables:
``source_time`` (the real day a synthetic day was generated from; its own
time for real days) and ``member`` (the cVAE member, −1 for real days).

Coordinates: ``time`` (datetime64), ``lat``/``lon`` (1-D along y/x, or 2-D
(y, x)), ``lat_lr``/``lon_lr`` along (y_lr)/(x_lr), ``channel`` and
``static_channel`` (names). Latitude increases along ``y``.

Attributes: ``downpour_store_version``, ``units``, ``scale_factor``,
``wet_threshold``, ``normalization`` (JSON, see
:class:`downpour.data.normalize.Normalization`), ``thresholds`` (JSON: P90,
P95, P99 of wet training values), ``heavy_threshold``, ``heavy_statistic``,
``source`` (JSON description of the inputs), ``data_config`` (JSON: the
``data`` section it was prepared with); an augmented store adds
``augmentation`` (JSON provenance).

This module is the one owner of the layout: :func:`day_dataset` builds the
per-day variables of a block of days, :func:`store_attrs` the attributes,
:func:`static_dataset` the fields without a time axis, and
:class:`StoreWriter` writes a store block by block (one chunk per day),
atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import xarray as xr

from downpour.core.errors import DownpourError
from downpour.core.files import atomic_dir
from downpour.core.rundir import RunDir

__all__ = [
    "REQUIRED_VARIABLES",
    "STORE_VERSION",
    "StoreWriter",
    "day_dataset",
    "labels",
    "open_store",
    "resolve_store_path",
    "static_dataset",
    "store_attr_json",
    "store_attrs",
]

STORE_VERSION = 1
REQUIRED_VARIABLES = ("target", "predictors", "static", "mask", "split", "is_heavy")


def resolve_store_path(path: str | Path) -> Path:
    """Return the zarr store itself, also when given a run directory holding ``data/store.zarr``."""
    path = Path(path)
    if not (path / "zarr.json").exists() and RunDir(path).store.is_dir():
        return RunDir(path).store
    return path


def open_store(path: str | Path, chunks: dict[str, int] | None = None) -> xr.Dataset:
    """Open a prepared store lazily and check its layout.

    Parameters
    ----------
    path
        The ``.zarr`` directory written by ``downpour prepare`` (or a run
        directory holding ``data/store.zarr``).
    chunks
        Passed to :func:`xarray.open_zarr`; ``None`` (default) gives plain
        lazily-indexed arrays without dask, which is safe in DataLoader workers.

    Returns
    -------
    xarray.Dataset
        The store, with the variables listed in this module's docstring.
    """
    path = resolve_store_path(path)
    if not path.exists():
        raise DownpourError(
            f"prepared store {path} not found; run `downpour prepare --config C --out RUN` first"
        )
    try:
        ds = xr.open_zarr(path, chunks=chunks, consolidated=False)
    except Exception as exc:  # zarr raises many kinds for a broken store
        raise DownpourError(
            f"{path} is not a readable zarr store ({type(exc).__name__}: {exc}); "
            "run `downpour prepare` again"
        ) from None
    missing = [v for v in REQUIRED_VARIABLES if v not in ds.variables]
    if missing or ds.attrs.get("downpour_store_version") != STORE_VERSION:
        raise DownpourError(
            f"{path} is not a downpour store (missing {missing or 'downpour_store_version'}); "
            "run `downpour prepare` to build one"
        )
    gone = _missing_day_chunks(path, ds)
    if gone:
        ds.close()
        raise DownpourError(
            f"{path} is incomplete: {gone} are missing (deleted or not copied), and would read "
            "as NaN; run `downpour prepare` again (or `downpour augment` for an augmented store)"
        )
    return ds


def _missing_day_chunks(path: Path, ds: xr.Dataset) -> str:
    """Describe the day chunks of ``target`` and ``predictors`` absent from the store ('' if none).

    A store holds one chunk per day (``<var>/c/<day>/...``) and every day has
    values (0 outside the mask), so every chunk exists; counting the day
    entries is a directory listing, fast for decades of days.
    """
    gone = []
    for name in ("target", "predictors"):
        days = int(ds[name].shape[0])
        folder = path / name / "c"
        found = sum(1 for _ in os.scandir(folder)) if folder.is_dir() else 0
        if days and found < days:
            gone.append(f"{days - found} of the {days} day chunks of {name!r}")
    return " and ".join(gone)


def labels(a: np.ndarray) -> np.ndarray:
    """Return labels (``split``) of any string dtype (fixed, ``StringDType``, bytes) as objects.

    Examples
    --------
    >>> labels(np.array([b"train", b"test"])).tolist()
    ['train', 'test']
    """
    if a.dtype.kind == "S":
        a = np.char.decode(a, "utf-8")
    return a.astype(object)


def store_attr_json(ds: xr.Dataset, name: str) -> Any:
    """Return a JSON-encoded attribute of a store, decoded."""
    value = ds.attrs[name]
    return json.loads(value) if isinstance(value, str) else value


def day_dataset(
    time: np.ndarray,
    *,
    target: np.ndarray,
    predictors: np.ndarray,
    split: np.ndarray,
    is_heavy: np.ndarray,
    heavy_stat: np.ndarray,
    units: str,
    heavy_statistic: str,
    is_synthetic: np.ndarray | None = None,
    source_time: np.ndarray | None = None,
    member: np.ndarray | None = None,
) -> xr.Dataset:
    """Return the per-day variables of a block of days in the store layout.

    Parameters
    ----------
    time
        ``(T,)`` datetime64 days.
    target
        ``(T, H, W)`` float32 precipitation in ``units``, 0 outside the mask.
    predictors
        ``(T, C, h, w)`` float32 low-res predictors in physical units.
    split
        ``(T,)`` ``"train"``, ``"val"`` or ``"test"``.
    is_heavy, heavy_stat
        ``(T,)`` heavy-day flags and the domain statistic they threshold.
    units
        Units of ``target`` (``mm/day`` or ``mm/h``).
    heavy_statistic
        Name of the domain statistic (``mean``, ``p99``, ``max``).
    is_synthetic
        ``(T,)`` bool; default all False (real days).
    source_time, member
        Augmented stores only: the real day each day was generated from and
        the cVAE member (−1 for real days); both or neither.

    Returns
    -------
    xarray.Dataset
        With coordinate ``time`` only.
    """
    n = len(time)
    data: dict[str, Any] = {
        "target": (("time", "y", "x"), target, {"units": units, "long_name": "precipitation"}),
        "predictors": (
            ("time", "channel", "y_lr", "x_lr"),
            predictors,
            {"long_name": "low-res predictors"},
        ),
        "split": ("time", np.asarray(split).astype(object)),
        "is_heavy": ("time", np.asarray(is_heavy, dtype=bool)),
        "heavy_stat": ("time", np.asarray(heavy_stat), {"statistic": heavy_statistic}),
        "is_synthetic": (
            "time",
            np.zeros(n, dtype=bool) if is_synthetic is None else np.asarray(is_synthetic, bool),
        ),
    }
    if (source_time is None) != (member is None):
        raise ValueError("give both source_time and member (augmented stores), or neither")
    if source_time is not None:
        data["source_time"] = ("time", source_time)
        data["member"] = ("time", member, {"long_name": "cVAE member; -1 for real days"})
    return xr.Dataset(data, coords={"time": time})


def static_dataset(
    *,
    static: np.ndarray,
    mask: np.ndarray,
    channels: list[str],
    static_channels: list[str],
    coords: dict[str, Any],
) -> xr.Dataset:
    """Return the store's fields without a time axis, and its grid coordinates.

    Parameters
    ----------
    static
        ``(S, H, W)`` normalised static fields.
    mask
        ``(H, W)`` bool valid cells.
    channels, static_channels
        Names of the predictor and static channels.
    coords
        Grid coordinates (``lat``/``lon``, ``lat_lr``/``lon_lr``) as xarray
        coordinate specifications.
    """
    return xr.Dataset(
        {
            "static": (
                ("static_channel", "y", "x"),
                static,
                {"long_name": "normalised static fields"},
            ),
            "mask": (("y", "x"), mask, {"long_name": "valid (land) cells"}),
        },
        coords={
            **coords,
            "channel": ("channel", np.array(channels, dtype=object)),
            "static_channel": ("static_channel", np.array(static_channels, dtype=object)),
        },
    )


def store_attrs(
    *,
    units: str,
    scale_factor: int,
    wet_threshold: float,
    normalization: str,
    thresholds: dict[str, float],
    heavy_threshold: float,
    heavy_statistic: str,
    source: dict[str, Any],
    data_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the store's attributes (``normalization`` as its JSON text).

    ``data_config``, the ``data`` section the store was prepared with, is
    recorded with the store so that a run can tell a stale store from a
    current one without trusting ``config.yaml``.
    """
    extra = {} if data_config is None else {"data_config": json.dumps(data_config)}
    return {
        **extra,
        "downpour_store_version": STORE_VERSION,
        "units": units,
        "scale_factor": scale_factor,
        "wet_threshold": wet_threshold,
        "normalization": normalization,
        "thresholds": json.dumps(thresholds),
        "heavy_threshold": heavy_threshold,
        "heavy_statistic": heavy_statistic,
        "source": json.dumps(source),
    }


class StoreWriter:
    """Write a store block by block, one chunk per day; it appears at ``path`` only when complete.

    Use as a context manager: the first :meth:`write` lays out the store
    (the block's days, the static fields, coordinates and attributes), later
    ones append days. On an error nothing is left at ``path`` (or the old
    store stays).

    Parameters
    ----------
    path
        The ``.zarr`` directory.
    static
        :func:`static_dataset` of the store.
    attrs
        :func:`store_attrs` (plus e.g. ``augmentation``), rewritten by every append.

    Examples
    --------
    >>> import tempfile
    >>> t = np.array(["2001-01-01", "2001-01-02"], dtype="datetime64[ns]")
    >>> days = day_dataset(
    ...     t, target=np.zeros((2, 4, 4), np.float32),
    ...     predictors=np.zeros((2, 1, 2, 2), np.float32), split=["train", "test"],
    ...     is_heavy=[False, True], heavy_stat=np.zeros(2, np.float32), units="mm/day",
    ...     heavy_statistic="mean",
    ... )
    >>> static = static_dataset(
    ...     static=np.zeros((1, 4, 4), np.float32), mask=np.ones((4, 4), bool),
    ...     channels=["pr"], static_channels=["mask"], coords={},
    ... )
    >>> attrs = store_attrs(
    ...     units="mm/day", scale_factor=2, wet_threshold=0.1, normalization="{}",
    ...     thresholds={"P95": 1.0}, heavy_threshold=1.0, heavy_statistic="mean", source={},
    ... )
    >>> path = Path(tempfile.mkdtemp()) / "store.zarr"
    >>> with StoreWriter(path, static, attrs) as writer:
    ...     writer.write(days)
    >>> open_store(path)["split"].values.tolist()
    ['train', 'test']
    """

    def __init__(self, path: str | Path, static: xr.Dataset, attrs: dict[str, Any]) -> None:
        self.path = Path(path)
        self.static = static
        self.attrs = dict(attrs)
        self._tmp: Path | None = None
        self._ctx: Any = None
        self._first = True

    def __enter__(self) -> StoreWriter:
        self._ctx = atomic_dir(self.path)
        self._tmp = self._ctx.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._ctx.__exit__(exc_type, exc, tb)

    def write(self, days: xr.Dataset) -> None:
        """Write (the first call) or append a block of :func:`day_dataset` days."""
        assert self._tmp is not None, "use StoreWriter as a context manager"
        if self._first:
            ds = xr.merge([days, self.static], combine_attrs="drop")
            ds.attrs.update(self.attrs)
            h, w = ds["target"].shape[1:]
            encoding = {
                "target": {"chunks": (1, h, w)},
                "predictors": {"chunks": (1, *ds["predictors"].shape[1:])},
            }
            ds.to_zarr(self._tmp, mode="w", consolidated=False, encoding=encoding, zarr_format=3)
            self._first = False
        else:
            days = days.copy()
            days.attrs.update(self.attrs)  # appends rewrite the attributes
            days.to_zarr(self._tmp, append_dim="time", consolidated=False)
