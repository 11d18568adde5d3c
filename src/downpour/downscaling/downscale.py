"""``downpour downscale``: a trained downscaler applied to predictor files of any period.

:func:`downscale` runs a trained SRDRN (one head, or quantile heads), the
cVAE's prior-mode members, or a baseline (bicubic, BCSD fitted on a run's
real training days) on predictor files with no target: a GCM's historical
and scenario runs, a reanalysis year, a forecast. Everything the model needs
comes from its checkpoint (:class:`~downpour.downscaling.model_facts.Facts`:
normalisation, predictor variables and units, both grids, mask, training
period and range; docs/layouts.md#checkpoints); the predictors go through
the reading, unit conversion and regridding of ``downpour prepare``
(:class:`~downpour.downscaling.predictor_set.PredictorSet`), then the stored
normalisation; the models are wrapped by :mod:`downpour.downscaling.downscalers`.

The output (:mod:`downpour.downscaling.cf_output`,
docs/layouts.md#downscaled-output) is a CF-1.8 NetCDF file (or a zarr store)
with dims ``(time, [quantile | member,] lat, lon)``, the variable ``pr`` (or
``exceedance_probability``, from the quantile heads by
:func:`~downpour.metrics.exceedance.exceedance_probability` or from the
fraction of members), ``_FillValue`` outside the mask and provenance
attributes. It is written a block of days at a time (memory: one block,
whatever the number of years) into a temporary sibling renamed into place
when complete.

Predictor values outside the range seen in training are counted per channel
and reported in an :class:`OutOfRangeWarning` and in the file's attributes:
out-of-distribution inputs are the normal case for scenario runs, and the
user must see them.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from downpour import __version__
from downpour.config import Config, DataConfig, apply_overrides, load_config
from downpour.core.devices import torch_device
from downpour.core.errors import DownpourError
from downpour.core.rundir import RunDir
from downpour.data.normalize import Normalization
from downpour.downscaling.cf_output import (
    FILL_VALUE,
    OutputLayout,
    file_sha256,
    open_output,
    output_template,
    output_variable,
)
from downpour.downscaling.datamodule import read_store_info
from downpour.downscaling.downscalers import (
    Downscaler,
    baseline_downscaler,
    cvae_downscaler,
    srdrn_downscaler,
)
from downpour.downscaling.model_facts import Facts, same_dataset
from downpour.downscaling.predictor_set import PredictorSet, channel_sources, check_units
from downpour.downscaling.store import resolve_store_path
from downpour.models.baselines import BASELINES
from downpour.models.loading import load_model

__all__ = ["BLOCK_DAYS", "FILL_VALUE", "DownscaleResult", "OutOfRangeWarning", "downscale"]

#: Most days held in memory at once (fewer when a day of output is large).
BLOCK_DAYS = 365
_BLOCK_BYTES = 256 * 2**20


class OutOfRangeWarning(UserWarning):
    """Predictor values outside the range of the training days (extrapolation)."""


@dataclass
class DownscaleResult:
    """What :func:`downscale` wrote.

    Attributes
    ----------
    path
        The output file (NetCDF) or store (zarr).
    model
        ``srdrn``, ``cvae``, ``bicubic`` or ``bcsd``; ``label`` the run's name for it.
    variable, dims, sizes
        The data variable, its dims and their sizes.
    first, last
        First and last day written.
    out_of_range
        Per channel, the fractions of predictor values below the training
        minimum and above the training maximum (``below``, ``above``).
    edge_cells
        Per channel, low-res cells filled from the nearest predictor cell.
    blocks
        Blocks of days written.
    """

    path: Path
    model: str
    label: str
    variable: str
    dims: tuple[str, ...]
    sizes: dict[str, int]
    first: str
    last: str
    out_of_range: dict[str, dict[str, float]]
    edge_cells: dict[str, int]
    blocks: int


def _load(
    checkpoint: str | Path | None,
    baseline: str | None,
    run: str | Path | None,
    config: str | Path | None,
    overrides: Sequence[str],
    batch_size: int,
    device: str | None,
) -> tuple[Downscaler, Facts, Config, dict[str, Any]]:
    """Resolve the model, its facts and its configuration."""
    if (checkpoint is None) == (baseline is None):
        raise DownpourError("give either --checkpoint CKPT or --baseline NAME --run RUN")
    store_facts = None
    store = None
    if run is not None:
        store = resolve_store_path(run)
        store_facts = Facts.from_info(read_store_info(store), str(store))
    if baseline is not None:
        BASELINES.get(baseline)  # an unknown name lists the valid ones
        if run is None or store is None or store_facts is None:
            raise DownpourError(f"--baseline {baseline} needs --run RUN: it is fitted on the "
                                "real training days of that run's store")  # fmt: skip
        run_cfg = RunDir(run).config
        cfg = load_config(config if config is not None else
                          (run_cfg if run_cfg.is_file() else None), overrides)  # fmt: skip
        model = baseline_downscaler(baseline, store, store_facts)
        return model, store_facts, cfg, {"model": baseline, "run": str(run)}
    assert checkpoint is not None
    loaded = load_model(checkpoint, ("srdrn", "cvae"))
    if config is not None:
        cfg = load_config(config, overrides)
    else:
        cfg = apply_overrides(loaded.config, overrides, str(checkpoint))
    if "grid" in loaded.info:
        facts = Facts.from_info(loaded.info, str(checkpoint))
        if store_facts is not None:
            same_dataset(facts, store_facts, str(checkpoint), f"the store of {run}")
    elif store_facts is not None:
        shapes = (list(store_facts.shape), list(store_facts.lat_lr.shape))
        facts = store_facts
        if list(loaded.info["shape"]) != shapes[0] or (
            list(Normalization.from_dict(loaded.info["normalization"]).channels) != facts.channels
        ):
            raise DownpourError(
                f"{checkpoint} was trained on {loaded.info['shape']} with channels "
                f"{list(loaded.info['normalization']['channels'])}; the store of {run} holds "
                f"{shapes[0]} with {facts.channels}: use a checkpoint of this dataset"
            )
        facts.normalization = Normalization.from_dict(loaded.info["normalization"])
    else:
        facts = Facts.from_info(loaded.info, str(checkpoint))  # raises: retrain or --run
    dev = torch_device(device)
    model = (
        srdrn_downscaler(loaded, facts, batch_size, dev)
        if loaded.kind == "srdrn"
        else cvae_downscaler(loaded, facts, cfg, dev)
    )
    ckpt = Path(checkpoint)
    prov = {"model": f"{loaded.kind} ({loaded.variant})", "checkpoint": str(ckpt.resolve()),
            "checkpoint_sha256": file_sha256(ckpt)}  # fmt: skip
    return model, facts, cfg, prov


def downscale(
    checkpoint: str | Path | None = None,
    *,
    predictors: Sequence[str | Path] = (),
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    baseline: str | None = None,
    run: str | Path | None = None,
    period: str | None = None,
    out: str | Path | None = None,
    fmt: str | None = None,
    output: str | None = None,
    threshold: float | None = None,
    block_days: int | None = None,
    batch_size: int = 64,
    device: str | None = None,
    progress: bool = True,
) -> DownscaleResult:
    """Downscale predictor files of any period with a trained model into a CF file.

    Parameters
    ----------
    checkpoint
        An SRDRN or cVAE checkpoint; or None with ``baseline``.
    predictors
        Files holding the model's predictor variables (any period, any grid
        covering the domain); default: ``--config``'s ``data.predictors``,
        else the files the model was trained on.
    config
        A config whose ``data`` section gives the predictor files (matched
        to the model's channels by name), ``data.regrid``,
        ``data.predictor_edge``, and whose ``sampling`` section the cVAE's
        members; default the checkpoint's (or the run's) config.
    overrides
        ``section.key=value`` (e.g. ``data.regrid=conservative``,
        ``sampling.members=10``).
    baseline
        ``"bicubic"`` or ``"bcsd"`` instead of a checkpoint (needs ``run``).
    run
        A run directory: where baselines are fitted, and where the facts of
        a checkpoint trained by an earlier version come from.
    period
        ``"START:END"`` (inclusive): only these days of the predictor files.
    out
        The output; default ``downscaled_<model>_<first>_<last>.nc`` (or
        ``.zarr``) in the current folder.
    fmt
        ``"netcdf"`` or ``"zarr"``; default from the suffix of ``out``
        (``.zarr`` → zarr), else NetCDF.
    output
        ``"values"`` (default: the field, the quantiles or the members),
        ``"quantiles"``, or ``"probability"`` of exceeding ``threshold``.
    threshold
        Rain rate in the model's units, for ``output="probability"``.
    block_days
        Days held in memory and written at once (default: up to
        :data:`BLOCK_DAYS`, fewer for large outputs).
    batch_size
        Days per forward pass.
    device
        Torch device; default CUDA when available.
    progress
        Show a progress bar.

    Returns
    -------
    DownscaleResult

    Raises
    ------
    DownpourError
        Wrong variables or units, a predictor grid that does not cover the
        domain, a checkpoint of another dataset, a period with no days, an
        old checkpoint without its facts (pass ``run``), a bad output choice.
        Nothing is written then.
    """
    if fmt not in (None, "netcdf", "zarr"):
        raise DownpourError(f"--format {fmt!r}: choose netcdf or zarr")
    model, facts, cfg, prov = _load(checkpoint, baseline, run, config, overrides, batch_size,
                                    device)  # fmt: skip
    variable, extra, var_attrs, transform = output_variable(model, facts, output, threshold)
    paths = [Path(p) for p in predictors]
    sources, roles = channel_sources(facts, model.channels, paths, cfg, config is not None)
    data: DataConfig = cfg.data.model_copy(update={"units": facts.units})
    coarsen = [
        (facts.lat, facts.lon, facts.scale_factor) if facts.predictors[i].get("coarsened") else None
        for i in model.channels
    ]
    pset = PredictorSet(sources, roles, data, facts.lat_lr, facts.lon_lr, coarsen=coarsen,
                        period=period)  # fmt: skip
    try:
        check_units(pset, facts, model.channels)
        days = pset.days
        first, last = (np.datetime_as_string(days[i], unit="D") for i in (0, -1))
        if fmt is None:
            fmt = "zarr" if out is not None and Path(out).suffix == ".zarr" else "netcdf"
        suffix = ".zarr" if fmt == "zarr" else ".nc"
        path = (
            Path(out)
            if out is not None
            else Path(f"downscaled_{model.label}_{first}_{last}{suffix}")
        )
        if path.resolve() in {Path(s.path).resolve() for s in sources}:
            raise DownpourError(f"--out {path} is one of the predictor files; write elsewhere")
        day_shape = ((extra[1].size,) if extra is not None else ()) + facts.shape
        size = block_days or max(1, min(BLOCK_DAYS, _BLOCK_BYTES // (4 * int(np.prod(day_shape)))))
        attrs = {
            "Conventions": "CF-1.8",
            "title": f"precipitation downscaled by downpour ({model.name})",
            "source": f"downpour {__version__}, {prov['model']}",
            "history": f"{_now()} downpour downscale",
            "creation_time": _now(),
            "downpour_version": __version__,
            **prov,
            "source_files": json.dumps(sorted({str(Path(s.path).resolve()) for s in sources})),
            "predictor_channels": json.dumps([facts.channels[i] for i in model.channels]),
            "period": f"{first}:{last}",
            "training_period": f"{facts.train_period[0]}:{facts.train_period[1]}",
            "units": facts.units,
            "regrid": data.regrid,
            "predictor_edge": data.predictor_edge,
            "predictor_edge_cells": json.dumps(pset.edge_cells),
            **model.attrs,
        }
        template, dims = output_template(facts, days, extra, attrs)
        if "lat" in template.coords and template["lat"].ndim == 2:
            var_attrs["coordinates"] = "lat lon"
        layout = OutputLayout(variable, dims, var_attrs, day_shape)
        counts = np.zeros((len(model.channels), 2), dtype=np.int64)
        seen = 0
        lo, hi = facts.lo[model.channels], facts.hi[model.channels]
        blocks = [slice(a, min(a + size, days.size)) for a in range(0, days.size, size)]
        with open_output(path, fmt, template, layout, facts.units == "mm/h") as (writer, final):
            bar = _progress(days.size, progress, f"downscaling → {path.name}")
            for block in blocks:
                x = pset.block(block)
                counts[:, 0] += (x < lo[None, :, None, None]).sum(axis=(0, 2, 3))
                counts[:, 1] += (x > hi[None, :, None, None]).sum(axis=(0, 2, 3))
                seen += x.shape[0] * x.shape[2] * x.shape[3]
                values = transform(model.predict(x, days[block]))
                _check_finite(values, facts.mask, days[block], model.label)
                values = np.where(facts.mask, values, np.nan).astype(np.float32)
                writer.write(block.start, values)
                bar.update(block.stop - block.start)
            bar.close()
            ood = {
                facts.channels[i]: {"below": float(c[0] / seen), "above": float(c[1] / seen)}
                for i, c in zip(model.channels, counts, strict=True)
            }
            final["predictors_outside_training_range"] = json.dumps(ood)
    finally:
        pset.close()
    _warn_out_of_range(ood, facts)
    sizes = {"time": int(days.size)}
    if extra is not None:
        sizes[extra[0]] = int(extra[1].size)
    sizes.update(dict(zip(dims[-2:], facts.shape, strict=True)))
    return DownscaleResult(path, model.name, model.label, variable, dims, sizes, first, last, ood,
                           dict(pset.edge_cells), len(blocks))  # fmt: skip


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _check_finite(values: np.ndarray, mask: np.ndarray, days: np.ndarray, label: str) -> None:
    """Refuse NaN or infinite output inside the mask (it would be written as ``_FillValue``)."""
    bad = ~np.isfinite(values[..., mask])
    if bad.any():
        first = np.datetime_as_string(days[int(np.argwhere(bad)[0][0])], unit="D")
        raise DownpourError(
            f"{label} produced {int(bad.sum())} NaN/infinite values inside the mask (first on "
            f"{first}); the predictors of that day may be absurd (check their range), or the "
            "checkpoint is broken"
        )


def _progress(total: int, show: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="day", disable=not show)


def _warn_out_of_range(ood: dict[str, dict[str, float]], facts: Facts) -> None:
    """Warn with the share of predictor values outside the training range, per channel."""
    parts = [
        f"{name} {v['below']:.1%} below / {v['above']:.1%} above"
        for name, v in ood.items()
        if v["below"] > 0 or v["above"] > 0
    ]
    if parts:
        warnings.warn(
            f"predictor values outside the training range ({facts.train_period[0]} to "
            f"{facts.train_period[1]}): {', '.join(parts)}; the model extrapolates there, "
            "treat those days with care",
            OutOfRangeWarning,
            stacklevel=3,
        )
