"""`downscale`: a trained model on new predictor files, written as a CF file block by block."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from _shared import QUARTER_JAN, TINY_SRDRN
from downpour.config import load_config
from downpour.core.checkpoint import read_checkpoint
from downpour.core.errors import DownpourError
from downpour.data.normalize import Normalization
from downpour.data.regrid import regrid_predictor
from downpour.downscaling import cf_output
from downpour.downscaling import downscale as dsmod
from downpour.downscaling import predictor_set as psmod
from downpour.downscaling import predictors as predmod
from downpour.downscaling.datamodule import decode_array, mask_from_runs
from downpour.downscaling.downscale import FILL_VALUE, OutOfRangeWarning, downscale
from downpour.downscaling.predict import load_srdrn, predict_baseline, predict_srdrn
from downpour.downscaling.prepare import prepare
from downpour.downscaling.store import labels, open_store
from downpour.downscaling.train import train_srdrn
from downpour.metrics.exceedance import exceedance_probability

pytestmark = pytest.mark.usefixtures("one_thread")

JAN = "2002-01-01:2002-01-31"  # the test split of QUARTER_JAN


def quiet(*_a, **_k):
    return None


@pytest.fixture(scope="module")
def trained(tiny_srdrn) -> tuple[Path, Path]:
    """``(run, checkpoint)`` of the shared tiny SRDRN (tests/conftest.py)."""
    return tiny_srdrn


def lowres_file(run: Path) -> Path:
    return run / "data" / "source" / "embedded_lr.nc"


def write_predictors(path: Path, ds: xr.Dataset) -> Path:
    ds.to_netcdf(path)
    return path


def run_downscale(ckpt, out, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = downscale(ckpt, out=out, progress=False, **kw)
    return result, [w for w in caught if issubclass(w.category, OutOfRangeWarning)]


# ----------------------------------------------------------------- the checkpoint's facts


def test_the_checkpoint_records_grids_mask_period_and_range(trained):
    run, ckpt = trained
    info = read_checkpoint(ckpt).info
    store = open_store(run)
    np.testing.assert_array_equal(mask_from_runs(info["mask"]), store["mask"].values)
    for key in ("lat", "lon", "lat_lr", "lon_lr"):
        np.testing.assert_array_equal(decode_array(info["grid"][key]), store[key].values)
    assert info["grid"]["coords"] == "latlon" and info["train_period"] == [
        "2001-01-01",
        "2001-03-31",
    ]
    train = labels(store["split"].values) == "train"
    x = store["predictors"].values[train]
    assert info["predictor_range"]["min"] == x.min(axis=(0, 2, 3)).tolist()
    assert info["predictor_range"]["max"] == x.max(axis=(0, 2, 3)).tolist()
    assert [(p["name"], p["variable"], p["kind"], p["units"]) for p in info["predictors"]] == [
        ("pr", "pr", "precip", "mm/day"),
        ("q", "q", "other", "kg kg-1"),
    ]
    assert info["static_channels"] == ["mask", "elevation", "lat", "lon"]
    np.testing.assert_array_equal(
        decode_array(info["elevation"]), store["static"].sel(static_channel="elevation").values
    )
    # plain data only, small: 1-D coordinates as lists, the mask as run lengths
    assert isinstance(info["grid"]["lat"], list) and len(json.dumps(info["mask"])) < 2000


# ------------------------------------------------------------------- (a) the run's own days


def test_the_runs_own_days_equal_predict_srdrn_and_the_file_is_cf(trained, tmp_path):
    run, ckpt = trained
    out = tmp_path / "jan.nc"
    result, warned = run_downscale(ckpt, out, period=JAN)
    assert result.path == out and result.dims == ("time", "lat", "lon") and not warned
    assert result.sizes == {"time": 31, "lat": 48, "lon": 36}
    expected = predict_srdrn(ckpt, run, split="test")
    with xr.open_dataset(out) as ds:
        np.testing.assert_array_equal(ds["pr"].values, expected.values)  # NaN off the mask too
        store = open_store(run)
        mask = store["mask"].values
        assert (
            np.isnan(ds["pr"].values[:, ~mask]).all()
            and np.isfinite(ds["pr"].values[:, mask]).all()
        )
        np.testing.assert_array_equal(ds["mask"].values.astype(bool), mask)
        np.testing.assert_array_equal(ds["time"].values, expected["time"].values)
        np.testing.assert_array_equal(ds["lat"].values, store["lat"].values)
        np.testing.assert_array_equal(ds["lon"].values, store["lon"].values)
        pr = ds["pr"]
        assert pr.dims == ("time", "lat", "lon")
        assert (
            pr.attrs["units"] == "mm day-1"
            and pr.attrs["standard_name"] == "lwe_precipitation_rate"
        )
        assert "SRDRN" in pr.attrs["long_name"] and pr.encoding["_FillValue"] == FILL_VALUE
        assert (
            ds["lat"].attrs["standard_name"] == "latitude"
            and ds["lat"].attrs["units"] == "degrees_north"
        )
        assert (
            ds["lon"].attrs["standard_name"] == "longitude"
            and ds["lon"].attrs["units"] == "degrees_east"
        )
        assert (
            ds["time"].attrs["standard_name"] == "time"
            and ds["time"].attrs["bounds"] == "time_bnds"
        )
        assert ds["time"].encoding["units"] == "days since 1970-01-01"
        assert (
            ds["time_bnds"].values[:, 1] - ds["time_bnds"].values[:, 0] == np.timedelta64(1, "D")
        ).all()
        assert pr.encoding["chunksizes"] == (1, 48, 36)  # chunked by time
        a = ds.attrs
        assert a["Conventions"] == "CF-1.8" and a["downpour_version"]
        assert a["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
        assert a["model"] == "srdrn (srdrn_real)" and a["period"] == "2002-01-01:2002-01-31"
        assert a["training_period"] == "2001-01-01:2001-03-31"
        recorded = read_checkpoint(ckpt).info["predictors"][0]["path"]  # the training files
        assert json.loads(a["source_files"]) == [str(Path(recorded).resolve())]
        assert json.loads(a["predictors_outside_training_range"])["pr"] == {
            "below": 0.0,
            "above": 0.0,
        }
        assert a["creation_time"] and a["regrid"] == "bilinear"
    # the coordinates have no fill value (CF: coordinates are never missing)
    import netCDF4

    with netCDF4.Dataset(out) as nc:
        assert "_FillValue" not in nc["lat"].ncattrs() and "_FillValue" not in nc["time"].ncattrs()


def test_zarr_output_holds_the_same(trained, tmp_path):
    _, ckpt = trained
    a, _ = run_downscale(ckpt, tmp_path / "a.nc", period="2002-01-01:2002-01-05")
    b, _ = run_downscale(ckpt, tmp_path / "b.zarr", period="2002-01-01:2002-01-05")
    with xr.open_dataset(a.path) as x, xr.open_zarr(b.path, consolidated=False) as z:
        np.testing.assert_array_equal(x["pr"].values, z["pr"].values)
        assert z["pr"].attrs["units"] == "mm day-1" and z.attrs["Conventions"] == "CF-1.8"
        assert z.attrs["predictors_outside_training_range"]


def test_baselines_fitted_on_the_run_equal_predict_baseline(trained, tmp_path):
    run, _ = trained
    for name in ("bicubic", "bcsd"):
        result, _ = run_downscale(None, tmp_path / f"{name}.nc", baseline=name, run=run, period=JAN)
        assert result.model == name
        with xr.open_dataset(result.path) as ds:
            expected = predict_baseline(name, run, split="test")
            np.testing.assert_array_equal(ds["pr"].values, expected.values)
            assert ds.attrs["fitted_on"].startswith("real training days")


# ------------------------------------------------------- (b) a coarser grid of its own


def coarse_file(run: Path, path: Path, *, shift_years: int = 0, pr_factor: float = 1.0) -> Path:
    """The run's predictors on a coarser, larger grid (descending lat), pr in kg m-2 s-1."""
    src = xr.open_dataset(lowres_file(run)).load()
    lat = np.array([31.5, 29.0, 26.5, 24.0])  # north to south
    lon = np.array([-88.0, -85.0, -82.0, -79.0])
    fine = src.interp(lat=lat, lon=lon, kwargs={"fill_value": "extrapolate"})
    pr = (np.maximum(fine["pr"].values, 0) * pr_factor / 86400.0).astype(np.float32)
    times = (
        src["time"].values + np.timedelta64(365 * shift_years, "D")
        if shift_years
        else src["time"].values
    )
    ds = xr.Dataset(
        {
            "pr": (("time", "lat", "lon"), pr, {"units": "kg m-2 s-1"}),
            "q": (
                ("time", "lat", "lon"),
                fine["q"].values.astype(np.float32),
                {"units": "kg kg-1"},
            ),
        },
        coords={"time": times, "lat": lat, "lon": lon},
    )
    return write_predictors(path, ds)


def test_a_predictor_file_on_its_own_coarser_grid(trained, tmp_path):
    run, ckpt = trained
    path = coarse_file(run, tmp_path / "gcm.nc")
    out = tmp_path / "gcm_down.nc"
    result, _ = run_downscale(ckpt, out, predictors=[path], period=JAN,
                              overrides=["data.regrid=conservative"])  # fmt: skip
    # by hand: the file converted to mm/day, flipped, remapped conservatively, normalised, the net
    net, _, info = load_srdrn(ckpt)
    store = open_store(run)
    with xr.open_dataset(path) as f:
        f = f.sel(time=slice("2002-01-01", "2002-01-31")).isel(lat=slice(None, None, -1))
        chans = []
        for name, factor in (("pr", np.float32(86400.0)), ("q", None)):
            da = f[name] * factor if factor is not None else f[name]
            da = da.astype(np.float32).rename({"lat": "y", "lon": "x"})
            da = da.assign_coords(lat=("y", f["lat"].values), lon=("x", f["lon"].values))
            regridded, _ = regrid_predictor(da, store["lat_lr"].values, store["lon_lr"].values,
                                            method="conservative")  # fmt: skip
            chans.append(np.maximum(regridded.values, 0) if name == "pr" else regridded.values)
    x = Normalization.from_dict(info["normalization"]).normalize_x(np.stack(chans, axis=1))
    with torch.no_grad():
        by_hand = net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))[:, 0].numpy()
    mask = store["mask"].values
    with xr.open_dataset(out) as ds:
        np.testing.assert_allclose(ds["pr"].values[:, mask], by_hand[:, mask], rtol=1e-5, atol=1e-6)
        assert np.isnan(ds["pr"].values[:, ~mask]).all()
        assert ds.attrs["regrid"] == "conservative" and json.loads(ds.attrs["source_files"]) == [
            str(path.resolve())
        ]
    assert result.edge_cells == {"pr": 0, "q": 0}


def test_near_edge_cells_are_filled_only_when_asked(trained, tmp_path):
    run, ckpt = trained
    src = xr.open_dataset(lowres_file(run)).load()
    # the predictors' own grid without its southern row: low-res row 0 lies one cell outside
    cut = write_predictors(tmp_path / "cut.nc", src.isel(lat=slice(1, None)))
    with pytest.raises(DownpourError, match="set data.predictor_edge=nearest"):
        downscale(ckpt, predictors=[cut], period=JAN, out=tmp_path / "x.nc", progress=False)
    assert not (tmp_path / "x.nc").exists()
    result, _ = run_downscale(ckpt, tmp_path / "x.nc", predictors=[cut], period=JAN,
                              overrides=["data.predictor_edge=nearest"])  # fmt: skip
    assert result.edge_cells == {"pr": 3, "q": 3}  # the three cells of the southern low-res row
    with xr.open_dataset(result.path) as ds:
        assert json.loads(ds.attrs["predictor_edge_cells"]) == {"pr": 3, "q": 3}
    # the southern row took the values of the row above it (the nearest predictor cells)
    fed = []
    real_block = psmod.PredictorSet.block
    try:
        psmod.PredictorSet.block = lambda self, b: fed.append(real_block(self, b)) or fed[-1]
        run_downscale(ckpt, tmp_path / "y.nc", predictors=[cut], period=JAN,
                      overrides=["data.predictor_edge=nearest"])  # fmt: skip
    finally:
        psmod.PredictorSet.block = real_block
    jan = src.sel(time=slice("2002-01-01", "2002-01-31"))
    np.testing.assert_array_equal(fed[0][:, 1, 0], jan["q"].values[:, 1])
    np.testing.assert_array_equal(fed[0][:, 1, 1:], jan["q"].values[:, 1:])


# ------------------------------------------------------- (c) a period outside training


def test_a_period_outside_the_training_years_and_the_range_warning(trained, tmp_path):
    run, ckpt = trained
    src = xr.open_dataset(lowres_file(run)).load()
    future = src.assign_coords(time=src["time"].values + np.timedelta64(50 * 365 + 12, "D"))
    path = write_predictors(tmp_path / "ssp.nc", future)  # 2001-01-01 → 2051-01-01
    result, warned = run_downscale(ckpt, tmp_path / "ssp_down.nc", predictors=[path],
                                   period="2051-01-01:2051-01-31")  # fmt: skip
    assert (result.first, result.last) == ("2051-01-01", "2051-01-31")
    now, _ = run_downscale(ckpt, tmp_path / "now.nc", period="2001-01-01:2001-01-31")
    with xr.open_dataset(result.path) as a, xr.open_dataset(now.path) as b:
        assert str(a["time"].values[0])[:10] == "2051-01-01" and a.sizes["time"] == 31
        np.testing.assert_array_equal(a["pr"].values, b["pr"].values)  # the same predictors
        assert a.attrs["training_period"] == "2001-01-01:2001-03-31"
    assert not warned  # January 2001 lies inside the training range
    # wetter and moister than anything in training: the warning gives the shares per channel
    wet = future.copy()
    wet["pr"] = future["pr"] * 3
    wet["q"] = future["q"] * 1.5
    path2 = write_predictors(tmp_path / "wet.nc", wet)
    result, warned = run_downscale(ckpt, tmp_path / "wet_down.nc", predictors=[path2],
                                   period="2051-07-01:2051-07-31")  # fmt: skip
    info = read_checkpoint(ckpt).info
    sel = wet.sel(time=slice("2051-07-01", "2051-07-31"))
    expect = {
        name: float((sel[name].values > info["predictor_range"]["max"][i]).mean())
        for i, name in enumerate(("pr", "q"))
    }
    assert result.out_of_range["pr"]["above"] == pytest.approx(expect["pr"])
    assert result.out_of_range["q"]["above"] == pytest.approx(expect["q"]) and expect["q"] > 0
    (w,) = warned
    msg = str(w.message)
    assert "outside the training range (2001-01-01 to 2001-03-31)" in msg
    assert f"q 0.0% below / {expect['q']:.1%} above" in msg
    with xr.open_dataset(result.path) as ds:
        assert json.loads(ds.attrs["predictors_outside_training_range"]) == result.out_of_range


# ----------------------------------------------------------------------- bad inputs


def assert_refused(tmp_path, match, *args, **kw):
    out = kw.pop("out", tmp_path / "refused.nc")
    with pytest.raises(DownpourError, match=match) as err:
        downscale(*args, out=out, progress=False, **kw)
    assert "\n" not in str(err.value)
    assert not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(".")]
    return str(err.value)


def test_bad_inputs_are_one_line_errors_and_write_nothing(trained, tmp_path, quarter_jan_run):
    run, ckpt = trained
    src = xr.open_dataset(lowres_file(run)).load()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    # wrong variables
    only_tas = write_predictors(tmp_path / "tas.nc", src.rename({"q": "tas"}))
    msg = assert_refused(out_dir, "no file holds the variable 'q'", ckpt, predictors=[only_tas])
    assert "pr, tas" in msg
    # wrong units: moisture in g/kg; precipitation in kelvin
    gkg = src.copy()
    gkg["q"] = (src["q"] * 1000).assign_attrs(units="g kg-1")
    assert_refused(out_dir, "units 'g kg-1'.*trained on 'kg kg-1'", ckpt,
                   predictors=[write_predictors(tmp_path / "gkg.nc", gkg)])  # fmt: skip
    kelvin = src.copy()
    kelvin["pr"] = src["pr"].assign_attrs(units="K")
    assert_refused(out_dir, "unknown precipitation units 'K'", ckpt,
                   predictors=[write_predictors(tmp_path / "k.nc", kelvin)])  # fmt: skip
    # a grid that does not cover the domain
    small = write_predictors(tmp_path / "small.nc", src.isel(lat=slice(1, 3), lon=slice(0, 2)))
    assert_refused(out_dir, "does not cover the target's low-res cells", ckpt, predictors=[small])
    # a period with no days
    assert_refused(out_dir, "holds none of the 730 time steps", ckpt, period="1990:1991")
    # a checkpoint of another dataset: other channel names, another run's grid
    cfg = tmp_path / "other.yaml"
    cfg.write_text(
        "data:\n  predictors:\n"
        f"    - {{path: {lowres_file(run)}, variable: pr, kind: precip, name: precip}}\n"
        f"    - {{path: {lowres_file(run)}, variable: q, name: tas}}\n"
    )
    assert_refused(out_dir, "checkpoint of another dataset", ckpt, config=cfg)
    other = tmp_path / "other_run"
    prepare(load_config("demo", [*QUARTER_JAN, "data.embedded.height=24",
                                 "data.embedded.width=24"]), other)  # fmt: skip
    assert_refused(out_dir, "use a checkpoint of this dataset", ckpt, run=other)
    # distributional output of a deterministic model; a format that does not exist
    assert_refused(out_dir, "needs a distributional model", ckpt, output="probability",
                   threshold=10.0)  # fmt: skip
    assert_refused(out_dir, "--format 'grib'", ckpt, fmt="grib")
    assert_refused(out_dir, "needs --run RUN", None, baseline="bcsd")


class _NaNDay(torch.nn.Module):
    """A broken network: NaN everywhere on the third day of every batch."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        y = self.net(x).clone()
        y[2:3] = float("nan")
        return y


def test_nan_output_inside_the_mask_is_refused_not_written_as_fill(trained, tmp_path, monkeypatch):
    run, ckpt = trained
    real = dsmod.load_model

    def broken(path, kind=None):
        loaded = real(path, kind)
        loaded.net = _NaNDay(loaded.net)
        return loaded

    monkeypatch.setattr(dsmod, "load_model", broken)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    msg = assert_refused(out_dir, r"NaN/infinite values inside the mask \(first on 2002-01-03\)",
                         ckpt, period="2002-01-01:2002-01-05")  # fmt: skip
    valid = int(mask_from_runs(read_checkpoint(ckpt).info["mask"]).sum())
    assert f"produced {valid} NaN/infinite values" in msg  # one day, every valid cell


def test_an_old_checkpoint_asks_to_retrain_or_give_the_run(trained, tmp_path):
    run, ckpt = trained
    raw = torch.load(ckpt, weights_only=False)
    for key in ("grid", "mask", "train_period", "predictor_range", "predictors", "channels",
                "static_channels", "elevation"):  # fmt: skip
        raw["downpour"]["info"].pop(key)
    old = tmp_path / "old.ckpt"
    torch.save(raw, old)
    msg = assert_refused(tmp_path, "retrain it, or pass --run RUN", old, period=JAN)
    assert "earlier downpour" in msg
    result, _ = run_downscale(old, tmp_path / "old.nc", run=run, period=JAN)
    with xr.open_dataset(result.path) as ds:
        np.testing.assert_array_equal(
            ds["pr"].values, predict_srdrn(ckpt, run, split="test").values
        )


# ----------------------------------------------------------------- bounded memory


def test_memory_holds_one_block_of_days(trained, tmp_path, monkeypatch):
    _, ckpt = trained
    writes, reads = [], []
    write, read = cf_output.BlockWriter.write, predmod.PredictorFile.read

    def counting_write(self, start, values):
        writes.append((start, values.shape[0]))
        return write(self, start, values)

    def counting_read(self, idx):
        reads.append(len(idx))
        return read(self, idx)

    monkeypatch.setattr(cf_output.BlockWriter, "write", counting_write)
    monkeypatch.setattr(predmod.PredictorFile, "read", counting_read)
    for fmt in ("netcdf", "zarr"):
        writes.clear()
        reads.clear()
        result, _ = run_downscale(ckpt, tmp_path / f"b.{fmt}", period=JAN, block_days=7, fmt=fmt)
        assert result.blocks == 5
        assert writes == [(0, 7), (7, 7), (14, 7), (21, 7), (28, 3)]
        assert max(reads) <= 7  # predictors are read a block at a time (after a 2-day probe)
        with (xr.open_zarr(result.path, consolidated=False) if fmt == "zarr"
              else xr.open_dataset(result.path)) as ds:  # fmt: skip
            whole = predict_srdrn(ckpt, trained[0], split="test")
            np.testing.assert_allclose(ds["pr"].values, whole.values, rtol=1e-5, atol=1e-6)
    # the default block is bounded by days and bytes, not by the archive's length
    assert dsmod.BLOCK_DAYS <= 366


# ------------------------------------------------------------- distributional output


class _Heads(torch.nn.Module):
    """Three monotone 'quantile heads' from a deterministic network (a stand-in for Q-SRDRN)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        y = self.net(x)
        return torch.cat([0.5 * y, y, 2.0 * y + 1.0], dim=1)


def test_quantile_heads_and_probabilities(trained, tmp_path, monkeypatch):
    run, ckpt = trained
    real = dsmod.load_model

    def heads(path, kind=None):
        loaded = real(path, kind)
        cfg = loaded.config.model_copy(deep=True)
        object.__setattr__(cfg.srdrn, "quantiles", [0.5, 0.9, 0.99])
        loaded.net, loaded.config = _Heads(loaded.net), cfg
        return loaded

    monkeypatch.setattr(dsmod, "load_model", heads)
    result, _ = run_downscale(ckpt, tmp_path / "q.nc", period="2002-01-01:2002-01-05")
    assert result.dims == ("time", "quantile", "lat", "lon")
    det = predict_srdrn(ckpt, run, split="test").values[:5]
    with xr.open_dataset(result.path) as ds:
        np.testing.assert_array_equal(ds["quantile"].values, [0.5, 0.9, 0.99])
        assert ds["quantile"].attrs["units"] == "1"
        np.testing.assert_allclose(ds["pr"].values[:, 1], det, rtol=1e-6)
        np.testing.assert_allclose(ds["pr"].values[:, 2], 2 * det + 1, rtol=1e-6)
    prob, _ = run_downscale(ckpt, tmp_path / "p.nc", period="2002-01-01:2002-01-05",
                            output="probability", threshold=0.05)  # fmt: skip
    assert prob.variable == "exceedance_probability" and prob.dims == ("time", "lat", "lon")
    with xr.open_dataset(prob.path) as ds, xr.open_dataset(result.path) as q:
        p = ds["exceedance_probability"]
        assert p.attrs["units"] == "1" and p.attrs["threshold"] == 0.05
        np.testing.assert_allclose(
            p.values,
            exceedance_probability(q["pr"].values, [0.5, 0.9, 0.99], 0.05, axis=1),
            rtol=1e-6,
        )
        mask = open_store(run)["mask"].values
        assert (
            np.isnan(p.values[:, ~mask]).all()
            and ((p.values[:, mask] >= 0) & (p.values[:, mask] <= 1)).all()
        )


# ----------------------------------------------------------------- the cVAE's members


def test_cvae_prior_members_are_seeded_per_day(trained_run, tmp_path):
    from downpour.config import SamplingConfig
    from downpour.downscaling.sampling import load_cvae, sample_cvae

    ckpt = trained_run / "checkpoints" / "cvae" / "last.ckpt"
    sets = ["sampling.members=3", "sampling.seed=5"]
    result, _ = run_downscale(ckpt, tmp_path / "m.nc", period="2001-07-01:2001-07-04",
                              overrides=sets, block_days=3)  # fmt: skip
    assert result.dims == ("time", "member", "lat", "lon") and result.sizes["member"] == 3
    part, _ = run_downscale(ckpt, tmp_path / "m2.nc", period="2001-07-03:2001-07-04",
                            overrides=sets)  # fmt: skip
    base = load_cvae(ckpt)[1].sampling.model_dump()  # the checkpoint's sampling settings
    s = SamplingConfig.model_validate({**base, "mode": "prior", "members": 3, "seed": 5,
                                       "split": "val", "days": "all",
                                       "period": "2001-07-01:2001-07-04"})  # fmt: skip
    expected = sample_cvae([ckpt], trained_run, s, progress=False)
    with xr.open_dataset(result.path) as a, xr.open_dataset(part.path) as b:
        assert a["member"].attrs["standard_name"] == "realization"
        np.testing.assert_array_equal(a["pr"].values, expected["samples"].values)
        np.testing.assert_array_equal(a["pr"].values[2:], b["pr"].values)
        assert a.attrs["members"] == 3 and a.attrs["seed"] == 5


# ------------------------------------------------------------ perfect prognosis


def test_a_perfect_prognosis_model_coarsens_a_high_res_file(quarter_jan_run, tmp_path):
    hr = quarter_jan_run / "data" / "source" / "embedded_hr.nc"
    sets = [
        *QUARTER_JAN,
        *TINY_SRDRN,
        f"data.target={{path: {hr}, variable: precip, kind: precip}}",
        f"data.mask={{path: {hr}, variable: lsm}}",
        "data.scale_factor=12",
    ]
    run = tmp_path / "pp"
    cfg = load_config("demo", sets)
    train_srdrn(cfg, run, echo=quiet, enable_progress_bar=False, kind="srdrn_real")
    ckpt = run / "checkpoints" / "srdrn_real" / "best.ckpt"
    info = read_checkpoint(ckpt).info
    assert info["predictors"][0]["coarsened"] and info["channels"] == ["pr_coarse"]
    result, _ = run_downscale(ckpt, tmp_path / "pp.nc", predictors=[hr], period=JAN)
    with xr.open_dataset(result.path) as ds:
        np.testing.assert_array_equal(
            ds["pr"].values, predict_srdrn(ckpt, run, split="test").values
        )


def test_prepare_fills_near_edge_cells_and_counts_them_in_the_card(quarter_jan_run, tmp_path):
    src = quarter_jan_run / "data" / "source"
    with xr.open_dataset(src / "embedded_lr.nc") as lr:
        cut = write_predictors(tmp_path / "cut.nc", lr.load().isel(lat=slice(1, None)))
    sets = [
        *QUARTER_JAN,
        f"data.target={{path: {src / 'embedded_hr.nc'}, variable: precip, kind: precip}}",
        f"data.mask={{path: {src / 'embedded_hr.nc'}, variable: lsm}}",
        f"data.predictors=[{{path: {cut}, variable: pr, kind: precip}}, "
        f"{{path: {cut}, variable: q}}]",
        "data.regrid=conservative",
    ]
    with pytest.raises(DownpourError, match="set data.predictor_edge=nearest"):
        prepare(load_config("demo", sets), tmp_path / "refused")
    card = prepare(load_config("demo", [*sets, "data.predictor_edge=nearest"]), tmp_path / "run")
    assert card["predictor_edge_cells"] == {"pr": 3, "q": 3}
    assert card["grid"]["regrid"] == "conservative" and card["grid"]["predictor_edge"] == "nearest"
    store = open_store(tmp_path / "run")
    x = store["predictors"].values
    np.testing.assert_array_equal(x[:, :, 0], x[:, :, 1])  # row 0 from the nearest row (row 1)
    with xr.open_dataset(cut) as f:  # the rows inside: the file's own grid, taken as it is
        days = f.sel(time=store["time"].values)
        np.testing.assert_allclose(x[:, 1, 1:], days["q"].values, rtol=1e-6)
