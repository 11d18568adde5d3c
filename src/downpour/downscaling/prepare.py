"""``downpour prepare``: files (or the embedded dataset) → training store + data card.

Steps: read the target (and predictors, mask, elevation), fit the grid to the
scale factor, derive or regrid the low-res predictors, validate, label the
splits, fit the normalisation on the training days only, label heavy days,
then write ``RUN/data/store.zarr`` (layout in :mod:`downpour.downscaling.store`),
``RUN/data/card.json``, ``RUN/data/normalization.json`` and
``RUN/config.yaml``. Nothing is written when any step fails, and the store
appears only once complete.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from downpour import __version__
from downpour.config import Config, DataConfig, save_config
from downpour.core.errors import DownpourError
from downpour.core.files import atomic_write_text
from downpour.core.rundir import RunDir
from downpour.data.coarsen import coarsen_coords, fit_grid
from downpour.data.io import describe, load_field
from downpour.data.normalize import Normalization, fit_normalization
from downpour.data.splits import (
    SPLITS,
    DrySplitWarning,
    assign_splits,
    domain_statistic,
    dry_split_warnings,
    heavy_labels,
)
from downpour.data.static import build_static
from downpour.downscaling.predictors import align_time, load_predictors
from downpour.downscaling.store import StoreWriter, day_dataset, static_dataset, store_attrs
from downpour.downscaling.synthetic import embedded_sources

__all__ = ["PreparedArrays", "build_arrays", "data_card", "embedded_sources", "prepare"]


@dataclass
class PreparedArrays:
    """Everything that goes into the store, in memory.

    Shapes: ``y`` (T, H, W); ``x`` (T, C, h, w); ``static`` (S, H, W);
    ``mask`` (H, W); ``split``, ``is_heavy``, ``heavy_stat``, ``times`` (T,).
    """

    y: np.ndarray
    x: np.ndarray
    static: np.ndarray
    mask: np.ndarray
    times: np.ndarray
    split: np.ndarray
    is_heavy: np.ndarray
    heavy_stat: np.ndarray
    heavy_threshold: float
    channels: list[str]
    static_channels: list[str]
    coords: dict[str, tuple]
    normalization: Normalization
    info: dict[str, Any]


def _check_target(
    y: np.ndarray, valid: np.ndarray, times: np.ndarray, data: DataConfig, where: str
) -> int:
    """Refuse rain below -tolerance; clip rounding negatives (in place). Return the clip count."""
    neg = valid & (y < 0)
    if not neg.any():
        return 0
    bad = valid & (y < -data.negative_tolerance)
    if bad.any():
        t, i, j = np.argwhere(bad)[0]
        raise DownpourError(
            f"data.target: {where} has {int(bad.sum())} negative values below "
            f"-{data.negative_tolerance} {data.units} (min {float(y[bad].min()):.4g}, first on "
            f"{np.datetime_as_string(times[t], unit='D')} at cell y={i}, x={j}); rain cannot be "
            "negative: fix the file, or raise data.negative_tolerance if these are rounding errors"
        )
    y[neg] = 0.0
    return int(neg.sum())


def build_arrays(data: DataConfig) -> PreparedArrays:
    """Read, validate and assemble every array of the store (no writing).

    Parameters
    ----------
    data
        Data config with a ``target`` file (see :func:`embedded_sources`).

    Returns
    -------
    PreparedArrays
        Only the days that belong to a split are kept (the others are
        counted in ``info["unused_days"]``).
    """
    if data.target is None:
        raise ValueError("build_arrays needs a target file; call embedded_sources first")
    where = describe(data.target)
    y_da = load_field(data.target, "data.target", target_units=data.units)
    daily = data.units == "mm/day"
    times = align_time(y_da.time.values, daily)
    order = np.argsort(times, kind="stable")
    if np.any(np.diff(times[order]).astype(np.int64) == 0):
        raise DownpourError(f"data.target: {where} has duplicate time steps; remove them")
    if not np.array_equal(order, np.arange(times.size)):
        y_da, times = y_da.isel(time=order), times[order]
    y_da = y_da.assign_coords(time=times)
    raw_shape = (y_da.sizes["y"], y_da.sizes["x"])
    y_da, fit = fit_grid(y_da, data.scale_factor, data.grid_fit)
    lowres_coords = coarsen_coords(y_da, data.scale_factor)
    split = assign_splits(times, data.splits, where)
    keep = split != ""
    unused = int((~keep).sum())
    y = y_da.values
    # the valid cells come from the training days alone: a gap on a test day must not
    # remove a cell from training; it is kept as NaN and left out of that day's scores
    finite = np.isfinite(y)
    valid = finite[split == "train"].all(axis=0)
    partial = int((finite[split == "train"].any(axis=0) & ~valid).sum())
    mask = valid
    static_fields: dict[str, np.ndarray] = {}
    for key in ("mask", "elevation"):
        src = getattr(data, key)
        if src is None:
            continue
        raw = load_field(src, f"data.{key}", expect="static")
        if raw.shape != raw_shape:
            raise DownpourError(
                f"data.{key}: {describe(src)} has grid {raw.shape[0]}×{raw.shape[1]}, the target "
                f"{raw_shape[0]}×{raw_shape[1]}; static fields must be on the target grid"
            )
        static_fields[key] = fit_grid(raw, data.scale_factor, data.grid_fit, role=f"data.{key}")[
            0
        ].values
    if "mask" in static_fields:
        mask = valid & (np.nan_to_num(static_fields["mask"]) > 0.5)
    if not mask.any():
        raise DownpourError(
            f"data.target: {where} has no cell valid on every training day; nothing to train on"
        )
    preds = load_predictors(data, y_da, times, daily, lowres_coords)
    x, channels, logs = preds.x, preds.channels, preds.log1p
    y, x, times, split = y[keep], x[keep], times[keep], split[keep]
    y = np.where(mask, y, 0.0).astype(
        np.float32
    )  # NaN stays inside the mask: gaps of val/test days
    missing = {s: int(np.isnan(y[split == s]).sum()) for s in SPLITS}
    clipped = _check_target(y, np.broadcast_to(mask, y.shape), times, data, where)
    lat = y_da["lat"].values if "lat" in y_da.coords else y_da["y"].values
    lon = y_da["lon"].values if "lon" in y_da.coords else y_da["x"].values
    lat2 = np.broadcast_to(lat[:, None], mask.shape) if lat.ndim == 1 else lat
    lon2 = np.broadcast_to(lon[None, :], mask.shape) if lon.ndim == 1 else lon
    static, static_names = build_static(
        mask, lat2, lon2, static_fields.get("elevation"), data.latlon
    )
    is_train = split == "train"
    norm = fit_normalization(
        x[is_train], y[is_train], mask, tuple(channels), tuple(logs), data.units
    )
    stat = domain_statistic(y, mask, data.heavy.statistic)
    is_heavy, threshold = heavy_labels(stat, is_train, data.heavy.quantile)
    coords: dict[str, tuple] = {"time": ("time", times)}
    for name in ("lat", "lon", "y", "x"):
        if name in y_da.coords:
            c = y_da[name]
            coords[name] = (tuple(map(str, c.dims)), c.values)
    coords.update(lowres_coords)
    info = {
        "fit": fit.describe(),
        "unused_days": unused,
        "clipped_negative": clipped,
        "partially_missing_cells": partial,
        "missing_cell_days": missing,
        "target": {
            "path": str(data.target.path),
            "variable": data.target.variable,
            "units_in_file": y_da.attrs.get("units_in_file"),
        },
        "predictors": preds.sources,
        "predictor_edge_cells": preds.edge_cells,
    }
    return PreparedArrays(
        y=y,
        x=x,
        static=static,
        mask=mask,
        times=times,
        split=split,
        is_heavy=is_heavy,
        heavy_stat=stat.astype(np.float32),
        heavy_threshold=threshold,
        channels=channels,
        static_channels=static_names,
        coords=coords,
        normalization=norm,
        info=info,
    )


def _thresholds(y_train: np.ndarray, mask: np.ndarray, wet: float) -> dict[str, float]:
    vals = y_train[:, mask]
    wet_vals = vals[vals > wet]
    if wet_vals.size == 0:
        return {"P90": float("nan"), "P95": float("nan"), "P99": float("nan")}
    p = np.percentile(wet_vals, [90, 95, 99])
    return {"P90": float(p[0]), "P95": float(p[1]), "P99": float(p[2])}


def data_card(arrays: PreparedArrays, data: DataConfig, name: str) -> dict[str, Any]:
    """Summarise the prepared data: shapes, dates per split, thresholds, wet fraction, heavy days.

    Wet fraction counts values ≥ ``data.wet_threshold`` over valid cells (as
    docs/metrics.md#sample-quality); thresholds are percentiles of wet (> ``wet_threshold``)
    training values pooled over cells and days (docs/metrics.md#downscaling-verification).
    """
    a = arrays
    splits: dict[str, Any] = {}
    for s in SPLITS:
        sel = a.split == s
        vals = a.y[sel][:, a.mask]
        vals = vals[np.isfinite(vals)]  # gaps (NaN) of validation or test days are left out
        splits[s] = {
            "days": int(sel.sum()),
            "start": np.datetime_as_string(a.times[sel].min(), unit="D"),
            "end": np.datetime_as_string(a.times[sel].max(), unit="D"),
            "wet_fraction": float((vals >= data.wet_threshold).mean()),
            "mean": float(vals.mean()),
            "max": float(vals.max()),
            "heavy_days": int((a.is_heavy & sel).sum()),
            "missing_cell_days": a.info["missing_cell_days"][s],
        }
    train = a.split == "train"
    h, w = a.y.shape[1:]
    return {
        "name": name,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "downpour_version": __version__,
        "units": data.units,
        "shapes": {
            "y": list(a.y.shape),
            "x": list(a.x.shape),
            "static": list(a.static.shape),
        },
        "grid": {
            "high_res": [h, w],
            "low_res": list(a.x.shape[-2:]),
            "scale_factor": data.scale_factor,
            "fit": a.info["fit"],
            "regrid": data.regrid if data.predictors else "none (derived from the target)",
            "predictor_edge": data.predictor_edge,
            "valid_cells": int(a.mask.sum()),
            "valid_fraction": float(a.mask.mean()),
        },
        "channels": a.channels,
        "static_channels": a.static_channels,
        "splits": splits,
        "wet_threshold": data.wet_threshold,
        "wet_fraction": splits["train"]["wet_fraction"],
        "thresholds": _thresholds(a.y[train], a.mask, data.wet_threshold),
        "thresholds_from": (
            f"wet (> {data.wet_threshold} {data.units}) valid-cell values of the training split"
        ),
        "heavy": {
            "statistic": data.heavy.statistic,
            "quantile": data.heavy.quantile,
            "threshold": a.heavy_threshold,
            "counts": {s: splits[s]["heavy_days"] for s in SPLITS},
        },
        "source": {k: a.info[k] for k in ("target", "predictors")},
        "predictor_edge_cells": a.info["predictor_edge_cells"],
        "unused_days": a.info["unused_days"],
        "clipped_negative_values": a.info["clipped_negative"],
        "partially_missing_cells": a.info["partially_missing_cells"],
        "warnings": dry_split_warnings({k: v["wet_fraction"] for k, v in splits.items()}),
    }


def prepare(cfg: Config, out: str | Path) -> dict[str, Any]:
    """Prepare the training store of a run directory.

    Parameters
    ----------
    cfg
        Resolved config; ``cfg.data.target`` None means the embedded dataset.
    out
        Run directory. Writes ``config.yaml``, ``data/store.zarr``,
        ``data/card.json``, ``data/normalization.json`` (and, for the embedded
        dataset, ``data/source/*.nc``).

    Returns
    -------
    dict
        The data card.
    """
    run = RunDir(out)
    data = cfg.data
    if data.target is None:
        data = embedded_sources(data, run.source_dir)
    arrays = build_arrays(data)
    card = data_card(arrays, data, cfg.name)
    for message in card["warnings"]:
        warnings.warn(message, DrySplitWarning, stacklevel=2)
    days = day_dataset(
        arrays.times,
        target=arrays.y,
        predictors=arrays.x,
        split=arrays.split,
        is_heavy=arrays.is_heavy,
        heavy_stat=arrays.heavy_stat,
        units=data.units,
        heavy_statistic=data.heavy.statistic,
    )
    static = static_dataset(
        static=arrays.static,
        mask=arrays.mask,
        channels=list(arrays.channels),
        static_channels=list(arrays.static_channels),
        coords={k: v for k, v in arrays.coords.items() if k != "time"},
    )
    attrs = store_attrs(
        units=data.units,
        scale_factor=data.scale_factor,
        wet_threshold=data.wet_threshold,
        normalization=arrays.normalization.to_json(),
        thresholds=card["thresholds"],
        heavy_threshold=arrays.heavy_threshold,
        heavy_statistic=data.heavy.statistic,
        source=card["source"],
        data_config=cfg.data.model_dump(mode="json"),
    )
    with StoreWriter(run.store, static, attrs) as writer:
        writer.write(days)
    atomic_write_text(run.normalization, arrays.normalization.to_json())
    atomic_write_text(run.card, json.dumps(card, indent=2))
    save_config(cfg, run.config)
    return card
