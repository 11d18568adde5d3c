"""Low-res predictors: read, converted, aligned in time and regridded (or derived by coarsening).

``downpour prepare`` and ``downpour downscale`` read predictors through one
path. :class:`PredictorFile` opens one variable of one file lazily (its
dimensions, grid and units are checked on its first time steps, its time
axis read whole), :meth:`PredictorFile.read` reads the days asked for,
unit-converted, and :func:`predictor_values` checks them (NaN, negative
rain) and brings them onto the low-res grid
(:class:`~downpour.data.regrid.Regridder`, ``data.regrid``,
``data.predictor_edge``).

:func:`load_predictors` (preparation) reads every target day at once, or
coarsens the target itself in the "perfect prognosis" set-up;
:class:`~downpour.downscaling.predictor_set.PredictorSet` (downscaling) reads
the channels of a trained model a block of days at a time, so memory does not
grow with the archive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from downpour.config import DataConfig, VariableSource
from downpour.core.errors import DownpourError
from downpour.data.coarsen import block_mean
from downpour.data.io import describe, load_field, open_file, time_step_hours
from downpour.data.regrid import Regridder
from downpour.data.units import conversion_factor, is_amount

__all__ = [
    "PredictorFile",
    "Predictors",
    "align_time",
    "coarsen_target",
    "load_predictors",
    "predictor_regridder",
    "predictor_values",
]


def align_time(times: np.ndarray, daily: bool) -> np.ndarray:
    """Return ``times`` as nanosecond stamps, truncated to the day for daily data.

    Examples
    --------
    >>> align_time(np.array(["2001-01-01T12:00"], dtype="datetime64[m]"), daily=True)
    array(['2001-01-01T00:00:00.000000000'], dtype='datetime64[ns]')
    """
    times = np.asarray(times).astype("datetime64[ns]")
    return times.astype("datetime64[D]").astype("datetime64[ns]") if daily else times


def coarsen_target(values: np.ndarray, factor: int) -> np.ndarray:
    """Perfect-prognosis predictor: block means of high-res rain ``(T, H, W)`` → ``(T, h, w)``.

    Blocks without any finite cell carry no rain (0).

    Examples
    --------
    >>> coarsen_target(np.array([[[1.0, 3.0], [np.nan, 5.0]]]), 2)
    array([[[3.]]], dtype=float32)
    """
    return np.nan_to_num(block_mean(np.asarray(values), factor), nan=0.0).astype(np.float32)


def _datetime_dim(ds: xr.Dataset, src: VariableSource) -> str | None:
    """Return the time dimension of ``src`` if known without reading values, else None."""
    dims = tuple(map(str, ds[src.variable].dims))
    if src.dims.time is not None:
        return src.dims.time if src.dims.time in dims else None
    found = [d for d in dims if d in ds.coords and np.issubdtype(ds.coords[d].dtype, np.datetime64)]
    return found[0] if len(found) == 1 else None


@dataclass
class PredictorFile:
    """One predictor variable of one file, opened lazily; read a block of days at a time.

    Build it with :meth:`open`. Attributes: ``src``, ``role`` (config key named
    in errors), ``stamps`` ``(N,)`` the file's time stamps (truncated to the
    day for daily data), ``precip`` (kind ``precip``: converted to the
    target units), ``factor`` (the unit conversion factor), ``units`` (units
    of the values :meth:`read` returns), ``units_in_file`` and ``probe`` (its
    first time steps in canonical layout, for grid checks).
    """

    src: VariableSource
    role: str
    ds: xr.Dataset
    tdim: str | None
    stamps: np.ndarray
    precip: bool
    factor: float
    units: str | None
    units_in_file: str | None
    probe: xr.DataArray
    whole: xr.DataArray | None = field(default=None, repr=False)

    @property
    def where(self) -> str:
        """``variable 'pr' in /path`` for messages."""
        return describe(self.src)

    @classmethod
    def open(cls, src: VariableSource, role: str, *, units: str, daily: bool) -> PredictorFile:
        """Open ``src`` and check its variable, dimensions, grid, units and time axis.

        Parameters
        ----------
        src
            The file, variable, kind (``precip`` is converted to ``units``),
            units override and dimension names.
        role
            Config key of the source (``"data.predictors[0]"``).
        units
            The target units, ``"mm/day"`` or ``"mm/h"``.
        daily
            Truncate time stamps to the day.

        Raises
        ------
        DownpourError
            The checks of :func:`~downpour.data.io.load_field`, and duplicate
            time steps.
        """
        ds = open_file(src.path, role)
        try:
            precip = src.kind == "precip"
            target = units if precip else None
            if src.variable not in ds.variables:
                load_field(src, role, ds=ds)  # raises the error that lists the variables
            tdim = _datetime_dim(ds, src)
            whole = None
            if tdim is None:  # an unusual time axis: read the variable whole (load_field decides)
                whole = probe = load_field(src, role, target_units=target, ds=ds)
                raw = np.asarray(whole["time"].values)
            else:
                n = int(ds.sizes[tdim])
                head = ds.isel({tdim: slice(0, min(2, n))})
                probe = load_field(src, role, target_units=target, ds=head)
                raw = np.asarray(ds[tdim].values)
            in_file = src.units if src.units is not None else ds[src.variable].attrs.get("units")
            factor = 1.0
            if precip and whole is None:
                step = time_step_hours(raw) if is_amount(str(in_file)) else None
                factor = conversion_factor(str(in_file), units, step,
                                           where=f"{role}: {describe(src)}",
                                           key=f"'{role}.units'")  # fmt: skip
            stamps = align_time(raw, daily)
            if np.unique(stamps).size != stamps.size:
                raise DownpourError(
                    f"{role}: {describe(src)} has duplicate time steps; remove them"
                )
        except BaseException:
            ds.close()
            raise
        return cls(
            src=src,
            role=role,
            ds=ds,
            tdim=tdim,
            stamps=stamps,
            precip=precip,
            factor=factor,
            units=units if precip else (None if in_file is None else str(in_file)),
            units_in_file=None if in_file is None else str(in_file),
            probe=probe,
            whole=whole,
        )

    def locate(self, times: np.ndarray, against: str = "the target") -> np.ndarray:
        """Positions in the file of the stamps ``times`` (aligned like :attr:`stamps`).

        ``against`` names whose time steps ``times`` are in the error message.

        Raises
        ------
        DownpourError
            Some of ``times`` are missing from the file (names the first and
            the file's range).
        """
        sorter = np.argsort(self.stamps)
        pos = np.searchsorted(self.stamps, times, sorter=sorter).clip(0, self.stamps.size - 1)
        idx = sorter[pos]
        found = self.stamps[idx] == times
        if not found.all():
            missing = times[~found]
            raise DownpourError(
                f"{self.role}: time axes of {against} and {self.where} do not match: "
                f"{missing.size} of {against}'s {times.size} time steps are missing from the "
                f"predictor "
                f"(first: {np.datetime_as_string(missing[0], unit='D')}; predictor covers "
                f"{np.datetime_as_string(self.stamps.min(), unit='D')}.."
                f"{np.datetime_as_string(self.stamps.max(), unit='D')}); "
                "use files covering the same days"
            )
        return idx

    def read(self, idx: np.ndarray) -> xr.DataArray:
        """Read the time steps ``idx`` (positions in the file, in the order wanted).

        Returns
        -------
        xarray.DataArray
            float32 ``(time, y, x)`` in canonical layout, precipitation in the
            target units; ``time`` holds the aligned stamps.
        """
        idx = np.asarray(idx, dtype=np.int64)
        if self.whole is not None:
            da = self.whole.isel(time=idx)
        else:
            order = np.argsort(idx, kind="stable")
            ordered = idx[order]
            run = ordered.size and ordered[-1] - ordered[0] + 1 == ordered.size
            sel: Any = slice(int(ordered[0]), int(ordered[-1]) + 1) if run else ordered
            da = load_field(self.src, self.role, ds=self.ds.isel({self.tdim: sel}))
            values = da.values
            if self.factor != 1.0:
                values = values * np.float32(self.factor)
            if not np.array_equal(order, np.arange(order.size)):
                values = values[np.argsort(order)]
            da = da.copy(data=values)
        return da.assign_coords(time=self.stamps[idx]).assign_attrs(units=self.units)

    def close(self) -> None:
        """Close the file."""
        self.ds.close()


def predictor_values(
    pf: PredictorFile, idx: np.ndarray, regrid: Regridder, negative_tolerance: float
) -> np.ndarray:
    """Read the days ``idx`` of a predictor, check them and bring them onto the low-res grid.

    Parameters
    ----------
    pf
        The predictor.
    idx
        Positions in the file of the days wanted.
    regrid
        Its regridding onto the low-res grid (built from ``pf.probe``).
    negative_tolerance
        Precipitation below ``-negative_tolerance`` is an error; smaller
        negatives are set to 0.

    Returns
    -------
    numpy.ndarray
        float32 ``(T, h, w)``.

    Raises
    ------
    DownpourError
        NaN or missing values (names the first day), negative precipitation.
    """
    da = pf.read(idx)
    bad = ~np.isfinite(da.values)
    if bad.any():
        t = int(np.argwhere(bad)[0][0])
        raise DownpourError(
            f"{pf.role}: {pf.where} holds {int(bad.sum())} NaN/missing values (first on "
            f"{np.datetime_as_string(da.time.values[t], unit='D')}); predictors must be "
            "complete: fill the gaps (e.g. interpolate in time) or drop those days"
        )
    vals = regrid(da.values)
    if pf.precip and (vals < -negative_tolerance).any():
        raise DownpourError(
            f"{pf.role}: {pf.where} holds negative precipitation "
            f"(min {float(vals.min()):.4g}); fix the file"
        )
    return np.maximum(vals, 0) if pf.precip else vals


def predictor_regridder(
    pf: PredictorFile, data: DataConfig, lat_lr: np.ndarray, lon_lr: np.ndarray
) -> Regridder:
    """Return the regridding of ``pf`` onto the low-res cells (``data.regrid``, edge rule)."""
    return Regridder(pf.probe, lat_lr, lon_lr, method=data.regrid, edge=data.predictor_edge,
                     role=pf.role)  # fmt: skip


@dataclass
class Predictors:
    """The low-res predictors of a store and where they came from.

    Attributes
    ----------
    x
        float32 ``(T, C, h, w)`` in physical units.
    channels, log1p
        Channel names; whether each is precipitation (log1p-transformed).
    sources
        Per channel: ``name``, ``path``, ``variable``, ``kind``, ``units``
        (of the values), ``units_in_file``; or the text saying they were derived
        by coarsening the target.
    edge_cells
        Per channel, the low-res cells filled from the nearest predictor cell.
    """

    x: np.ndarray
    channels: list[str]
    log1p: list[bool]
    sources: list[dict[str, Any]] | str
    edge_cells: dict[str, int]


def load_predictors(
    data: DataConfig, y_da: xr.DataArray, times: np.ndarray, daily: bool, fitted_coords: dict
) -> Predictors:
    """Low-res predictors ``(T, C, h, w)`` on the days ``times``, and what they are.

    Without predictor files the target is block-mean coarsened (perfect
    prognosis; blocks with no valid cell carry no rain); each file is read,
    unit-converted (precipitation), aligned to the target's days and, on its
    own grid, regridded onto the low-res grid (``fitted_coords``). Missing
    days, NaN and a domain that does not cover the target are errors.
    """
    f = data.scale_factor
    h, w = y_da.sizes["y"] // f, y_da.sizes["x"] // f
    if not data.predictors:
        x = coarsen_target(y_da.values, f)[:, None]
        return Predictors(x, ["pr_coarse"], [True],
                          "derived by block-mean coarsening of the target", {})  # fmt: skip
    lat_key = "lat_lr" if "lat_lr" in fitted_coords else "y_lr"
    lon_key = "lon_lr" if "lon_lr" in fitted_coords else "x_lr"
    lat_lr = np.asarray(fitted_coords[lat_key][1])
    lon_lr = np.asarray(fitted_coords[lon_key][1])
    chans, names, logs, sources, edges = [], [], [], [], {}
    for k, src in enumerate(data.predictors):
        pf = PredictorFile.open(src, f"data.predictors[{k}]", units=data.units, daily=daily)
        try:
            regrid = predictor_regridder(pf, data, lat_lr, lon_lr)
            vals = predictor_values(pf, pf.locate(times), regrid, data.negative_tolerance)
        finally:
            pf.close()
        if vals.shape[-2:] != (h, w):
            raise DownpourError(
                f"{pf.role}: {pf.where} regrids to {vals.shape[-2:]}, expected {(h, w)}"
            )
        name = src.name or src.variable
        chans.append(vals)
        names.append(name)
        logs.append(pf.precip)
        edges[name] = regrid.edge_cells
        sources.append(
            {
                "name": name,
                "path": str(src.path),
                "variable": src.variable,
                "kind": src.kind,
                "units": pf.units,
                "units_in_file": pf.units_in_file,
            }
        )
    return Predictors(np.stack(chans, axis=1).astype(np.float32), names, logs, sources, edges)
