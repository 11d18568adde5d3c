"""SRDRNModule: its loss, and the train settings it derives from the srdrn section."""

from __future__ import annotations

import pytest
import torch

from _shared import QUARTER_JAN
from downpour.config import load_config
from downpour.downscaling.datamodule import read_store_info
from downpour.downscaling.srdrn_module import SRDRNModule, srdrn_train_config

pytestmark = pytest.mark.usefixtures("one_thread")


def test_loss_is_the_masked_intensity_weighted_mae(quarter_jan_run):
    cfg = load_config("srdrn", QUARTER_JAN)
    module = SRDRNModule(cfg, read_store_info(quarter_jan_run))
    pred = torch.tensor([[[[30.0, 100.0], [1.0, 50.0]]]])
    true = torch.tensor([[[[40.0, 80.0], [0.0, 80.0]]]])
    mask = torch.tensor([[[[True, True], [True, False]]]])
    # w = clip(y / 36.6, 0.1, 2.0): 40/36.6, 2.0 (80/36.6 = 2.19 clipped), 0.1; no tail boost
    expected = (10 * 40 / 36.6 + 20 * 2.0 + 1 * 0.1) / 3
    assert float(module.loss(pred, true, mask)) == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(17.00965, rel=1e-5)


def test_srdrn_train_settings():
    cfg = load_config("demo", ["srdrn.epochs=5", "train.monitor=val/MAE_prior"])
    t = srdrn_train_config(cfg)
    s = cfg.srdrn
    assert (t.epochs, t.batch_size, t.lr, t.scheduler) == (5, s.batch_size, s.lr, s.scheduler)
    assert (t.flips, t.noise, t.max_batches_per_epoch, t.patience) == (False, 0.0, None, 6)
    assert t.monitor == "val/MAE_tail" and t.seed == cfg.train.seed
    assert srdrn_train_config(cfg, epochs=9).patience == 10


def test_srdrn_channels_last_overrides_train():
    from downpour.downscaling.srdrn_module import srdrn_train_config

    def resolved(*over: str) -> bool:
        return srdrn_train_config(load_config("demo", list(over))).channels_last

    assert resolved("train.channels_last=true", "srdrn.channels_last=null") is True
    assert resolved("train.channels_last=true", "srdrn.channels_last=false") is False
    assert resolved("train.channels_last=false", "srdrn.channels_last=true") is True
    assert resolved("train.channels_last=false") is True  # srdrn.channels_last decides
    assert resolved() is True
