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

Coordinates: ``time`` (datetime64), ``lat``/``lon`` (1-D along y/x, or 2-D
(y, x)), ``lat_lr``/``lon_lr`` along (y_lr)/(x_lr), ``channel`` and
``static_channel`` (names). Latitude increases along ``y``.

Attributes: ``downpour_store_version``, ``units``, ``scale_factor``,
``wet_threshold``, ``normalization`` (JSON, see
:class:`downpour.data.normalize.Normalization`), ``thresholds`` (JSON: P90,
P95, P99 of wet training values), ``heavy_threshold``, ``heavy_statistic``,
``source`` (JSON description of the inputs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import xarray as xr

from downpour.core.errors import DownpourError

__all__ = [
    "REQUIRED_VARIABLES",
    "STORE_VERSION",
    "open_store",
    "resolve_store_path",
    "store_attr_json",
]

STORE_VERSION = 1
REQUIRED_VARIABLES = ("target", "predictors", "static", "mask", "split", "is_heavy")


def resolve_store_path(path: str | Path) -> Path:
    """Return the zarr store itself, also when given a run directory holding ``data/store.zarr``."""
    path = Path(path)
    if not (path / "zarr.json").exists() and (path / "data" / "store.zarr").is_dir():
        return path / "data" / "store.zarr"
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
    return ds


def store_attr_json(ds: xr.Dataset, name: str) -> Any:
    """Return a JSON-encoded attribute of a store, decoded."""
    value = ds.attrs[name]
    return json.loads(value) if isinstance(value, str) else value
