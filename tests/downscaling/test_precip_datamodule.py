"""PrecipDataModule: the size of the splits decides whether they are held in memory."""

from __future__ import annotations


def test_split_bytes_and_automatic_in_memory(half_year_q95_run, monkeypatch):
    import numpy as np
    import xarray as xr

    from downpour.config import TrainConfig
    from downpour.downscaling import datamodule as dmod

    store = half_year_q95_run / "data" / "store.zarr"
    ds = xr.open_zarr(store, consolidated=False)
    split = np.asarray(ds["split"].values).astype(object)
    days = int(((split == "train") | (split == "val")).sum())
    c, h, w = ds["predictors"].shape[1:]
    expected = days * (48 * 36 + c * h * w) * 4
    assert dmod.split_bytes(store, ("train", "val")) == expected
    assert dmod.PrecipDataModule(store, TrainConfig()).in_memory  # well under 2 GiB
    monkeypatch.setattr(dmod, "IN_MEMORY_LIMIT", expected)  # now "too large"
    assert not dmod.PrecipDataModule(store, TrainConfig()).in_memory
    assert dmod.PrecipDataModule(store, TrainConfig(in_memory=True)).in_memory  # explicit wins
