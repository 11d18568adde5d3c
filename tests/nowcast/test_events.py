"""Several radar files: events, windows that never span two files, holdout by event, dry splits."""

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from downpour.config import load_config
from downpour.core.errors import DownpourError
from downpour.nowcast.datamodule import NowcastDataModule, pad_collate, training_stats
from downpour.nowcast.events import load_events, load_nowcast_source, split_events


def _write(path, start, n, value, h=6, w=7, wet=True):
    times = np.datetime64(start, "ns") + np.arange(n) * np.timedelta64(5, "m")
    vals = np.full((n, h, w), value if wet else 0.0, dtype=np.float32)
    vals[:, 0, 0] = np.nan  # outside the radar
    ds = xr.Dataset(
        {"precip_rate": (("time", "y", "x"), vals, {"units": "mm/h"})},
        coords={"time": times, "y": 2000.0 * np.arange(h), "x": 2000.0 * np.arange(w)},
    )
    ds["x"].attrs["units"] = "m"
    ds.to_netcdf(path)
    return path


def _cfg(tmp_path, files, *extra):
    target = "[" + ",".join(f"{{path: {p}, variable: precip_rate}}" for p in files) + "]"
    over = [
        f"nowcast.target={target}",
        "nowcast.step_minutes=5",
        "nowcast.n_frames=3",
        "nowcast.rollout_steps=2",
        *extra,
    ]
    return load_config(None, over)


@pytest.fixture
def three_files(tmp_path):
    """a: 1 mm/h, b: 5 mm/h starting right after a ends (contiguous times), c: 9 mm/h."""
    a = _write(tmp_path / "a.nc", "2021-07-01T00:00", 12, 1.0)
    b = _write(tmp_path / "b.nc", "2021-07-01T01:00", 12, 5.0)
    c = _write(tmp_path / "c.nc", "2021-08-01T00:00", 12, 9.0)
    return a, b, c


def test_windows_never_span_two_files_even_when_their_times_join(tmp_path, three_files):
    d = _write(tmp_path / "d.nc", "2021-09-01T00:00", 12, 7.0)
    cfg = _cfg(
        tmp_path,
        [*three_files, d],
        "nowcast.holdout=event",
        "nowcast.val_events=[c]",
        "nowcast.test_events=[d]",
    )
    events = load_events(cfg.nowcast)
    assert list(events) == ["a", "b", "c", "d"]
    dm = NowcastDataModule(events, cfg.nowcast)
    # 12 frames per file → 12 − (3 + 2) + 1 = 8 windows each; the four windows
    # starting in a's last frames would run on into b, whose times join a's
    assert len(dm.train_set) == 16
    for i in range(len(dm.train_set)):
        item = dm.train_set[i]
        frames = np.concatenate([item["inputs"].numpy(), item["targets"].numpy()])
        values = np.unique(np.round(np.expm1(frames[:, 1:, 1:]), 4))
        assert values.size == 1 and values[0] in (1.0, 5.0)  # every frame from one file


def test_event_holdout_keeps_whole_events_out_of_training(tmp_path, three_files):
    cfg = _cfg(
        tmp_path,
        three_files,
        "nowcast.holdout=event",
        "nowcast.val_events=[b]",
        "nowcast.test_events=[c]",
    )
    splits = split_events(load_events(cfg.nowcast), cfg.nowcast)
    assert {k: list(v) for k, v in splits.items()} == {
        "train": ["a"],
        "val": ["b"],
        "test": ["c"],
    }
    dm = NowcastDataModule(load_events(cfg.nowcast), cfg.nowcast)
    assert dm.stats["max"] == pytest.approx(1.0)  # only event a's rain set the range
    targets = np.stack([dm.train_set[i]["targets"][:, 1:, 1:].numpy() for i in range(8)])
    np.testing.assert_allclose(np.expm1(targets), 1.0, rtol=1e-6)


def test_a_dry_validation_event_is_a_warning_that_names_it(tmp_path):
    a = _write(tmp_path / "wet1.nc", "2021-07-01T00:00", 12, 2.0)
    b = _write(tmp_path / "dry.nc", "2021-07-02T00:00", 12, 0.0, wet=False)
    c = _write(tmp_path / "wet2.nc", "2021-07-03T00:00", 12, 3.0)
    cfg = _cfg(
        tmp_path,
        [a, b, c],
        "nowcast.holdout=event",
        "nowcast.val_events=[dry]",
        "nowcast.test_events=[wet2]",
    )
    dm = NowcastDataModule(load_events(cfg.nowcast), cfg.nowcast)
    assert dm.wet_fraction["val"] == 0.0 and dm.wet_fraction["train"] == pytest.approx(1.0)
    assert len(dm.warnings) == 1
    assert "val split is almost dry" in dm.warnings[0] and "(events: dry)" in dm.warnings[0]


def test_event_names_are_checked_with_the_valid_ones_listed(tmp_path, three_files):
    with pytest.raises(Exception, match=r"unknown event\(s\) \['d'\]; valid names: a, b, c"):
        _cfg(
            tmp_path,
            three_files,
            "nowcast.holdout=event",
            "nowcast.val_events=[d]",
            "nowcast.test_events=[c]",
        )
    with pytest.raises(Exception, match="needs nowcast.val_events and nowcast.test_events"):
        _cfg(tmp_path, three_files, "nowcast.holdout=event")
    cfg = _cfg(tmp_path, three_files)
    with pytest.raises(DownpourError, match=r"lists 3 events: name one with --event \(a, b, c\)"):
        load_nowcast_source(cfg.nowcast)
    assert float(np.nanmax(load_nowcast_source(cfg.nowcast, event="c").values)) == 9.0


def test_per_file_coarsening_brings_radars_to_one_grid(tmp_path):
    a = _write(tmp_path / "fine.nc", "2021-07-01T00:00", 6, 1.0, h=8, w=10)
    b = _write(tmp_path / "coarse.nc", "2021-07-02T00:00", 6, 1.0, h=4, w=5)
    over = [
        f"nowcast.target=[{{path: {a}, variable: precip_rate, coarsen: 2}}, "
        f"{{path: {b}, variable: precip_rate}}]",
        "nowcast.step_minutes=5",
    ]
    events = load_events(load_config(None, over).nowcast)
    assert events["fine"].shape[1:] == events["coarse"].shape[1:] == (4, 5)


def test_grids_of_different_sizes_are_padded_as_no_data():
    import torch

    small = {
        "inputs": torch.ones(2, 3, 4),
        "targets": torch.ones(1, 3, 4),
        "valid": torch.ones(1, 3, 4, dtype=torch.bool),
        "motion": torch.ones(2, 3, 4),
    }
    big = {k: torch.ones(v.shape[0], 5, 6, dtype=v.dtype) for k, v in small.items()}
    batch = pad_collate([small, big], fill=-15.0)
    assert batch["inputs"].shape == (2, 2, 5, 6)
    assert float(batch["inputs"][0, 0, 4, 5]) == -15.0 and float(batch["motion"][0, 0, 4, 5]) == 0
    assert int(batch["valid"][0].sum()) == 12 and int(batch["valid"][1].sum()) == 30


def test_training_stats_pool_the_events():
    def block(values):
        t = np.datetime64("2021-07-01T00:00", "ns") + np.arange(len(values)) * np.timedelta64(
            5, "m"
        )
        v = np.asarray(values, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32)
        return xr.DataArray(v, dims=("time", "y", "x"), coords={"time": t})

    stats = training_stats([block([0.0, 2.0]), block([4.0, 6.0, 8.0])])
    assert stats["max"] == 8.0 and stats["frames"] == 5
    assert stats["mean"] == pytest.approx(4.0)  # (0 + 2 + 4 + 6 + 8) / 5, 4 cells each
    assert stats["mean_max"] == 8.0 and stats["wet_fraction"] == pytest.approx(0.8)


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "configs" / "radar_events.yaml"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.mark.skipif(
    not (SHARED / "radar_knmi_20100826.nc").is_file(), reason="../shared/data absent"
)
def test_the_real_events_example_loads_seven_radars_at_2_km_and_holds_three_out():
    from downpour.nowcast.verify import _pixel_km

    cfg = load_config(str(EXAMPLE))
    events = load_events(cfg.nowcast)
    assert len(events) == 7
    np.testing.assert_allclose([_pixel_km(da) for da in events.values()], 2.0, rtol=1e-3)
    assert events["radar_rmi_20210704"].shape[1:] == (350, 350)  # 700 × 700 at 1 km, ×2
    splits = split_events(events, cfg.nowcast)
    assert list(splits["test"]) == ["radar_knmi_20100826", "radar_mch_20160711",
                                    "radar_fmi_20160928"]  # fmt: skip
    assert not set(splits["train"]) & set(splits["test"])
    assert all(da.attrs["step_minutes"] == 5 for da in events.values())
