"""bench_downscale: a quick run gives consistent figures; the helpers' values by hand.

Figures are never asserted against wall-clock limits: what is checked is
that each is computed from its definition (rates = days / measured time, the
ratio = end-to-end rate / bare forward rate, the split adds up to the total).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr

from downpour.bench import run_bench, write_results_md
from downpour.bench.downscale import days_per_second, own_grid, write_predictors
from downpour.data.regrid import Regridder

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_downscale")
    return run_bench(["downscale"], quick=True, out_dir=out, echo=lambda m: None), out


def test_quick_run_figures_are_consistent(quick):
    res, out = quick
    d = res["downscale"]
    fwd = d["forward"]
    assert fwd["days"] == 64 and fwd["parameters"] > 0
    assert fwd["days_per_s"] == pytest.approx(fwd["days"] / fwd["seconds"])
    assert d["shape"] == [48, 36] and d["lowres_shape"] == [4, 3]
    runs = {(r["years"], r["grid"], r["regrid"]): r for r in d["runs"]}
    assert set(runs) == {(1, "own", "bilinear"), (2, "own", "bilinear"), (2, "lowres", "none")}
    # 2071, then the leap year 2072: the days generated are the days downscaled
    assert [runs[k]["days"] for k in sorted(runs)] == [365, 731, 731]
    for r in d["runs"]:
        assert r["days_per_s"] == pytest.approx(r["days"] / r["seconds"])
        assert r["ratio"] == pytest.approx(r["days_per_s"] / fwd["days_per_s"])
        assert sum(r["split"].values()) == pytest.approx(r["seconds"])
        assert min(r["split"].values()) >= 0 and r["split"]["forward"] > 0
        assert r["blocks"] == math.ceil(r["days"] / 365)  # a 48×36 day is far below the cap
        assert r["peak_rss_mb"] >= r["start_rss_mb"] > 0 and r["output_mb"] > 0
    stored = (out / "results_cpu_quick.json").read_text()
    assert '"downscale"' in stored
    md = write_results_md(out).read_text()
    assert "### Downscale (`downpour downscale`, end to end)" in md
    assert "| 2 y, own grid, bilinear | 731 |" in md and "| 2 y, low-res grid | 731 |" in md
    assert "2 years end to end:" in md and "(target 80 %)" in md


def test_days_per_second():
    assert days_per_second(3650, 36.5) == 100.0
    assert days_per_second(10, 0.0) == 0.0


def test_own_grid_by_hand_and_it_covers_the_low_res_centres():
    # spacing 1 × 1.5 = 1.5 from half a spacing below: -0.75, 0.75, 2.25 covers 0..2
    lat, lon = own_grid(np.array([0.0, 1.0, 2.0]), np.array([-10.0, -9.0]), 1.5)
    np.testing.assert_allclose(lat, [-0.75, 0.75, 2.25])
    np.testing.assert_allclose(lon, [349.25, 350.75, 352.25])  # 0…360, -9 needs a third
    lat_lr, lon_lr = np.linspace(24.7, 30.8, 13), np.linspace(-87.3, -80.3, 11)
    lat, lon = own_grid(lat_lr, lon_lr)
    assert np.diff(lat) == pytest.approx(1.25 * np.diff(lat_lr)[0])
    da = xr.DataArray(np.zeros((1, lat.size, lon.size), np.float32), dims=("time", "y", "x"),
                      coords={"lat": ("y", lat), "lon": ("x", lon)})  # fmt: skip
    plan = Regridder(da, lat_lr, lon_lr, edge="error")  # raises if a centre lies outside
    assert not plan.identity and plan.edge_cells == 0


def test_write_predictors_in_gcm_units_inside_the_training_range(tmp_path):
    facts = SimpleNamespace(
        units="mm/day", lo=np.array([0.0, 0.003]), hi=np.array([50.0, 0.02]),
        predictors=[{"name": "pr", "variable": "pr", "kind": "precip", "units": "mm/day"},
                    {"name": "q", "variable": "hus", "kind": "other", "units": "kg kg-1"}],
    )  # fmt: skip
    path = tmp_path / "gcm.nc"
    days = write_predictors(path, facts, 1, np.array([1.0, 2.0]), np.array([3.0, 4.0, 5.0]),
                            start="2072-01-01")  # type: ignore[arg-type]  # fmt: skip
    assert days == 366  # a leap year
    with xr.open_dataset(path) as ds:
        assert ds.sizes == {"time": 366, "lat": 2, "lon": 3}
        assert str(ds["time"].values[-1])[:10] == "2072-12-31"
        assert ds["pr"].attrs["units"] == "kg m-2 s-1" and ds["hus"].attrs["units"] == "kg kg-1"
        mm_day = ds["pr"].values * 86400.0
        assert 0.0 <= mm_day.min() and mm_day.max() <= 50.0 * (1 + 1e-6)
        assert 0.003 <= ds["hus"].values.min() and ds["hus"].values.max() <= 0.02
