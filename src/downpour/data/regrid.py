"""Predictors on their own grid → the low-res grid: bilinear or conservative, with explicit edges.

A predictor read from another model or a reanalysis sits on its own grid;
:class:`Regridder` brings it onto the low-res cell centres of the target
(``data.regrid``, docs/data.md#predictors-on-their-own-grid):

- ``bilinear`` (default): linear in (lat, lon) between the four surrounding
  predictor cell centres (xarray's linear interpolation); on a curvilinear
  grid (2-D lat/lon), linear on a triangulation of its centres (SciPy).
- ``conservative``: area-weighted remapping through
  `xarray-regrid <https://github.com/xarray-contrib/xarray-regrid>`_: each
  low-res cell gets the mean of the predictor cells it overlaps, weighted
  by the overlap's area on the sphere, so Σ area · value is the same on both
  grids (the field's convention for precipitation fluxes). Rectilinear
  (1-D lat/lon) grids only.

A grid whose 1-D lat/lon already equal the low-res centres (within 1e-4 of
the domain span) is taken as it is. Longitudes are brought into the
target's convention first (0…360 against −180…180).

Edges (``data.predictor_edge``): a low-res cell whose centre lies outside
the predictor's cell centres, but by less than one predictor grid spacing
(in each direction; on a curvilinear grid: within √2 spacings of the
nearest centre), is *near*. With ``error`` (default) a near cell stops
preparation; with ``nearest`` it takes the value of the nearest predictor
cell and is counted (:attr:`Regridder.edge_cells`). A cell further out is
always an error that names both ranges.

Examples
--------
>>> import numpy as np, xarray as xr
>>> lat, lon = np.arange(40.0, 42.01, 0.5), np.arange(10.0, 12.01, 0.5)
>>> da = xr.DataArray(
...     np.ones((2, 5, 5), np.float32), dims=("time", "y", "x"),
...     coords={"lat": ("y", lat), "lon": ("x", lon)},
... )
>>> out, edge = regrid_predictor(da, np.array([40.5, 41.5]), np.array([10.5, 11.5]),
...                              method="conservative")
>>> out.shape, float(out.min()), float(out.max()), edge
((2, 2, 2), 1.0, 1.0, 0)
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import xarray as xr
from scipy.interpolate import LinearNDInterpolator
from scipy.spatial import Delaunay, cKDTree

from downpour.core.errors import DownpourError

__all__ = ["EDGES", "METHODS", "Regridder", "regrid_predictor"]

Method = Literal["bilinear", "conservative"]
Edge = Literal["error", "nearest"]
METHODS: tuple[str, ...] = ("bilinear", "conservative")
EDGES: tuple[str, ...] = ("error", "nearest")


def _source_coords(da: xr.DataArray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Return ``(lat, lon, geographic)`` of a canonical field (projected grids: y, x)."""
    if "lat" in da.coords and "lon" in da.coords:
        return np.asarray(da["lat"].values, float), np.asarray(da["lon"].values, float), True
    if "y" in da.coords and "x" in da.coords:
        return np.asarray(da["y"].values, float), np.asarray(da["x"].values, float), False
    raise DownpourError(f"{da.attrs.get('source', da.name)} has no lat/lon (or y/x) coordinates")


def _wrap_longitudes(lon: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Shift longitudes by ±360 into the 360° window centred on the target's longitudes."""
    centre = 0.5 * (float(np.min(target)) + float(np.max(target)))
    return (lon - (centre - 180.0)) % 360.0 + (centre - 180.0)


def _is_rectilinear(lat: np.ndarray, lon: np.ndarray) -> bool:
    """Whether 2-D lat/lon vary only along y and x respectively."""
    return bool(
        np.allclose(lat, lat[:, :1], rtol=0, atol=1e-9)
        and np.allclose(lon, lon[:1, :], rtol=0, atol=1e-9)
    )


def _axis_outside(s: np.ndarray, a: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(outside, far)`` of target coordinates ``a`` against ascending centres ``s``.

    Outside: beyond the first or last centre by more than ``tol``; far: by
    more than one grid spacing at that edge.
    """
    below, above = s[0] - a, a - s[-1]
    lo_step = s[1] - s[0] if s.size > 1 else 0.0
    hi_step = s[-1] - s[-2] if s.size > 1 else 0.0
    outside = (below > tol) | (above > tol)
    far = (below > lo_step + tol) | (above > hi_step + tol)
    return outside, far


class Regridder:
    """Regridding of one predictor grid onto the low-res cell centres, planned once.

    Building it checks coverage (and raises); calling it regrids any number
    of days given on the predictor's grid.

    Parameters
    ----------
    da
        Predictor in canonical layout (:func:`downpour.data.io.load_field`):
        dims ``(time, y, x)`` (any number of days, even 1) with ``lat``/``lon``
        1-D along ``y``/``x`` or 2-D, or projected ``y``/``x``.
    lat_lr, lon_lr
        Low-res cell centres: 1-D along ``y_lr``/``x_lr`` (shapes ``(h,)``,
        ``(w,)``) or 2-D ``(h, w)``.
    method
        ``"bilinear"`` or ``"conservative"``.
    edge
        ``"error"`` or ``"nearest"`` (see the module docstring).
    role
        Config key named in errors (``"data.predictors[0]"``).

    Attributes
    ----------
    edge_cells
        Low-res cells filled from the nearest predictor cell (0 with ``error``).
    identity
        True when the predictor is already on the low-res grid.

    Raises
    ------
    DownpourError
        A low-res cell outside the predictor grid (more than one cell out, or
        at all with ``edge="error"``), or conservative remapping asked for on
        a curvilinear grid.
    """

    def __init__(
        self,
        da: xr.DataArray,
        lat_lr: np.ndarray,
        lon_lr: np.ndarray,
        *,
        method: Method = "bilinear",
        edge: Edge = "error",
        role: str = "data.predictors",
    ) -> None:
        if method not in METHODS:
            raise DownpourError(f"data.regrid={method!r}: choose one of {', '.join(METHODS)}")
        if edge not in EDGES:
            raise DownpourError(f"data.predictor_edge={edge!r}: choose one of {', '.join(EDGES)}")
        self.method, self.edge, self.role = method, edge, role
        self.where = str(da.attrs.get("source", da.name))
        lat_lr, lon_lr = np.asarray(lat_lr, float), np.asarray(lon_lr, float)
        self.target_1d = lat_lr.ndim == 1
        if self.target_1d:
            self.lat_t, self.lon_t = np.meshgrid(lat_lr, lon_lr, indexing="ij")
        else:
            self.lat_t, self.lon_t = lat_lr, lon_lr
        lat, lon, geographic = _source_coords(da)
        if geographic:
            lon = _wrap_longitudes(lon, self.lon_t)
        self.src_1d = lat.ndim == 1 and lon.ndim == 1
        self.order: np.ndarray | None = None  # x order after wrapping (1-D only)
        if self.src_1d:
            self.order = np.argsort(lon, kind="stable")
            lon = lon[self.order]
            if np.any(np.diff(lon) == 0):
                raise DownpourError(f"{role}: {self.where} has duplicate longitudes")
        self.lat, self.lon, self.geographic = lat, lon, geographic
        self.shape = self.lat_t.shape
        self.identity = self._same_grid()
        self.edge_cells = 0
        if self.identity:
            return
        self._plan()

    # ------------------------------------------------------------------ plan
    def _same_grid(self) -> bool:
        if not self.src_1d or self.lat.size != self.shape[0] or self.lon.size != self.shape[1]:
            return False
        if not _is_rectilinear(self.lat_t, self.lon_t):
            return False
        span = max(np.ptp(self.lat_t), np.ptp(self.lon_t), 1e-9)
        return bool(
            np.allclose(self.lat, self.lat_t[:, 0], atol=1e-4 * span)
            and np.allclose(self.lon, self.lon_t[0, :], atol=1e-4 * span)
        )

    def _plan(self) -> None:
        """Classify the low-res cells (inside, near, far) and prepare the interpolation."""
        lat2 = np.broadcast_to(self.lat[:, None], (self.lat.size, self.lon.size)) if self.src_1d \
            else self.lat  # fmt: skip
        lon2 = np.broadcast_to(self.lon[None, :], lat2.shape) if self.src_1d else self.lon
        self.tol = 1e-6 * max(np.ptp(lat2), np.ptp(lon2), 1.0)
        if self.src_1d:
            out_y, far_y = _axis_outside(self.lat, self.lat_t, self.tol)
            out_x, far_x = _axis_outside(self.lon, self.lon_t, self.tol)
            outside, far = out_y | out_x, far_y | far_x
            self.tri = None
        else:
            pts = np.column_stack([lat2.ravel(), lon2.ravel()])
            self.tri = Delaunay(pts)
            targets = np.column_stack([self.lat_t.ravel(), self.lon_t.ravel()])
            outside = (self.tri.find_simplex(targets, tol=self.tol) < 0).reshape(self.shape)
            dist, _ = cKDTree(pts).query(targets)
            far = outside & (dist.reshape(self.shape) > np.sqrt(2.0) * _spacing(lat2, lon2))
        if far.any() or (outside.any() and self.edge == "error"):
            raise DownpourError(self._coverage_message(outside, far, lat2, lon2))
        self.near = outside
        self.edge_cells = int(outside.sum())
        self.fallback: np.ndarray | None = None
        if self.tri is not None:  # centres on the hull within the tolerance: nearest value
            self.fallback = cKDTree(np.column_stack([lat2.ravel(), lon2.ravel()])).query(
                np.column_stack([self.lat_t.ravel(), self.lon_t.ravel()])
            )[1]
        if self.method == "conservative":
            if not self.src_1d or not _is_rectilinear(self.lat_t, self.lon_t):
                raise DownpourError(
                    f"{self.role}: data.regrid=conservative needs rectilinear grids (1-D lat/lon), "
                    f"but {self.where} or the target has 2-D (curvilinear) lat/lon; "
                    "use data.regrid=bilinear"
                )
        if self.near.any():  # the nearest predictor cell of each near cell
            if self.src_1d:
                iy = np.abs(self.lat[:, None] - self.lat_t[self.near][None, :]).argmin(axis=0)
                ix = np.abs(self.lon[:, None] - self.lon_t[self.near][None, :]).argmin(axis=0)
                self.nearest = iy * self.lon.size + ix
            else:
                targets = np.column_stack([self.lat_t[self.near], self.lon_t[self.near]])
                self.nearest = cKDTree(np.column_stack([lat2.ravel(), lon2.ravel()])).query(
                    targets
                )[1]

    def _coverage_message(
        self, outside: np.ndarray, far: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
    ) -> str:
        name = ("lat", "lon") if self.geographic else ("y", "x")
        head = (
            f"{self.role}: {self.where} covers {name[0]} {lat2.min():.3f}..{lat2.max():.3f}, "
            f"{name[1]} {lon2.min():.3f}..{lon2.max():.3f}, which does not cover the target's "
            f"low-res cells ({name[0]} {self.lat_t.min():.3f}..{self.lat_t.max():.3f}, "
            f"{name[1]} {self.lon_t.min():.3f}..{self.lon_t.max():.3f}): "
        )
        if far.any():
            return head + (
                f"{int(far.sum())} of them lie more than one predictor cell outside it; "
                "use predictors on a larger domain"
            )
        return head + (
            f"{int(outside.sum())} of them lie less than one predictor cell outside its edge; "
            "set data.predictor_edge=nearest to fill them from the nearest predictor cell, "
            "or use predictors on a larger domain"
        )

    # ----------------------------------------------------------------- apply
    def __call__(self, values: np.ndarray) -> np.ndarray:
        """Regrid ``values (T, ny, nx)`` (the predictor's grid) to ``(T, h, w)`` float32."""
        values = np.asarray(values)
        if self.order is not None:
            values = values[..., self.order]
        if self.identity:
            return values.astype(np.float32)
        n = values.shape[0]
        if self.method == "conservative":
            out = self._conservative(values)
        elif self.src_1d:
            out = self._bilinear(values)
        else:
            flat = values.reshape(n, -1)
            interp = LinearNDInterpolator(self.tri, flat.T)
            res = interp(np.column_stack([self.lat_t.ravel(), self.lon_t.ravel()])).T
            gaps = np.isnan(res) & np.isfinite(flat[:, self.fallback])
            res[gaps] = flat[:, self.fallback][gaps]
            out = res.reshape(n, *self.shape)
        if self.near.any():
            out = np.array(out, dtype=np.float32, copy=True)
            out[:, self.near] = values.reshape(n, -1)[:, self.nearest]
        return np.asarray(out, dtype=np.float32)

    def _clipped(self, axis: np.ndarray, coords: np.ndarray) -> np.ndarray:
        """Clip target coordinates into the source range (only near cells move far)."""
        return np.clip(coords, axis[0], axis[-1])

    def _bilinear(self, values: np.ndarray) -> np.ndarray:
        da = xr.DataArray(values, dims=("time", "y", "x"), coords={"y": self.lat, "x": self.lon})
        out = da.interp(
            y=xr.DataArray(self._clipped(self.lat, self.lat_t), dims=("y_lr", "x_lr")),
            x=xr.DataArray(self._clipped(self.lon, self.lon_t), dims=("y_lr", "x_lr")),
            method="linear",
        )
        return out.transpose("time", "y_lr", "x_lr").values

    def _conservative(self, values: np.ndarray) -> np.ndarray:
        import xarray_regrid  # noqa: F401  (registers the .regrid accessor)

        ny, nx = ("lat", "lon") if self.geographic else ("y", "x")
        lat_t, lon_t = self.lat_t[:, 0], self.lon_t[0, :]
        # centres within the tolerance of the edge count as inside (xarray-regrid is exact)
        inside_y = np.abs(lat_t - np.clip(lat_t, self.lat[0], self.lat[-1])) <= self.tol
        inside_x = np.abs(lon_t - np.clip(lon_t, self.lon[0], self.lon[-1])) <= self.tol
        lat_t = np.where(inside_y, np.clip(lat_t, self.lat[0], self.lat[-1]), lat_t)
        lon_t = np.where(inside_x, np.clip(lon_t, self.lon[0], self.lon[-1]), lon_t)
        src = xr.DataArray(
            values.astype(np.float64),
            dims=("time", ny, nx),
            coords={"time": np.arange(values.shape[0]), ny: self.lat, nx: self.lon},
        )
        grid = xr.Dataset(coords={ny: lat_t, nx: lon_t})
        out = src.regrid.conservative(grid, latitude_coord=ny if self.geographic else None,
                                      time_dim="time", skipna=False)  # fmt: skip
        return out.transpose("time", ny, nx).values


def _spacing(lat2: np.ndarray, lon2: np.ndarray) -> float:
    """Typical distance between neighbouring centres of a 2-D grid (median along y and x)."""
    steps = []
    for axis in (0, 1):
        if lat2.shape[axis] > 1:
            d = np.hypot(np.diff(lat2, axis=axis), np.diff(lon2, axis=axis))
            steps.append(float(np.median(d)))
    return max(steps) if steps else 0.0


def regrid_predictor(
    da: xr.DataArray,
    lat_lr: np.ndarray,
    lon_lr: np.ndarray,
    *,
    method: Method = "bilinear",
    edge: Edge = "error",
    role: str = "data.predictors",
) -> tuple[xr.DataArray, int]:
    """Bring a predictor onto the low-res grid; return it and the number of edge-filled cells.

    Parameters
    ----------
    da
        ``(time, y, x)`` in canonical layout (see :class:`Regridder`).
    lat_lr, lon_lr
        Low-res cell centres, 1-D ``(h,)``/``(w,)`` or 2-D ``(h, w)``.
    method
        ``"bilinear"`` or ``"conservative"`` (``data.regrid``).
    edge
        ``"error"`` or ``"nearest"`` (``data.predictor_edge``).
    role
        Config key named in errors.

    Returns
    -------
    (xarray.DataArray, int)
        float32 ``(time, y_lr, x_lr)`` with the ``time`` coordinate of ``da``,
        and the number of low-res cells filled from the nearest predictor cell.

    Raises
    ------
    DownpourError
        See :class:`Regridder`.
    """
    plan = Regridder(da, lat_lr, lon_lr, method=method, edge=edge, role=role)
    coords = {"time": da["time"].values} if "time" in da.coords else {}
    out = xr.DataArray(plan(da.values), dims=("time", "y_lr", "x_lr"), coords=coords,
                       name=da.name, attrs=dict(da.attrs))  # fmt: skip
    return out, plan.edge_cells
