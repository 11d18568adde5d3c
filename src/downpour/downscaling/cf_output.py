"""The layout of ``downpour downscale``'s output (docs/layouts.md#downscaled-output), one owner.

A CF-1.8 NetCDF file (or zarr store) with dims ``(time, [quantile | member,]
lat, lon)`` (``y, x`` on a curvilinear or projected grid), the data variable
with units, ``standard_name`` and ``_FillValue`` outside the mask, a
``mask`` variable, ``time_bnds`` for daily data and provenance attributes.
:func:`output_template` lays out everything but the data;
:func:`open_output` creates the output in a temporary sibling, yields a
:class:`BlockWriter` that fills a block of days per call (memory: one
block), and renames it into place when complete (nothing is left behind when
it fails).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from downpour.core.errors import DownpourError
from downpour.core.files import atomic_dir, atomic_file
from downpour.downscaling.downscalers import Downscaler
from downpour.downscaling.model_facts import Facts
from downpour.metrics.exceedance import exceedance_probability

__all__ = [
    "CF_UNITS",
    "FILL_VALUE",
    "BlockWriter",
    "OutputLayout",
    "file_sha256",
    "open_output",
    "output_template",
    "output_variable",
]

#: Written outside the mask (``_FillValue``); read back as NaN.
FILL_VALUE = np.float32(1.0e20)
#: CF units of the target units.
CF_UNITS = {"mm/day": "mm day-1", "mm/h": "mm h-1"}


def file_sha256(path: Path) -> str:
    """Return the SHA-256 of a file (hex), read a MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _grid_coords(facts: Facts) -> tuple[tuple[str, str], dict[str, Any]]:
    """Horizontal dims and CF coordinates of the output."""
    if not facts.latlon:
        attrs_y = {"standard_name": "projection_y_coordinate", "long_name": "y", "axis": "Y"}
        attrs_x = {"standard_name": "projection_x_coordinate", "long_name": "x", "axis": "X"}
        return ("y", "x"), {"y": ("y", facts.lat, attrs_y), "x": ("x", facts.lon, attrs_x)}
    lat_a = {"units": "degrees_north", "standard_name": "latitude", "long_name": "latitude"}
    lon_a = {"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude"}
    if facts.lat.ndim == 1:
        return ("lat", "lon"), {
            "lat": ("lat", facts.lat, {**lat_a, "axis": "Y"}),
            "lon": ("lon", facts.lon, {**lon_a, "axis": "X"}),
        }
    return ("y", "x"), {
        "lat": (("y", "x"), facts.lat, lat_a),
        "lon": (("y", "x"), facts.lon, lon_a),
    }


def output_template(
    facts: Facts, days: np.ndarray, extra: tuple[str, np.ndarray] | None, attrs: dict[str, Any]
) -> tuple[xr.Dataset, tuple[str, ...]]:
    """Return the output's coordinates, mask and global attributes, and its variable's dims.

    ``extra`` is ``("quantile", τ)``, ``("member", indices)`` or None.
    """
    space, coords = _grid_coords(facts)
    daily = facts.units == "mm/day"
    coords["time"] = ("time", days, {"standard_name": "time", "long_name": "time", "axis": "T"})
    if daily:
        coords["time"][2]["bounds"] = "time_bnds"
    dims: tuple[str, ...] = ("time",)
    if extra is not None:
        name, values = extra
        if name == "quantile":
            meta = {"long_name": "quantile level (probability of non-exceedance)", "units": "1"}
        else:
            meta = {"standard_name": "realization", "long_name": "ensemble member (prior mode)"}
        coords[name] = (name, values, meta)
        dims += (name,)
    data_vars: dict[str, Any] = {
        "mask": (space, facts.mask.astype(np.int8), {
            "long_name": "cells the model was trained on (outside: _FillValue)",
            "flag_values": np.array([0, 1], np.int8), "flag_meanings": "outside_mask valid"}),
    }  # fmt: skip
    if daily:
        data_vars["time_bnds"] = (
            ("time", "nv"),
            np.stack([days, days + np.timedelta64(1, "D")], 1),
        )
    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    return ds, dims + space


@dataclass
class OutputLayout:
    """The output's data variable: name, dims, attributes, per-day shape."""

    variable: str
    dims: tuple[str, ...]
    attrs: dict[str, Any]
    day_shape: tuple[int, ...]


def _encoding(ds: xr.Dataset, units_hours: bool) -> dict[str, dict[str, Any]]:
    time_units = "hours since 1970-01-01 00:00:00" if units_hours else "days since 1970-01-01"
    enc: dict[str, dict[str, Any]] = {
        name: {"_FillValue": None} for name in ds.variables if name not in ("time", "time_bnds")
    }
    for name in ("time", "time_bnds"):
        if name in ds.variables:
            enc[name] = {"units": time_units, "calendar": "proleptic_gregorian",
                         "dtype": "float64", "_FillValue": None}  # fmt: skip
    return enc


class BlockWriter:
    """Fills the data variable of an output laid out by a template, a block of days per call."""

    def __init__(self, target: Any, layout: OutputLayout, fmt: str, root: Path) -> None:
        self.target, self.layout, self.fmt, self.root = target, layout, fmt, root

    def write(self, start: int, values: np.ndarray) -> None:
        """Write the days ``start .. start + len(values)`` (NaN becomes ``_FillValue``)."""
        stop = start + values.shape[0]
        if self.fmt == "netcdf":
            self.target[start:stop] = np.ma.masked_invalid(values)
            return
        block = xr.Dataset({self.layout.variable: (self.layout.dims, values)})
        block[self.layout.variable].encoding = {"_FillValue": FILL_VALUE}
        block.to_zarr(self.root, region={"time": slice(start, stop)}, consolidated=False)


@contextlib.contextmanager
def open_output(
    path: Path, fmt: str, template: xr.Dataset, layout: OutputLayout, hourly: bool
) -> Iterator[tuple[BlockWriter, dict[str, Any]]]:
    """Yield a block writer and a dict of attributes added at the end; rename when complete."""
    final: dict[str, Any] = {}
    enc = _encoding(template, hourly)
    n_days = int(template.sizes["time"])
    chunks = (1, *layout.day_shape)
    if fmt == "netcdf":
        import netCDF4

        with atomic_file(path) as tmp:
            template.to_netcdf(tmp, engine="netcdf4", encoding=enc)
            nc = netCDF4.Dataset(tmp, "a")
            try:
                var = nc.createVariable(layout.variable, "f4", layout.dims, zlib=True,
                                        complevel=1, shuffle=True, chunksizes=chunks,
                                        fill_value=FILL_VALUE)  # fmt: skip
                var.setncatts(layout.attrs)
                yield BlockWriter(var, layout, fmt, tmp), final
                nc.setncatts(final)
            finally:
                nc.close()
        return
    import dask.array as dsa
    import zarr

    lazy = dsa.zeros((n_days, *layout.day_shape), chunks=(min(n_days, 64), *layout.day_shape),
                     dtype=np.float32)  # fmt: skip
    full = template.assign({layout.variable: (layout.dims, lazy, layout.attrs)})
    enc[layout.variable] = {"chunks": chunks, "_FillValue": FILL_VALUE}
    with atomic_dir(path) as tmp:
        full.to_zarr(tmp, mode="w", compute=False, consolidated=False, encoding=enc, zarr_format=3)
        yield BlockWriter(None, layout, fmt, tmp), final
        zarr.open_group(tmp, mode="r+").attrs.update(final)


def output_variable(
    model: Downscaler, facts: Facts, output: str | None, threshold: float | None
) -> tuple[str, Any, dict[str, Any], Callable[[np.ndarray], np.ndarray]]:
    """Return the variable written, its extra dim, its attributes and the model output's transform.

    ``output``: ``None``/``"values"`` (the field, quantiles or members as the
    model gives them), ``"quantiles"`` (a quantile SRDRN only) or
    ``"probability"`` of exceeding ``threshold`` (quantile heads through
    :func:`~downpour.metrics.exceedance.exceedance_probability`, members by
    the fraction above it).
    """
    units = CF_UNITS[facts.units]
    what = {"srdrn": "SRDRN", "cvae": "cVAE prior-mode members", "bicubic": "bicubic interpolation",
            "bcsd": "BCSD"}[model.name]  # fmt: skip
    value_attrs = {
        "units": units,
        "standard_name": "lwe_precipitation_rate",
        "long_name": f"precipitation rate downscaled by {what}",
        "cell_methods": "time: mean",
    }
    if output in (None, "values", "quantiles"):
        if output == "quantiles" and (model.extra is None or model.extra[0] != "quantile"):
            raise DownpourError(
                f"--output quantiles needs an SRDRN with quantile heads (srdrn.quantiles); "
                f"{model.label} gives {'members' if model.extra else 'one field'} per day"
            )
        return "pr", model.extra, value_attrs, lambda v: v
    if output != "probability":
        raise DownpourError(f"--output {output!r}: choose values, quantiles or probability")
    if threshold is None:
        raise DownpourError("--output probability needs --threshold T (in the model's units)")
    if not threshold >= 0:
        raise DownpourError(f"--threshold {threshold}: a rain threshold cannot be negative")
    if model.extra is None:
        raise DownpourError(
            f"--output probability needs a distributional model (SRDRN quantile heads or the "
            f"cVAE's members); {model.label} gives one field per day"
        )
    kind, levels = model.extra
    if kind == "quantile":

        def transform(v: np.ndarray) -> np.ndarray:
            return exceedance_probability(v, levels, threshold, axis=-3).astype(np.float32)

        how = "quantile heads: linear between heads, exponential tail (exceedance_probability)"
    else:

        def transform(v: np.ndarray) -> np.ndarray:
            return (v > threshold).mean(axis=1).astype(np.float32)

        how = "fraction of the cVAE's prior-mode members above the threshold"
    attrs = {
        "units": "1",
        "long_name": f"probability that the precipitation rate exceeds {threshold:g} {units}",
        "threshold": float(threshold),
        "threshold_units": units,
        "method": how,
    }
    return "exceedance_probability", None, attrs, transform
