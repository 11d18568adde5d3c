"""The radar sequence of a config, its time split, the training windows and their shuffle."""

import numpy as np
import pytest

from downpour.config import load_config
from downpour.core.errors import DownpourError
from downpour.nowcast.datamodule import NowcastDataModule
from downpour.nowcast.events import load_nowcast_source, split_blocks


def test_split_blocks_are_contiguous_and_cover_the_axis():
    blocks = split_blocks(20, 0.25, 0.25)
    assert blocks == {"train": slice(0, 10), "val": slice(10, 15), "test": slice(15, 20)}


def test_windows_never_cross_the_split_boundary(hourly):
    da = hourly(20)
    cfg = load_config(None, ["nowcast.n_frames=2", "nowcast.val_fraction=0.25",
                             "nowcast.test_fraction=0.25"])  # fmt: skip
    dm = NowcastDataModule(da, cfg.nowcast)
    t = da["time"].values
    # train frames 0..9: windows of 3 frames start at 0..7; val frames 10..14: starts 10..12
    assert len(dm.train_set) == 8 and len(dm.val_set) == 3
    train_last = max(int(dm.train_set[i]["time"]) for i in range(len(dm.train_set)))
    assert train_last == t[9].astype(np.int64)
    val_inputs = [float(dm.val_set[i]["inputs"].min()) for i in range(len(dm.val_set))]
    assert min(val_inputs) == pytest.approx(np.log1p(10.0))  # first val input is frame 10
    assert dm.stats["max"] == 9.0 and dm.stats["frames"] == 10  # stats of the training block only


def test_empty_validation_period_is_a_clear_error(hourly):
    cfg = load_config(None, ["nowcast.n_frames=4", "nowcast.val_fraction=0.1",
                             "nowcast.test_fraction=0.1"])  # fmt: skip
    with pytest.raises(DownpourError, match=r"val split .*nowcast\.val_fraction"):
        NowcastDataModule(hourly(20), cfg.nowcast)


def test_embedded_source_is_accumulated_to_the_step():
    cfg = load_config(None, ["nowcast.embedded_hours=12", "nowcast.embedded_size=16",
                             "nowcast.embedded_step_minutes=30"])  # fmt: skip
    da = load_nowcast_source(cfg.nowcast)
    assert da.sizes == {"time": 13, "y": 16, "x": 16}  # 00:00 (partial) .. 12:00
    assert da.attrs["step_minutes"] == 60 and not bool(da["complete"].values[0])
