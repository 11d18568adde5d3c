"""Samples-store chunks wholly outside the mask may be absent; a missing one inside is damage."""

import shutil

import numpy as np
import pytest
import xarray as xr

from downpour.core.errors import DownpourError
from downpour.downscaling.samples import open_samples


def _store(path):
    rng = np.random.default_rng(0)
    mask = np.zeros((8, 6), dtype=bool)
    mask[4:, :] = True  # the upper half is sea
    target = np.where(mask, rng.gamma(1.0, 3.0, (4, 8, 6)), np.nan).astype(np.float32)
    samples = np.where(mask, rng.gamma(1.0, 3.0, (4, 2, 8, 6)), np.nan).astype(np.float32)
    ds = xr.Dataset(
        {
            "samples": (("event", "member", "y", "x"), samples),
            "target": (("event", "y", "x"), target),
            "mask": (("y", "x"), mask),
        }
    )
    # target chunks split the grid: the sea-only chunks hold only the fill value (NaN) and
    # zarr does not write them
    enc = {"samples": {"chunks": (1, 2, 8, 6)}, "target": {"chunks": (2, 4, 6)}}
    ds.to_zarr(path, mode="w", consolidated=False, encoding=enc, zarr_format=3)
    return path


def test_chunks_outside_the_mask_may_be_absent(tmp_path):
    path = _store(tmp_path / "s.zarr")
    assert not (path / "target" / "c" / "0" / "0" / "0").exists()  # sea-only: never written
    ds = open_samples(path)
    assert ds.sizes["event"] == 4 and np.isnan(ds["target"].values[:, :4]).all()


def test_a_missing_chunk_inside_the_mask_is_refused(tmp_path):
    path = _store(tmp_path / "s.zarr")
    shutil.rmtree(path / "target" / "c" / "1" / "1")  # events 2-3, the land half
    with pytest.raises(DownpourError, match=r"is incomplete: 1 of the 4 chunks of 'target'"):
        open_samples(path)
