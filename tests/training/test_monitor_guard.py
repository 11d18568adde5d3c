"""A monitored metric that averages nothing is refused; a NaN one stops training."""

import math

import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping

from downpour.config import Config, TrainConfig
from downpour.core.errors import DownpourError
from downpour.training.base import BaseModule, ratio
from downpour.training.trainer import build_trainer


def _module(monitor: str) -> BaseModule:
    return BaseModule(Config(), {}, train_cfg=TrainConfig(monitor=monitor))


def test_an_empty_tail_is_refused_when_monitored():
    what = {"val/MAE_tail": "truth above the training P95"}
    with pytest.raises(DownpourError, match=r"val/MAE_tail is undefined: .*above the training P95"):
        _module("val/MAE_tail").check_monitor({"val/MAE_tail": torch.tensor(0.0)}, what)
    _module("val/MAE_tail").check_monitor({"val/MAE_tail": torch.tensor(3.0)}, what)
    _module("val/MAE").check_monitor({"val/MAE_tail": torch.tensor(0.0)}, what)  # not monitored
    assert math.isnan(float(ratio(torch.tensor(0.0), torch.tensor(0.0))))


def test_early_stopping_stops_on_a_non_finite_metric(tmp_path):
    trainer = build_trainer(TrainConfig(), tmp_path, kind="cvae", enable_progress_bar=False)
    (stop,) = [cb for cb in trainer.callbacks if isinstance(cb, EarlyStopping)]
    assert stop.check_finite
    should_stop, reason = stop._evaluate_stopping_criteria(torch.tensor(float("nan")))
    assert should_stop and "not finite" in reason
