"""Reading NetCDF and zarr into one canonical layout.

Whatever the file's dimension order, latitude direction or coordinate style,
:func:`load_field` returns a DataArray with dims ``(time, y, x)`` (or
``(y, x)`` for static fields), latitude increasing along ``y`` and longitude
along ``x``, coordinates ``lat``/``lon`` (1-D along y/x, or 2-D), float32
values, packed integers decoded (``scale_factor``/``add_offset``) and fill
values as NaN. Precipitation variables are converted to the target units.
Every problem raises :class:`~downpour.core.errors.DownpourError` naming the file
and the variable.

Axes are found in this order: the names given in the config
(``dims.time``/``y``/``x``/``lat``/``lon``), then CF metadata through
`cf-xarray <https://cf-xarray.readthedocs.io>`_ (``axis``, ``standard_name``,
``units`` such as ``degrees_north``, ``_CoordinateAxisType``; a time axis
also by its datetime values), then common names (``lat``, ``latitude``,
``rlat``, ``nav_lat``, ``valid_time`` …).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import cf_xarray  # noqa: F401  (registers the .cf accessor)
import numpy as np
import xarray as xr

from downpour.config import VariableSource
from downpour.core.errors import DownpourError
from downpour.data.units import conversion_factor, is_amount

__all__ = ["describe", "load_field", "open_file", "time_step_hours"]

_TIME_NAMES = ("time", "t", "valid_time", "date", "datetime")
_Y_NAMES = ("lat", "latitude", "y", "rlat", "nlat", "south_north", "j", "row")
_X_NAMES = ("lon", "longitude", "x", "rlon", "nlon", "west_east", "i", "col")
_LAT_NAMES = ("lat", "latitude", "nav_lat", "xlat", "lats")
_LON_NAMES = ("lon", "longitude", "nav_lon", "xlong", "lons")


def describe(src: VariableSource) -> str:
    """Return ``"variable 'tp' in file /path"`` for messages."""
    return f"variable '{src.variable}' in {src.path}"


#: Calendars whose every date is a date of the proleptic Gregorian calendar (read as is).
GREGORIAN_DATES = ("standard", "gregorian", "proleptic_gregorian", "noleap", "365_day")


def _standard_calendar(ds: xr.Dataset, path: Path, role: str) -> xr.Dataset:
    """Return ``ds`` with time coordinates decoded as cftime dates turned into datetime64.

    A model calendar without leap days (``noleap``/``365_day``, usual for
    GCMs) names real dates: they are kept as they are, and the missing
    29 Februaries are simply absent. Calendars with dates that do not exist
    (``360_day``, ``all_leap``/``366_day``) or that name other days
    (``julian``) are refused: mapping them onto real days is a choice the
    user makes (e.g. ``convert_calendar("standard", align_on="year")``).
    """
    for name in list(ds.coords):
        values = ds[name].values if ds[name].ndim == 1 and ds[name].dtype == object else None
        if values is None or values.size == 0 or not hasattr(values[0], "calendar"):
            continue
        calendar = str(values[0].calendar)
        if calendar not in GREGORIAN_DATES:
            raise DownpourError(
                f"{role}: {path} uses the '{calendar}' calendar, whose dates are not real days; "
                f"convert it first, e.g. xr.open_dataset(f).convert_calendar('standard', "
                "align_on='year').to_netcdf(g) (xarray), and give that file"
            )
        ds = ds.convert_calendar("standard", dim=name, use_cftime=False)
    return ds


def open_file(path: Path, role: str) -> xr.Dataset:
    """Open a NetCDF file or a zarr store lazily.

    Parameters
    ----------
    path
        ``*.nc``/``*.nc4``/``*.h5`` file, or a zarr directory.
    role
        Config key of the source (``"data.target"``), for error messages.
    """
    path = Path(path)
    if not path.exists():
        raise DownpourError(
            f"{role}: file {path} not found; fix '{role}.path' in the config "
            "(relative paths are read from the config file's folder)"
        )
    try:
        if path.is_dir() or path.suffix == ".zarr":
            with warnings.catch_warnings():  # zarr v3 stores are usually not consolidated
                warnings.filterwarnings(
                    "ignore", message=".*consolidated metadata", category=RuntimeWarning
                )
                ds = xr.open_zarr(path, chunks=None, consolidated=None)
        else:
            ds = xr.open_dataset(path, chunks=None)
    except Exception as exc:  # the backends raise many kinds for unreadable files
        raise DownpourError(
            f"{role}: cannot read {path} as NetCDF or zarr ({_reason(exc)}); "
            "check that the file is complete and not corrupt"
        ) from None
    try:
        return _standard_calendar(ds, path, role)
    except BaseException:
        ds.close()
        raise


def _reason(exc: Exception) -> str:
    """First line of a backend's error, without xarray's advice on engines."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "did not find a match in any of xarray's currently installed IO backends" in text:
        return "not a NetCDF, HDF5 or zarr file"
    return text


def _find_dim(dims: tuple[str, ...], names: tuple[str, ...], given: str | None) -> str | None:
    if given is not None:
        return given if given in dims else None
    lower = {d.lower(): d for d in dims}
    return next((lower[n] for n in names if n in lower), None)


def _cf_axis(da: xr.DataArray, axis: str, dims: tuple[str, ...]) -> str | None:
    """Return the one dimension among ``dims`` that cf-xarray reads as CF ``axis`` (T, X, Y)."""
    found = [str(d) for d in da.cf.axes.get(axis, []) if str(d) in dims]
    return found[0] if len(found) == 1 else None


def _space_dim(
    da: xr.DataArray, space: tuple[str, ...], axis: str, names: tuple[str, ...], given: str | None
) -> str | None:
    """Return the y (``axis="Y"``) or x dimension: given name, CF metadata, common names."""
    if given is not None:
        return given if given in space else None
    return _cf_axis(da, axis, space) or _find_dim(space, names, None)


def _time_dim(da: xr.DataArray, given: str | None) -> str | None:
    if given is not None:
        return given if given in da.dims else None
    for d in da.dims:
        if d in da.coords and np.issubdtype(da.coords[d].dtype, np.datetime64):
            return str(d)
    dims = tuple(map(str, da.dims))
    return _cf_axis(da, "T", dims) or _find_dim(dims, _TIME_NAMES, None)


def _latlon(
    ds: xr.Dataset, ydim: str, xdim: str, src: VariableSource
) -> tuple[xr.DataArray | None, xr.DataArray | None]:
    """Find latitude/longitude arrays (1-D on the dims or 2-D over both)."""
    # cf-xarray reads coordinates only: let every variable be a candidate (2-D lat/lon are
    # often data variables); CF identifies them by standard_name, units or axis type
    probe = ds.set_coords([v for v in ds.data_vars if v != src.variable])
    by_cf = probe.cf.coordinates

    def pick(given: str | None, names: tuple[str, ...], std: str) -> xr.DataArray | None:
        cands = [given] if given else []
        cands += list(by_cf.get(std, []))
        cands += [v for n in names for v in ds.variables if str(v).lower() == n]
        for name in cands:
            if name in ds.variables and set(ds[name].dims) <= {ydim, xdim} and ds[name].ndim >= 1:
                return ds[name]
        return None

    lat = pick(src.dims.lat, _LAT_NAMES, "latitude")
    lon = pick(src.dims.lon, _LON_NAMES, "longitude")
    if lat is None and ydim in ds.coords and ydim.lower() in ("lat", "latitude"):
        lat = ds[ydim]
    if lon is None and xdim in ds.coords and xdim.lower() in ("lon", "longitude"):
        lon = ds[xdim]
    return lat, lon


def time_step_hours(times: np.ndarray) -> float | None:
    """Return the regular time step in hours, or None if irregular or a single step."""
    if times.size < 2:
        return None
    steps = np.diff(times.astype("datetime64[s]").astype(np.int64)) / 3600.0
    if np.allclose(steps, steps[0]) and steps[0] > 0:
        return float(steps[0])
    # tolerate missing steps: the most common step, if it divides every gap
    step = float(np.median(steps))
    if step > 0 and np.allclose(np.round(steps / step), steps / step):
        return step
    return None


def load_field(
    src: VariableSource,
    role: str,
    *,
    expect: Literal["time", "static"] = "time",
    target_units: str | None = None,
    ds: xr.Dataset | None = None,
) -> xr.DataArray:
    """Load one variable into the canonical layout.

    Parameters
    ----------
    src
        Path, variable name, optional units override and dimension names.
    role
        Config key of the source (``"data.target"``), named in errors.
    expect
        ``"time"``: dims (time, y, x); ``"static"``: dims (y, x), a leading
        length-1 time dimension is dropped.
    target_units
        Convert precipitation to ``"mm/day"`` or ``"mm/h"``; ``None`` keeps
        the values as they are (non-precipitation predictors, static fields).
    ds
        An already opened dataset for ``src.path`` (avoids reopening).

    Returns
    -------
    xarray.DataArray
        float32, dims ``(time, y, x)`` or ``(y, x)``, coordinates ``time``
        (datetime64), ``lat`` and ``lon`` (on a projected grid without
        lat/lon: 1-D ``y`` and ``x`` projection coordinates instead);
        latitude (or y) ascending along ``y``, longitude (or x) along ``x``.
        Attribute ``units`` is the target units when converted; ``source``
        describes the origin.
    """
    where = describe(src)
    ds = open_file(src.path, role) if ds is None else ds
    if src.variable not in ds.variables:
        names = ", ".join(str(v) for v in ds.data_vars) or "(none)"
        raise DownpourError(
            f"{role}: variable '{src.variable}' not found in {src.path}; it holds: {names}. "
            f"Set '{role}.variable' to one of them"
        )
    da = ds[src.variable]
    dims = tuple(map(str, da.dims))
    if expect == "static":
        extra = [d for d in dims if da.sizes[d] == 1]
        da = da.isel({d: 0 for d in extra}, drop=True) if len(dims) == 3 and extra else da
        dims = tuple(map(str, da.dims))
    want = 3 if expect == "time" else 2
    layout = "(time, y, x)" if expect == "time" else "(y, x)"
    if len(dims) != want:
        raise DownpourError(
            f"{role}: {where} has {len(dims)} dimensions {dims}, expected {want} {layout}; "
            "select a level or member first, or point to a variable with those dims"
        )
    tdim = _time_dim(da, src.dims.time) if expect == "time" else None
    if expect == "time" and tdim is None:
        raise DownpourError(
            f"{role}: cannot tell which dimension of {where} {dims} is time; set '{role}.dims.time'"
        )
    space = tuple(d for d in dims if d != tdim)
    ydim = _space_dim(da, space, "Y", _Y_NAMES, src.dims.y)
    xdim = _space_dim(da, space, "X", _X_NAMES, src.dims.x)
    if ydim is None and xdim is not None and len(space) == 2:
        ydim = next(d for d in space if d != xdim)
    if xdim is None and ydim is not None and len(space) == 2:
        xdim = next(d for d in space if d != ydim)
    if ydim is None or xdim is None or ydim == xdim:
        raise DownpourError(
            f"{role}: cannot tell the y (latitude) and x (longitude) dimensions of {where} "
            f"among {space}; set '{role}.dims.y' and '{role}.dims.x'"
        )
    lat, lon = _latlon(ds, ydim, xdim, src)
    projected = False
    if (lat is None or lon is None) and ydim in ds.coords and xdim in ds.coords:
        # a projected grid (e.g. radar composites): 1-D y/x coordinates stand in for lat/lon
        lat, lon, projected = ds[ydim], ds[xdim], True
    if lat is None or lon is None:
        raise DownpourError(
            f"{role}: no latitude/longitude found for {where}; "
            f"set '{role}.dims.lat' and '{role}.dims.lon' to the coordinate variable names"
        )
    order = ((tdim,) if tdim else ()) + (ydim, xdim)
    values = da.transpose(*order).values.astype(np.float32, copy=False)
    lat_v = lat.transpose(*[d for d in (ydim, xdim) if d in lat.dims]).values.astype(np.float64)
    lon_v = lon.transpose(*[d for d in (ydim, xdim) if d in lon.dims]).values.astype(np.float64)
    if lat_v.ndim == 1 and lat.dims[0] == xdim or lon_v.ndim == 1 and lon.dims[0] == ydim:
        raise DownpourError(f"{role}: latitude/longitude of {where} lie along the wrong dimensions")
    lat_v = np.broadcast_to(lat_v[:, None], values.shape[-2:]) if lat_v.ndim == 1 else lat_v
    lon_v = np.broadcast_to(lon_v[None, :], values.shape[-2:]) if lon_v.ndim == 1 else lon_v
    one_d = lat.ndim == 1 and lon.ndim == 1
    # orientation: latitude ascending along y, longitude ascending along x
    if np.nanmean(np.diff(lat_v, axis=0)) < 0:
        values, lat_v, lon_v = values[..., ::-1, :], lat_v[::-1, :], lon_v[::-1, :]
    if np.nanmean(np.diff(lon_v, axis=1)) < 0:
        values, lat_v, lon_v = values[..., :, ::-1], lat_v[:, ::-1], lon_v[:, ::-1]
    values = np.ascontiguousarray(values)
    coords: dict[str, object] = {}
    if projected:
        coords["y"] = ("y", np.ascontiguousarray(lat_v[:, 0]), dict(lat.attrs))
        coords["x"] = ("x", np.ascontiguousarray(lon_v[0, :]), dict(lon.attrs))
    elif one_d:
        coords["lat"] = ("y", np.ascontiguousarray(lat_v[:, 0]))
        coords["lon"] = ("x", np.ascontiguousarray(lon_v[0, :]))
    else:
        coords["lat"] = (("y", "x"), np.ascontiguousarray(lat_v))
        coords["lon"] = (("y", "x"), np.ascontiguousarray(lon_v))
    out_dims: tuple[str, ...] = ("y", "x")
    times = None
    if tdim is not None:
        times = np.asarray(da[tdim].values)
        if not np.issubdtype(times.dtype, np.datetime64):
            raise DownpourError(
                f"{role}: the time axis '{tdim}' of {where} could not be decoded as dates "
                "(missing or non-CF 'units' attribute such as 'days since 1970-01-01')"
            )
        coords["time"] = ("time", times.astype("datetime64[ns]"))
        out_dims = ("time", "y", "x")
    attrs = {"source": where}
    units = src.units if src.units is not None else da.attrs.get("units")
    if target_units is not None:
        if units is None:
            raise DownpourError(
                f"{role}: {where} has no 'units' attribute; "
                f"set '{role}.units' (e.g. mm/day or kg m-2 s-1)"
            )
        step = time_step_hours(times) if times is not None else None
        factor = conversion_factor(
            str(units), target_units, step, where=f"{role}: {where}", key=f"'{role}.units'"
        )
        if times is not None and is_amount(str(units)) and step is not None:
            attrs["step_hours"] = step
        if factor != 1.0:
            values = values * np.float32(factor)
        attrs["units"] = target_units
        attrs["units_in_file"] = str(units)
    elif units is not None:
        attrs["units"] = str(units)
    inf = np.isinf(values)
    if inf.any():
        idx = np.argwhere(inf)[0]
        when = (
            f" at time {np.datetime_as_string(times[idx[0]], unit='h')}"
            if times is not None
            else ""
        )
        raise DownpourError(
            f"{role}: {where} holds {int(inf.sum())} infinite values (first{when}); "
            "replace them with NaN (missing) or valid numbers"
        )
    return xr.DataArray(values, dims=out_dims, coords=coords, name=src.variable, attrs=attrs)
