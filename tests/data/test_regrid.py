"""Predictors onto the low-res grid: bilinear, conservative (area total kept), edges, longitudes."""

import numpy as np
import pytest
import xarray as xr

from downpour.core.errors import DownpourError
from downpour.data.regrid import Regridder, regrid_predictor

LAT_LR, LON_LR = np.array([40.15, 40.55, 40.95]), np.array([-74.85, -74.45])


def field(values, lat, lon):
    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    dims = ("y",) if lat.ndim == 1 else ("y", "x")
    return xr.DataArray(
        np.asarray(values, np.float32),
        dims=("time", "y", "x"),
        coords={
            "time": np.arange(len(values)).astype("datetime64[D]"),
            "lat": (dims, lat),
            "lon": (("x",) if lon.ndim == 1 else ("y", "x"), lon),
        },
        attrs={"source": "variable 'q' in p.nc"},
    )


def edges(c):
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])


def cell_area(lat, lon):
    """Areas of the cells of a rectilinear grid on the unit sphere: Δλ · Δ sin φ."""
    return np.diff(np.sin(np.radians(edges(lat))))[:, None] * np.radians(np.diff(edges(lon)))


def test_identity_and_bilinear_exact_on_a_linear_field():
    same = field(np.ones((2, 3, 2)), LAT_LR, LON_LR)
    out, edge = regrid_predictor(same, LAT_LR, LON_LR)
    np.testing.assert_array_equal(out.values, same.values)
    assert edge == 0 and out.dims == ("time", "y_lr", "x_lr")
    # a coarser predictor grid holding a linear function: bilinear is exact
    plat, plon = np.linspace(39.0, 42.0, 7), np.linspace(-76.0, -73.0, 5)
    f = lambda la, lo: 2.0 * la - 3.0 * lo + 1.0  # noqa: E731
    grid = np.meshgrid(plat, plon, indexing="ij")
    vals = np.stack([f(*grid) + k for k in range(2)])
    lat2, lon2 = np.meshgrid(LAT_LR, LON_LR, indexing="ij")
    out, _ = regrid_predictor(field(vals, plat, plon), LAT_LR, LON_LR)
    np.testing.assert_allclose(out.values[1], f(lat2, lon2) + 1, rtol=1e-5)
    # 2-D target coordinates give the same
    out2, _ = regrid_predictor(field(vals, plat, plon), lat2, lon2)
    np.testing.assert_array_equal(out2.values, out.values)
    # the same on 2-D (curvilinear) predictor coordinates: the triangulation path
    out3, _ = regrid_predictor(field(vals, *grid), LAT_LR, LON_LR)
    np.testing.assert_allclose(out3.values[0], f(lat2, lon2), rtol=1e-4)


def test_a_domain_far_too_small_is_refused_naming_both_ranges():
    da = field(np.ones((1, 3, 3)), [40.3, 40.6, 40.9], [-75.0, -74.7, -74.4])
    for edge in ("error", "nearest"):  # 39.5 lies 0.8° (over two cells) below 40.3
        with pytest.raises(DownpourError) as err:
            regrid_predictor(da, np.array([39.5, 40.55]), LON_LR, edge=edge, role="data.x[0]")
        msg = str(err.value)
        assert msg.startswith("data.x[0]: variable 'q' in p.nc covers lat 40.300..40.900")
        assert "does not cover the target's low-res cells (lat 39.500..40.550" in msg
        assert "more than one predictor cell outside" in msg and "larger domain" in msg


def test_near_edge_cells_are_an_error_or_filled_from_the_nearest_cell():
    plat, plon = np.array([40.3, 40.6, 40.9]), np.array([-75.0, -74.7, -74.4])
    vals = np.arange(18, dtype=float).reshape(2, 3, 3)
    da = field(vals, plat, plon)
    # 40.15 lies half a predictor cell below 40.3; 40.95 lies 0.05 above 40.9
    with pytest.raises(DownpourError, match="set data.predictor_edge=nearest") as err:
        regrid_predictor(da, LAT_LR, LON_LR)
    assert "4 of them lie less than one predictor cell outside its edge" in str(err.value)
    out, edge = regrid_predictor(da, LAT_LR, LON_LR, edge="nearest")
    assert edge == 4  # two rows × two columns
    # filled from the nearest predictor cell: row 0 → plat[0], row 2 → plat[2]
    ix = [np.abs(plon - lo).argmin() for lo in LON_LR]
    np.testing.assert_array_equal(out.values[:, 0], vals[:, 0][:, ix])
    np.testing.assert_array_equal(out.values[:, 2], vals[:, 2][:, ix])
    # the inside row is interpolated as usual
    inside, _ = regrid_predictor(da, LAT_LR[1:2], LON_LR)
    np.testing.assert_allclose(out.values[:, 1:2], inside.values)
    # conservative remapping fills the same cells the same way
    cons, cedge = regrid_predictor(da, LAT_LR, LON_LR, method="conservative", edge="nearest")
    assert cedge == 4 and np.isfinite(cons.values).all()
    np.testing.assert_array_equal(cons.values[:, 0], out.values[:, 0])


def test_near_edge_on_a_curvilinear_grid():
    plat, plon = np.meshgrid([40.3, 40.6, 40.9], [-75.0, -74.7, -74.4], indexing="ij")
    da = field(np.ones((1, 3, 3)), plat + 0.05 * (plon + 74.7), plon)  # slightly rotated
    with pytest.raises(DownpourError, match="less than one predictor cell outside"):
        Regridder(da, LAT_LR, LON_LR)
    plan = Regridder(da, LAT_LR, LON_LR, edge="nearest")
    assert plan.edge_cells > 0
    np.testing.assert_allclose(plan(da.values), 1.0)


@pytest.mark.parametrize("aligned", [True, False])
def test_conservative_keeps_the_area_weighted_total(aligned):
    rng = np.random.default_rng(0)
    slat = np.arange(20.05, 60.0, 0.1)
    slon = np.arange(-99.95, -60.0, 0.1)
    vals = rng.gamma(0.5, 5.0, size=(3, slat.size, slon.size))
    da = field(vals, slat, slon)
    if aligned:  # 0.5° cells whose edges are edges of source cells
        tlat, tlon = np.arange(30.25, 50.0, 0.5), np.arange(-89.75, -70.0, 0.5)
    else:
        tlat, tlon = np.arange(30.13, 50.0, 0.37), np.arange(-90.07, -70.0, 0.43)
    out, edge = regrid_predictor(da, tlat, tlon, method="conservative")
    assert edge == 0 and np.isfinite(out.values).all()
    # Σ area · value over the target cells, and over the parts of the source cells they cover
    te_y, te_x = edges(tlat), edges(tlon)
    se_y, se_x = edges(slat), edges(slon)
    lo_y, hi_y = np.maximum(se_y[:-1], te_y[0]), np.minimum(se_y[1:], te_y[-1])
    part_y = np.clip(np.sin(np.radians(hi_y)) - np.sin(np.radians(lo_y)), 0, None)
    part_x = np.radians(np.clip(np.minimum(se_x[1:], te_x[-1]) - np.maximum(se_x[:-1], te_x[0]),
                                0, None))  # fmt: skip
    source_total = (part_y[:, None] * part_x[None, :] * vals).sum(axis=(1, 2))
    target_total = (cell_area(tlat, tlon) * out.values).sum(axis=(1, 2))
    np.testing.assert_allclose(target_total, source_total, rtol=1e-7 if aligned else 1e-5)
    # bilinear interpolation does not keep it
    bil, _ = regrid_predictor(da, tlat, tlon)
    bil_total = (cell_area(tlat, tlon) * bil.values).sum(axis=(1, 2))
    assert np.abs(bil_total / source_total - 1).max() > 1e-4


def test_conservative_of_a_constant_is_the_constant_and_needs_rectilinear_grids():
    plat, plon = np.linspace(39.0, 42.0, 7), np.linspace(-76.0, -73.0, 5)
    out, _ = regrid_predictor(field(np.full((1, 7, 5), 3.0), plat, plon), LAT_LR, LON_LR,
                              method="conservative")  # fmt: skip
    np.testing.assert_allclose(out.values, 3.0, rtol=1e-6)
    grid = np.meshgrid(plat, plon, indexing="ij")
    curvy = field(np.ones((1, 7, 5)), grid[0] + 0.01 * grid[1], grid[1])
    with pytest.raises(DownpourError, match="data.regrid=conservative needs rectilinear grids"):
        regrid_predictor(curvy, LAT_LR, LON_LR, method="conservative")


def test_longitudes_0_360_meet_a_target_in_minus_180_180():
    plat = np.linspace(39.0, 42.0, 7)
    plon = np.arange(0.0, 360.0, 1.0)  # a global grid, 0…359
    f = lambda la, lo: la + 0.5 * ((lo + 180) % 360 - 180)  # noqa: E731  (linear near -75°)
    vals = f(*np.meshgrid(plat, plon, indexing="ij"))[None]
    out, edge = regrid_predictor(field(vals, plat, plon), LAT_LR, LON_LR)
    lat2, lon2 = np.meshgrid(LAT_LR, LON_LR, indexing="ij")
    np.testing.assert_allclose(out.values[0], f(lat2, lon2), rtol=1e-5)
    cons, _ = regrid_predictor(field(vals, plat, plon), LAT_LR, LON_LR, method="conservative")
    assert np.isfinite(cons.values).all() and edge == 0


def test_unknown_method_or_edge_names_the_key():
    da = field(np.ones((1, 3, 2)), LAT_LR, LON_LR)
    with pytest.raises(DownpourError, match="data.regrid='cubic'"):
        Regridder(da, LAT_LR, LON_LR, method="cubic")  # type: ignore[arg-type]
    with pytest.raises(DownpourError, match="data.predictor_edge='wrap'"):
        Regridder(da, LAT_LR, LON_LR, edge="wrap")  # type: ignore[arg-type]
