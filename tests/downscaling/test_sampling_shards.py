"""Sampling a long archive in time shards: per-event seeding, block writes, merged shards."""

import datetime as dt
import json

import numpy as np
import pytest
import torch
import xarray as xr

import downpour.downscaling.sampling as sampling_mod
from _shared import cvae_checkpoint, opened
from downpour.config import SamplingConfig
from downpour.core.errors import DownpourError
from downpour.downscaling.dataset import PrecipDataset
from downpour.downscaling.samples import merge_samples, write_samples
from downpour.downscaling.sampling import (
    event_generator,
    load_cvae,
    sample_cvae,
    sample_to_store,
)

JAN = (dt.date(2001, 1, 1), dt.date(2001, 1, 20))
JAN12 = dt.date(2001, 1, 12)


ckpt = cvae_checkpoint


def cfg(**kw) -> SamplingConfig:
    base = dict(members=3, seed=7, days="all", pixel_threshold=0.1, period=JAN, batch_size=4)
    return SamplingConfig(**{**base, **kw})


def test_period_shards_merge_to_the_single_pass(trained_run, tmp_path):
    store = trained_run / "data" / "store.zarr"
    whole = sample_to_store([ckpt(trained_run)], store, cfg(), tmp_path / "whole.zarr")
    # shards cut at another place than the blocks, with other block sizes, one as NetCDF
    a = sample_to_store(
        [ckpt(trained_run)],
        store,
        cfg(period=(dt.date(2001, 1, 1), dt.date(2001, 1, 9)), batch_size=3),
        tmp_path / "a.zarr",
    )
    b = sample_to_store(
        [ckpt(trained_run)],
        store,
        cfg(period=(dt.date(2001, 1, 10), dt.date(2001, 1, 20)), batch_size=8),
        tmp_path / "b.nc",
        fmt="netcdf",
    )
    merged = merge_samples([b, a], tmp_path / "merged.zarr")  # any order
    w, m = opened(whole), opened(merged)
    assert m.sizes["event"] == 20 and m.sizes["member"] == 3
    assert [str(t)[:10] for t in m["time"].values[[0, 8, 9, 19]]] == [
        "2001-01-01",
        "2001-01-09",
        "2001-01-10",
        "2001-01-20",
    ]
    assert json.loads(m.attrs.pop("merged_from")) == [str(b), str(a)]
    assert m.attrs["period"] == "2001-01-01:2001-01-20"
    xr.testing.assert_identical(m, w)  # bitwise: values, NaN mask, coordinates, attributes

    # the seeding contract: event i's members are CVAE.sample on that day with its generator
    net, _, _ = load_cvae(ckpt(trained_run))
    days = PrecipDataset(store, "train")
    i = int(np.flatnonzero(days.times == m["time"].values[12])[0])
    item = torch.utils.data.default_collate([days[i]])
    z = net.sample(
        item["x"], item["s"], 3, mode="posterior", y=item["y"],
        generator=event_generator(7, days.times[i], 0),
    )  # fmt: skip
    ref = torch.expm1(z[0]).clamp_min(0).numpy()
    ref[ref < 0.1] = 0.0
    mask = m["mask"].values
    np.testing.assert_array_equal(m["samples"].values[12][:, mask], ref[:, mask])


def test_streamed_store_equals_the_in_memory_dataset(trained_run, tmp_path):
    store = trained_run / "data" / "store.zarr"
    s = cfg(mode="prior", members=2, batch_size=6)
    ds = sample_cvae([ckpt(trained_run)], store, s, progress=False)
    assert ds.attrs["period"] == "2001-01-01:2001-01-20"
    for fmt, name in (("zarr", "s.zarr"), ("netcdf", "s.nc")):
        streamed = sample_to_store([ckpt(trained_run)], store, s, tmp_path / name, fmt=fmt)
        ref = write_samples(ds, tmp_path / f"ref_{name}", fmt)
        xr.testing.assert_identical(opened(streamed), opened(ref))
    # one event per chunk, and nothing but the store left in the folder
    meta = json.loads((tmp_path / "s.zarr" / "samples" / "zarr.json").read_text())
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [1, 2, 48, 36]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_memory_holds_one_block_at_a_time(trained_run, tmp_path, monkeypatch):
    """The writer receives blocks of at most batch_size events, in order, covering every event."""
    seen = []
    draw = sampling_mod._draw_block

    def spy(plan, block, sampling, wet):
        seen.append((block.start, block.stop))
        return draw(plan, block, sampling, wet)

    monkeypatch.setattr(sampling_mod, "_draw_block", spy)
    store = trained_run / "data" / "store.zarr"
    sample_to_store([ckpt(trained_run)], store, cfg(batch_size=6), tmp_path / "s.zarr")
    assert seen == [(0, 6), (6, 12), (12, 18), (18, 20)]


def test_a_failed_run_leaves_no_store(trained_run, tmp_path, monkeypatch):
    calls = []
    draw = sampling_mod._draw_block

    def fail_on_second(plan, block, sampling, wet):
        calls.append(block)
        if len(calls) == 2:
            raise RuntimeError("node lost")
        return draw(plan, block, sampling, wet)

    monkeypatch.setattr(sampling_mod, "_draw_block", fail_on_second)
    out = tmp_path / "s.zarr"
    with pytest.raises(RuntimeError, match="node lost"):
        sample_to_store([ckpt(trained_run)], trained_run / "data" / "store.zarr", cfg(), out)
    assert list(tmp_path.iterdir()) == []


def test_overlapping_or_foreign_shards_are_refused(trained_run, tmp_path):
    store = trained_run / "data" / "store.zarr"
    a = sample_to_store(
        [ckpt(trained_run)],
        store,
        cfg(period=(dt.date(2001, 1, 1), dt.date(2001, 1, 10))),
        tmp_path / "a.zarr",
    )
    b = sample_to_store(
        [ckpt(trained_run)],
        store,
        cfg(period=(dt.date(2001, 1, 8), dt.date(2001, 1, 15))),
        tmp_path / "b.zarr",
    )
    with pytest.raises(DownpourError, match=r"shards overlap: 3 day\(s\).*2001-01-08 in .*a.zarr"):
        merge_samples([a, b], tmp_path / "m.zarr")
    for change, key in (
        ({"mode": "prior"}, "mode"),
        ({"temperature": 0.5}, "temperature"),
        ({"members": 2}, "members_per_checkpoint"),
        ({"seed": 8}, "seed"),
    ):
        other = cfg(period=(dt.date(2001, 1, 11), dt.date(2001, 1, 12)), **change)
        c = sample_to_store([ckpt(trained_run)], store, other, tmp_path / f"{key}.zarr")
        with pytest.raises(DownpourError, match=rf"cannot merge .*{key}.zarr.*'{key}' differs"):
            merge_samples([a, c], tmp_path / "m.zarr")
    with pytest.raises(DownpourError, match="one of the shards"):
        merge_samples([a], a)
    assert not (tmp_path / "m.zarr").exists()


def test_empty_period_is_a_clear_error(trained_run):
    store = trained_run / "data" / "store.zarr"
    july = (dt.date(2001, 7, 1), dt.date(2001, 7, 31))  # the training split ends on 2001-06-30
    with pytest.raises(
        DownpourError,
        match=r"sampling.period 2001-07-01:2001-07-31 holds none of the 181 selected days of "
        r"split train .*run from 2001-01-01 to 2001-06-30",
    ):
        sample_cvae([ckpt(trained_run)], store, cfg(period=july), progress=False)
    # a period holding days of the split but none of the selected (heavy) ones
    train = PrecipDataset(store, "train")
    quiet = train.times[~train.is_heavy][0].astype("datetime64[D]").item()
    n_heavy = int(train.is_heavy.sum())
    with pytest.raises(DownpourError, match=rf"holds none of the {n_heavy} selected heavy days"):
        sample_cvae(
            [ckpt(trained_run)],
            store,
            cfg(days="heavy_only", period=(quiet, quiet)),
            progress=False,
        )


def test_unknown_device_is_a_clear_error(trained_run):
    with pytest.raises(DownpourError, match=r"sampling.device='gpu' is not a torch device"):
        sample_cvae(
            [ckpt(trained_run)], trained_run / "data" / "store.zarr", cfg(device="gpu"),
            progress=False,
        )  # fmt: skip
