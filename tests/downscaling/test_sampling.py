"""Reproducible, batched sampling from checkpoints into (event, member, y, x)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from downpour.config import SamplingConfig, load_config
from downpour.core.errors import DownpourError
from downpour.downscaling.prepare import prepare
from downpour.downscaling.samples import write_samples
from downpour.downscaling.sampling import load_cvae, sample_cvae


def ckpt(run: Path) -> Path:
    return run / "checkpoints" / "cvae" / "last.ckpt"


def test_shapes_coords_attrs_and_exact_zeros(trained_run):
    s = SamplingConfig(mode="prior", members=3, seed=1, batch_size=4)
    ds = sample_cvae([ckpt(trained_run)], trained_run / "data" / "store.zarr", s, progress=False)
    store = xr.open_zarr(trained_run / "data" / "store.zarr", consolidated=False)
    heavy_train = (store["split"].values == "train") & store["is_heavy"].values
    assert ds["samples"].dims == ("event", "member", "y", "x")
    assert ds["samples"].shape == (int(heavy_train.sum()), 3, 48, 36)
    np.testing.assert_array_equal(ds["time"].values, store["time"].values[heavy_train])
    np.testing.assert_array_equal(
        ds["target"].values[:, store["mask"].values],
        store["target"].values[heavy_train][:, store["mask"].values],
    )
    mask = ds["mask"].values
    assert np.isnan(ds["samples"].values[:, :, ~mask]).all()
    vals = ds["samples"].values[:, :, mask]
    assert np.isfinite(vals).all() and (vals >= 0).all()
    assert (
        ds.attrs["mode"] == "prior"
        and ds.attrs["seed"] == 1
        and ds.attrs["for_evaluation_only"] == 0
    )
    assert json.loads(ds.attrs["checkpoints"]) == [str(ckpt(trained_run))]
    assert ds["samples"].attrs["units"] == "mm/day"


def test_same_seed_same_samples_other_seed_differs(trained_run):
    store = trained_run / "data" / "store.zarr"
    a = sample_cvae([ckpt(trained_run)], store, SamplingConfig(members=4, seed=3), progress=False)
    b = sample_cvae([ckpt(trained_run)], store, SamplingConfig(members=4, seed=3), progress=False)
    c = sample_cvae([ckpt(trained_run)], store, SamplingConfig(members=4, seed=4), progress=False)
    np.testing.assert_array_equal(a["samples"].values, b["samples"].values)
    assert not np.array_equal(a["samples"].values, c["samples"].values)


def test_matches_the_network_member_by_member(trained_run):
    """Each event equals CVAE.sample on that day alone with the event's own generator."""
    from downpour.downscaling.dataset import PrecipDataset
    from downpour.downscaling.sampling import event_generator

    store = trained_run / "data" / "store.zarr"
    s = SamplingConfig(mode="posterior", members=2, seed=5, batch_size=3, days="all")
    ds = sample_cvae([ckpt(trained_run)], store, s, progress=False)
    net, _, _ = load_cvae(ckpt(trained_run))
    days = PrecipDataset(store, "train")
    mask = ds["mask"].values
    for i in (0, 1, 7, 100):
        item = torch.utils.data.default_collate([days[i]])
        z = net.sample(
            item["x"],
            item["s"],
            2,
            mode="posterior",
            y=item["y"],
            generator=event_generator(5, days.times[i], 0),
        )
        ref = torch.expm1(z[0]).clamp_min(0).numpy()
        np.testing.assert_array_equal(ds["samples"].values[i][:, mask], ref[:, mask])


def test_several_checkpoints_concatenate_members(trained_run):
    store = trained_run / "data" / "store.zarr"
    other = trained_run / "checkpoints" / "cvae" / "best.ckpt"
    ds = sample_cvae([ckpt(trained_run), other], store, SamplingConfig(members=2), progress=False)
    assert ds.sizes["member"] == 4
    assert list(ds["checkpoint"].values) == [str(ckpt(trained_run))] * 2 + [str(other)] * 2


def test_test_split_is_marked_for_evaluation_only(trained_run):
    ds = sample_cvae(
        [ckpt(trained_run)],
        trained_run / "data" / "store.zarr",
        SamplingConfig(split="test", members=2),
        progress=False,
    )
    assert ds.attrs["for_evaluation_only"] == 1 and ds.attrs["split"] == "test"
    assert str(ds["time"].values[0])[:4] == "2002"


def test_date_list_and_pixel_threshold(trained_run):
    s = SamplingConfig(days=["2001-01-05", "2001-02-10"], members=2, pixel_threshold=0.5)
    ds = sample_cvae([ckpt(trained_run)], trained_run / "data" / "store.zarr", s, progress=False)
    assert [str(t)[:10] for t in ds["time"].values] == ["2001-01-05", "2001-02-10"]
    v = ds["samples"].values[:, :, ds["mask"].values]
    assert not ((v > 0) & (v < 0.5)).any()


def test_threshold_removing_all_rain_warns_with_numbers(trained_run):
    s = SamplingConfig(members=2, pixel_threshold=1e6)
    with pytest.warns(UserWarning, match=r"removes all rain: the wet share of samples fell from"):
        ds = sample_cvae(
            [ckpt(trained_run)], trained_run / "data" / "store.zarr", s, progress=False
        )
    assert (ds["samples"].values[:, :, ds["mask"].values] == 0).all()


def test_errors(trained_run, tmp_path, small_overrides):
    store = trained_run / "data" / "store.zarr"
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DownpourError, match="cannot be read"):
        sample_cvae([bad], store, SamplingConfig(), progress=False)
    with pytest.raises(DownpourError, match="not in split"):
        sample_cvae([ckpt(trained_run)], store, SamplingConfig(days=["1999-01-01"]), progress=False)
    # a store on another grid
    other = tmp_path / "other"
    prepare(
        load_config(
            "demo", [*small_overrides, "data.embedded.height=60", "data.embedded.width=36"]
        ),
        other,
    )
    with pytest.raises(DownpourError, match=r"trained on a 48×36 grid.*has 60×36"):
        sample_cvae(
            [ckpt(trained_run)], other / "data" / "store.zarr", SamplingConfig(), progress=False
        )


def test_no_heavy_day_in_selection(trained_run, tmp_path):
    from downpour.downscaling.dataset import PrecipDataset
    from downpour.downscaling.sampling import select_days

    ds = PrecipDataset(trained_run / "data" / "store.zarr", "train")
    ds._is_heavy[:] = False  # a split without heavy days
    with pytest.raises(DownpourError, match="no heavy day"):
        select_days(ds, "heavy_only")


def test_write_zarr_and_netcdf_round_trip(trained_run, tmp_path):
    ds = sample_cvae(
        [ckpt(trained_run)],
        trained_run / "data" / "store.zarr",
        SamplingConfig(members=2),
        progress=False,
    )
    for fmt, name in (("zarr", "s.zarr"), ("netcdf", "s.nc")):
        path = write_samples(ds, tmp_path / name, fmt)
        back = xr.open_zarr(path, consolidated=False) if fmt == "zarr" else xr.open_dataset(path)
        np.testing.assert_array_equal(back["samples"].values, ds["samples"].values)
        assert back.attrs["mode"] == "posterior"
