"""`downpour prepare` and `augment` (both write through StoreWriter) under SIGKILL.

Each test kills the writer midway in a subprocess (``tests/_faults.py``), checks
that every output path holds its old complete version (or nothing), reruns the
writer here and compares the result with one written in one go.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from _faults import leftovers, needs_sigkill, run_killed, tree
from _shared import QUARTER, QUARTER_JAN, copy_run
from downpour.config import AugmentConfig, load_config
from downpour.core.rundir import RunDir
from downpour.downscaling.augment import augment
from downpour.downscaling.prepare import prepare
from downpour.downscaling.samples import samples_dataset, write_samples

pytestmark = needs_sigkill


def run_files(run) -> dict:
    r = RunDir(run)
    return {"store": r.store, "card": r.card, "normalization": r.normalization, "config": r.config}


def open_(path) -> xr.Dataset:
    return xr.open_zarr(path, consolidated=False, chunks=None).load()


def assert_same_store(got, ref, ignore_attrs=("source",)) -> None:
    """Same variables, values, coordinates and attributes (``source`` names the run's files)."""
    a, b = open_(got), open_(ref)
    xr.testing.assert_equal(a, b)
    keep = lambda d: {k: v for k, v in d.items() if k not in ignore_attrs}  # noqa: E731
    assert keep(a.attrs) == keep(b.attrs)
    for name in a.variables:
        assert a[name].attrs == b[name].attrs, name


def card_of(run) -> dict:
    card = json.loads(RunDir(run).card.read_text())
    return {k: v for k, v in card.items() if k not in ("created", "source")}


def no_leftovers(run) -> None:
    for path in run_files(run).values():
        assert leftovers(path) == [], path


# ------------------------------------------------------------------ prepare

KILLS = {  # where the second prepare dies
    "store": "kill_in_chunk_write(75, part='/target/c/')",  # day 75 of 151 (of 485 in QUARTER)
    "card": "kill_in_file_write(lambda n: n.startswith('.card.json.'))",
    "config": "import os; kill_at(os, 'replace', when=lambda s, d: Path(d).name == 'config.yaml')",
}
#: The files that the killed prepare has already replaced, per kill point.
REPLACED = {
    "store": (),
    "card": ("store", "normalization"),
    "config": ("store", "normalization", "card"),
}


@pytest.mark.parametrize("where", list(KILLS))
def test_killed_prepare_keeps_each_old_file_and_a_rerun_is_complete(
    quarter_run, quarter_jan_run, tmp_path, where
):
    run = copy_run(quarter_run, tmp_path / "run")
    before = {k: tree(p) for k, p in run_files(run).items()}
    run_killed(f"""
        from pathlib import Path
        from downpour.config import load_config
        from downpour.downscaling.prepare import prepare
        R = Path({str(run)!r})
        {KILLS[where]}
        prepare(load_config("demo", {QUARTER_JAN!r}), R)
    """)
    for key, path in run_files(run).items():  # each file: old, or new and complete
        if key not in REPLACED[where]:
            assert tree(path) == before[key], key
        elif key == "store":
            assert_same_store(path, RunDir(quarter_jan_run).store)
        elif key == "card":
            assert card_of(run) == card_of(quarter_jan_run)
        else:
            assert path.read_text() == run_files(quarter_jan_run)[key].read_text(), key
    assert len(leftovers(run_files(run)[where])) == 1  # the killed write's temporary

    prepare(load_config("demo", QUARTER_JAN), run)
    assert_same_store(RunDir(run).store, RunDir(quarter_jan_run).store)
    assert card_of(run) == card_of(quarter_jan_run)
    for key in ("normalization", "config"):
        assert run_files(run)[key].read_text() == run_files(quarter_jan_run)[key].read_text()
    no_leftovers(run)


def test_killed_first_prepare_leaves_no_store(quarter_run, tmp_path):
    run = tmp_path / "run"
    run_killed(f"""
        from pathlib import Path
        from downpour.config import load_config
        from downpour.downscaling.prepare import prepare
        R = Path({str(run)!r})
        {KILLS["store"]}
        prepare(load_config("demo", {QUARTER!r}), R)
    """)
    assert all(tree(p) is None for p in run_files(run).values())
    prepare(load_config("demo", QUARTER), run)
    assert_same_store(RunDir(run).store, RunDir(quarter_run).store)
    assert card_of(run) == card_of(quarter_run)
    no_leftovers(run)


def test_a_killed_prepare_never_makes_the_old_config_reuse_a_new_store(quarter_run, tmp_path):
    """Killed between the store and ``config.yaml``: the store records its own data settings."""
    from downpour.downscaling.train import ensure_store

    run = copy_run(quarter_run, tmp_path / "run")
    run_killed(f"""
        from pathlib import Path
        from downpour.config import load_config
        from downpour.downscaling.prepare import prepare
        R = Path({str(run)!r})
        {KILLS["config"]}
        prepare(load_config("demo", {QUARTER_JAN!r}), R)
    """)
    store = ensure_store(load_config("demo", QUARTER), run, echo=lambda *a: None)
    assert_same_store(store, RunDir(quarter_run).store)  # what the QUARTER config asks for


# ------------------------------------------------------------------ augment


@pytest.fixture
def samples_of_heavy_days(tiny_store, tmp_path):
    """Samples of the tiny store's real heavy training days: member m = (m + 1) × the real day."""
    rows = np.flatnonzero(
        (tiny_store.split == "train") & tiny_store.is_heavy & ~tiny_store.is_synthetic
    )
    y = tiny_store.y[rows]
    samples = np.stack([y * (m + 1) for m in range(3)], axis=1).astype(np.float32)
    ds = samples_dataset(
        samples,
        y,
        tiny_store.mask,
        {"time": ("event", tiny_store.times[rows]), "checkpoint": ("member", ["a.ckpt"] * 3)},
        {"split": "train", "mode": "posterior", "checkpoints": '["a.ckpt"]', "seed": 0},
        "mm/day",
    )
    return write_samples(ds, tmp_path / "samples.zarr")


def test_killed_augment_keeps_the_old_augmented_store(tiny_store, samples_of_heavy_days, tmp_path):
    out = tmp_path / "augmented.zarr"
    augment(tiny_store.path, [samples_of_heavy_days], out, AugmentConfig(per_event=1),
            echo=lambda *a: None)  # fmt: skip
    before = tree(out)
    new = AugmentConfig(per_event=3)
    run_killed(f"""
        from downpour.config import AugmentConfig
        from downpour.downscaling.augment import augment
        from downpour.downscaling.store import StoreWriter
        # in the third synthetic day: the second block of days
        arm_at(StoreWriter, "write", lambda: kill_in_chunk_write(3, part="/target/c/"), call=2)
        augment({str(tiny_store.path)!r}, [{str(samples_of_heavy_days)!r}], {str(out)!r},
                AugmentConfig(per_event=3), echo=lambda *a: None)
    """)
    assert tree(out) == before
    assert len(leftovers(out)) == 1

    augment(tiny_store.path, [samples_of_heavy_days], out, new, echo=lambda *a: None)
    ref = tmp_path / "reference.zarr"
    augment(tiny_store.path, [samples_of_heavy_days], ref, new, echo=lambda *a: None)
    assert_same_store(out, ref, ignore_attrs=())
    events = open_(samples_of_heavy_days).sizes["event"]
    assert int(open_(out)["is_synthetic"].sum()) == 3 * events  # every member of every event
    assert leftovers(out) == []
