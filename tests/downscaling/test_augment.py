"""Augmentation: real training days plus flagged synthetic members, never from test days."""

import json

import numpy as np
import pytest
import xarray as xr

from downpour.config import AugmentConfig, SamplingConfig, load_config
from downpour.core.errors import DownpourError
from downpour.downscaling.augment import augment, select_members
from downpour.downscaling.dataset import PrecipDataset
from downpour.downscaling.samples import write_samples
from downpour.downscaling.sampling import sample_cvae


@pytest.fixture(scope="module")
def paths(sampled_run):
    return sampled_run / "data" / "store.zarr", sampled_run / "samples" / "posterior_train.zarr"


def strs(a) -> np.ndarray:
    return np.array([str(v) for v in np.asarray(a)])


def open_(path) -> xr.Dataset:
    return xr.open_zarr(path, consolidated=False, chunks=None)


def test_select_members_by_rank_and_round():
    stat = np.array([5.0, 9.0, 1.0, 7.0])  # ranks: event 1, 3, 0, 2
    cfg = AugmentConfig(ratio=0.5, seed=0)
    chosen = select_members(stat, 3, cfg, n_real_train=12)  # 6 days: 4 in round 0, 2 in round 1
    assert chosen[:, 0].tolist() == [1, 3, 0, 2, 1, 3]
    # the members of one event are distinct
    for ev in (1, 3):
        assert len(set(chosen[chosen[:, 0] == ev, 1].tolist())) == 2
    top = select_members(stat, 3, AugmentConfig(per_event=3, top_events=2), n_real_train=12)
    assert sorted(top[:, 0].tolist()) == [1, 1, 1, 3, 3, 3]
    assert sorted(top[top[:, 0] == 1, 1].tolist()) == [0, 1, 2]
    assert len(select_members(stat, 3, AugmentConfig(), 12)) == 12  # every member


def test_select_members_errors():
    with pytest.raises(DownpourError, match="per_event=4 but the samples hold 3 members"):
        select_members(np.ones(2), 3, AugmentConfig(per_event=4), 10)
    with pytest.raises(DownpourError, match=r"asks for 20 synthetic.*2 events × 3 members = 6"):
        select_members(np.ones(2), 3, AugmentConfig(ratio=2.0), 10)
    with pytest.raises(DownpourError, match="either augment.per_event or augment.ratio"):
        load_config("demo", ["augment.per_event=2", "augment.ratio=0.1"])


def test_paired_store_contents(paths, tmp_path):
    store, samples = paths
    out = tmp_path / "aug.zarr"
    info = augment(store, [samples], out, AugmentConfig(per_event=2, seed=1), echo=lambda m: None)
    st, sm, ag = open_(store), open_(samples), open_(out)
    n_ev = sm.sizes["event"]
    real = np.isin(strs(st["split"].values), ["train", "val"])
    syn = ag["is_synthetic"].values
    assert info["synthetic_days"] == 2 * n_ev == int(syn.sum())
    assert int((~syn).sum()) == int(real.sum())
    assert "test" not in set(strs(ag["split"].values))
    assert set(strs(ag["split"].values[syn])) == {"train"}
    # real days are copied unchanged
    np.testing.assert_array_equal(ag["target"].values[~syn], st["target"].values[real])
    # each synthetic day: its member's field and its source event's predictors
    mask = st["mask"].values
    times = st["time"].values
    for i in np.flatnonzero(syn)[:5]:
        ev = int(np.flatnonzero(sm["time"].values == ag["source_time"].values[i])[0])
        m = int(ag["member"].values[i])
        member = sm["samples"].values[ev, m]
        np.testing.assert_array_equal(ag["target"].values[i][mask], member[mask])
        assert (ag["target"].values[i][~mask] == 0).all()
        row = int(np.flatnonzero(times == ag["time"].values[i])[0])
        np.testing.assert_array_equal(ag["predictors"].values[i], st["predictors"].values[row])
        assert ag["heavy_stat"].values[i] == pytest.approx(
            sm["samples"].values[ev, m][mask].mean(), rel=1e-5
        )
    assert (ag["member"].values[~syn] == -1).all()
    # normalisation and thresholds stay those of the real training days
    assert ag.attrs["normalization"] == st.attrs["normalization"]
    assert ag.attrs["thresholds"] == st.attrs["thresholds"]
    prov = json.loads(ag.attrs["augmentation"])
    assert prov["sources"][0]["mode"] == "posterior"
    assert prov["synthetic_days"] == 2 * n_ev
    # SRDRN's dataset reads it: train = real train days + synthetic days
    ds = PrecipDataset(out, "train")
    n_train = int((strs(st["split"].values) == "train").sum())
    assert len(ds) == n_train + 2 * n_ev
    assert bool(ds[len(ds) - 1]["is_synthetic"]) and not bool(ds[0]["is_synthetic"])


def test_coarsened_predictors(paths, tmp_path):
    store, samples = paths
    out = tmp_path / "coarse.zarr"
    augment(store, [samples], out, AugmentConfig(per_event=1, predictors="coarsened"),
            echo=lambda m: None)  # fmt: skip
    st, ag = open_(store), open_(out)
    f = int(st.attrs["scale_factor"])
    mask = st["mask"].values
    chans = list(strs(st["channel"].values))
    syn = np.flatnonzero(ag["is_synthetic"].values)
    y = np.where(mask, ag["target"].values[syn], np.nan)
    h, w = mask.shape
    blocks = y.reshape(len(syn), h // f, f, w // f, f)
    expect = np.nan_to_num(np.nanmean(blocks, axis=(2, 4)), nan=0.0)
    pr = chans.index("pr")
    np.testing.assert_allclose(ag["predictors"].values[syn, pr], expect, rtol=1e-5, atol=1e-6)
    # the moisture channel stays the source event's
    q = chans.index("q")
    rows = [int(np.flatnonzero(st["time"].values == t)[0]) for t in ag["time"].values[syn]]
    np.testing.assert_array_equal(ag["predictors"].values[syn, q], st["predictors"].values[rows, q])


def test_refuses_samples_of_validation_days(sampled_run, tmp_path):
    store = sampled_run / "data" / "store.zarr"
    s = SamplingConfig(members=2, split="val", days="all", pixel_threshold=0.0)
    ds = sample_cvae([sampled_run / "checkpoints" / "cvae" / "last.ckpt"], store, s, progress=False)
    val = write_samples(ds, tmp_path / "val.zarr")
    out = tmp_path / "aug.zarr"
    with pytest.raises(DownpourError, match="'val' days and are for evaluation only"):
        augment(store, [val], out, echo=lambda m: None)
    # a store whose attributes were edited to look like training samples is still refused
    ds.attrs.update(split="train", for_evaluation_only=0)
    forged = write_samples(ds, tmp_path / "forged.zarr")
    with pytest.raises(DownpourError, match="not training days of the store.*leak"):
        augment(store, [forged], out, echo=lambda m: None)
    assert not out.exists()
