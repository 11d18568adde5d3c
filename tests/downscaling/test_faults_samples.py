"""The samples store under SIGKILL: written at once, block by block, and by `downpour sample`.

Each test kills the writer midway in a subprocess (``tests/_faults.py``), checks
that the output path holds its old complete version (or nothing), reruns the
writer here and compares the result with one written in one go.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from _faults import leftovers, needs_sigkill, run_killed, tree
from downpour.config import SamplingConfig
from downpour.downscaling.samples import (
    block_writer,
    event_blocks,
    open_samples,
    samples_dataset,
    samples_template,
    write_samples,
)
from downpour.downscaling.sampling import sample_to_store

pytestmark = [needs_sigkill, pytest.mark.usefixtures("one_thread")]

FMTS = {"zarr": "samples.zarr", "netcdf": "samples.nc"}
#: In the subprocess: kill half-way through the NetCDF file (written whole, then cut in half).
KILL_IN_NETCDF = (
    "import xarray as xr, os; "
    "kill_at(xr.Dataset, 'to_netcdf', before=lambda real, ds, p, *a, **k: "
    "(real(ds, p, *a, **k), os.truncate(p, os.path.getsize(p) // 2)))"
)


def fake(n_events: int, seed: int) -> xr.Dataset:
    """A samples dataset of ``n_events`` days, 3 members, 12×10 (NaN outside the mask)."""
    rng = np.random.default_rng(seed)
    mask = np.ones((12, 10), bool)
    mask[:, :2] = False
    target = np.where(mask, rng.gamma(0.8, 5.0, (n_events, 12, 10)), 0.0).astype(np.float32)
    samples = np.where(mask, rng.gamma(0.8, 5.0, (n_events, 3, 12, 10)), np.nan)
    times = np.arange("2001-01-01", n_events, dtype="datetime64[D]").astype("datetime64[ns]")
    coords = {"time": ("event", times), "checkpoint": ("member", np.array(["a.ckpt"] * 3, object))}
    attrs = {"mode": "posterior", "split": "train", "seed": seed, "checkpoints": '["a.ckpt"]'}
    return samples_dataset(samples.astype(np.float32), target, mask, coords, attrs, "mm/day")


def assert_same(got: Path, ref: Path) -> None:
    a, b = open_samples(got).load(), open_samples(ref).load()
    xr.testing.assert_identical(a, b)


@pytest.fixture
def sources(tmp_path) -> dict[str, Path]:
    """The old and new datasets, as NetCDF files the subprocess reads."""
    out = {}
    for name, n, seed in (("old", 5, 1), ("new", 9, 2)):
        out[name] = tmp_path / f"{name}.src.nc"
        fake(n, seed).to_netcdf(out[name])
    return out


@pytest.mark.parametrize("fmt", list(FMTS))
def test_killed_write_samples_keeps_the_old_store(tmp_path, sources, fmt):
    path = tmp_path / FMTS[fmt]
    write_samples(xr.load_dataset(sources["old"]), path, fmt)
    before = tree(path)
    kill = "kill_in_chunk_write(4, part='/samples/c/')" if fmt == "zarr" else KILL_IN_NETCDF
    run_killed(f"""
        import xarray as xr
        from downpour.downscaling.samples import write_samples
        {kill}
        write_samples(xr.load_dataset({str(sources["new"])!r}), {str(path)!r}, {fmt!r})
    """)
    assert tree(path) == before
    assert len(leftovers(path)) == 1
    new = xr.load_dataset(sources["new"])
    write_samples(new, path, fmt)
    assert_same(path, write_samples(new, tmp_path / "reference" / FMTS[fmt], fmt))
    assert leftovers(path) == []


def write_blocks(src: Path, path: Path, fmt: str, kill_in_block: int | None = None) -> None:
    """Write the dataset of ``src`` with :func:`block_writer`, 4 events per block."""
    from _faults import kill_in_chunk_write

    ds = xr.load_dataset(src)
    shape = tuple(ds["samples"].shape[1:])
    coords = {k: (v.dims, v.values) for k, v in ds.coords.items()}
    template = samples_template(ds.sizes["event"], shape, ds["mask"].values, coords,
                                dict(ds.attrs), "mm/day")  # fmt: skip
    with block_writer(template, path, fmt) as write:
        for k, block in enumerate(event_blocks(ds.sizes["event"], 4)):
            if k == kill_in_block:
                kill_in_chunk_write(2, part="/samples/c/")  # this block's second event
            write(block, ds["samples"].values[block], ds["target"].values[block])


@pytest.mark.parametrize(
    ("fmt", "where"),
    [("zarr", "second block"), ("netcdf", "second block"), ("netcdf", "netcdf conversion")],
)
def test_killed_block_writer_keeps_the_old_store(tmp_path, sources, fmt, where):
    path = tmp_path / FMTS[fmt]
    write_blocks(sources["old"], path, fmt)
    before = tree(path)
    kill = ("", "kill_in_block=1") if where == "second block" else (KILL_IN_NETCDF, "")
    run_killed(f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_faults_samples import write_blocks
        {kill[0]}
        write_blocks(Path({str(sources["new"])!r}), Path({str(path)!r}), {fmt!r}, {kill[1]})
    """)
    assert tree(path) == before
    assert len(leftovers(path)) == (2 if where == "netcdf conversion" else 1)
    write_blocks(sources["new"], path, fmt)
    assert_same(path, write_samples(xr.load_dataset(sources["new"]), tmp_path / "ref", fmt))
    assert leftovers(path) == []


def test_killed_sample_to_store_leaves_nothing_and_a_rerun_is_complete(trained_run, tmp_path):
    """`downpour sample` killed in its second block of events (a trained cVAE, 3 blocks)."""
    ckpt = trained_run / "checkpoints" / "cvae" / "last.ckpt"
    store = trained_run / "data" / "store.zarr"
    cfg = dict(members=2, seed=7, days="all", period=("2001-01-01", "2001-01-09"), batch_size=3)
    path = tmp_path / "posterior_train.zarr"
    run_killed(f"""
        from downpour.config import SamplingConfig
        from downpour.downscaling import sampling
        arm_at(sampling, "_draw_block", lambda: kill_in_chunk_write(2, part="/samples/c/"), call=2)
        sampling.sample_to_store([{str(ckpt)!r}], {str(store)!r}, SamplingConfig(**{cfg!r}),
                                 {str(path)!r}, progress=False)
    """)
    assert tree(path) is None
    assert len(leftovers(path)) == 1
    s = SamplingConfig(**cfg)
    sample_to_store([ckpt], store, s, path, progress=False)
    ref = sample_to_store([ckpt], store, s, tmp_path / "ref.zarr", progress=False)
    assert open_samples(path).sizes["event"] == 3 * s.batch_size  # three blocks
    assert_same(path, ref)
    assert leftovers(path) == []
