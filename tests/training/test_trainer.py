"""The trainer: DDP strategy and processes per node, the bf16 warning."""

from __future__ import annotations

import pytest

from downpour.bench.runner import bf16_native
from downpour.config import TrainConfig
from downpour.training.trainer import processes_per_node, resolve_strategy, warn_slow_bf16


def test_strategy_is_ddp_tolerating_unused_parameters_with_several_processes():
    assert resolve_strategy(TrainConfig()) == "auto"
    assert resolve_strategy(TrainConfig(devices=2)) == "ddp_find_unused_parameters_true"
    assert resolve_strategy(TrainConfig(num_nodes=2)) == "ddp_find_unused_parameters_true"
    assert resolve_strategy(TrainConfig(devices=4, strategy="ddp")) == "ddp"
    assert resolve_strategy(TrainConfig(devices="auto", accelerator="cpu")) == "auto"
    assert processes_per_node(TrainConfig(devices="0,1", accelerator="gpu")) == 2
    assert processes_per_node(TrainConfig(devices="3")) == 3
    assert processes_per_node(TrainConfig(devices="auto", accelerator="cpu")) == 1


def test_bf16_warning_matches_the_hardware():
    cfg = TrainConfig(precision="bf16-mixed", accelerator="cpu")
    if bf16_native("cpu"):
        assert warn_slow_bf16(cfg) is False
    else:
        with pytest.warns(UserWarning, match="without native bf16 kernels"):
            assert warn_slow_bf16(cfg) is True
    assert warn_slow_bf16(TrainConfig(precision="32", accelerator="cpu")) is False
