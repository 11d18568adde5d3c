"""Downscale the days of a store with a trained SRDRN or a baseline.

:func:`predict_srdrn` and :func:`predict_baseline` return the high-res
prediction of every day of a split (or of chosen days of it, ``times``) as
an ``xr.DataArray`` (time, y, x) in the store's units, NaN outside the mask
(a quantile SRDRN: (time, quantile, y, x), coordinate ``quantile`` = τ);
they read and predict the days batch by batch. Baselines are fitted on the
real training days only (:func:`fit_baseline`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from downpour.config import Config
from downpour.core.errors import DownpourError
from downpour.data.normalize import Normalization
from downpour.data.splits import SPLITS
from downpour.downscaling.store import labels, open_store
from downpour.models.baselines import Baseline, build_baseline, precip_channel
from downpour.models.loading import load_model
from downpour.models.srdrn import SRDRN

__all__ = ["fit_baseline", "load_srdrn", "predict_baseline", "predict_srdrn"]


def load_srdrn(checkpoint: str | Path) -> tuple[SRDRN, Config, dict[str, Any]]:
    """Rebuild a trained SRDRN from its checkpoint (:func:`~downpour.models.loading.load_model`).

    Returns
    -------
    (SRDRN, Config, dict)
        The network in eval mode (in the training's memory format, so
        predictions equal its outputs during training), the run's resolved
        config and the store facts recorded at training time (shapes,
        thresholds, normalisation).
    """
    model = load_model(checkpoint, "srdrn")
    assert isinstance(model.net, SRDRN)
    return model.net, model.config, model.info


def _rows(ds: xr.Dataset, split: str, *, real_only: bool = False) -> np.ndarray:
    """Store positions of the days of ``split`` (only the real ones with ``real_only``)."""
    if split not in SPLITS:
        raise DownpourError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    keep = labels(np.asarray(ds["split"].values)) == split
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
    values: np.ndarray,
    ds: xr.Dataset,
    rows: np.ndarray,
    name: str,
    attrs: dict[str, Any],
    quantiles: tuple[float, ...] = (),
) -> xr.DataArray:
    """Wrap ``(T, H, W)`` (or ``(T, Q, H, W)`` with ``quantiles``) predictions.

    Adds the store's time and lat/lon (and the ``quantile`` coordinate); NaN off the mask.
    """
    mask = np.asarray(ds["mask"].values, dtype=bool)
    values = np.where(mask, values, np.nan).astype(np.float32)
    coords: dict[str, Any] = {"time": ("time", np.asarray(ds["time"].values)[rows])}
    dims: tuple[str, ...] = ("time", "y", "x")
    if quantiles:
        dims = ("time", "quantile", "y", "x")
        coords["quantile"] = ("quantile", np.asarray(quantiles, dtype=np.float64))
    for c in ("lat", "lon"):
        if c in ds.coords:
            coords[c] = (tuple(map(str, ds[c].dims)), np.asarray(ds[c].values))
    units = str(ds.attrs.get("units", "mm/day"))
    return xr.DataArray(
        values, dims=dims, coords=coords, name=name, attrs={"units": units, **attrs}
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
        coordinates ``time`` and ``lat``/``lon`` from the store; for a
        quantile SRDRN ``(time, quantile, y, x)`` with the coordinate
        ``quantile`` (the levels τ, increasing; the heads never decrease
        along it).

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
        quantiles = tuple(net.quantiles)
        heads = (len(quantiles),) if quantiles else ()
        out = np.empty((rows.size, *heads, *info["shape"]), dtype=np.float32)
        net = net.to(device)
        with torch.no_grad():
            for start in range(0, rows.size, batch_size):
                batch = rows[start : start + batch_size]
                x = np.asarray(ds["predictors"].isel(time=batch).values, np.float32)
                x = np.ascontiguousarray(norm.normalize_x(x), dtype=np.float32)
                pred = net(torch.from_numpy(x).to(device)).float().cpu().numpy()
                out[start : start + batch.size] = pred if quantiles else pred[:, 0]
        attrs = {"model": "srdrn", "checkpoint": str(checkpoint), "split": split}
        return _as_dataarray(out, ds, rows, "srdrn", attrs, quantiles)
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
