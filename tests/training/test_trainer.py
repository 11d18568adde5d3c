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


def test_validation_cadence_reaches_the_trainer(tmp_path):
    from downpour.config import load_config
    from downpour.downscaling.srdrn_module import srdrn_train_config
    from downpour.training.trainer import build_trainer

    trainer = build_trainer(TrainConfig(val_every=3, epochs=6), tmp_path, kind="toy",
                            enable_progress_bar=False)  # fmt: skip
    assert trainer.check_val_every_n_epoch == 3
    short = build_trainer(TrainConfig(val_every=4, epochs=2), tmp_path, kind="toy",
                          enable_progress_bar=False)  # fmt: skip
    assert short.check_val_every_n_epoch == 2  # the last epoch is always validated
    demo = load_config("demo")
    assert demo.train.val_every == 5 and srdrn_train_config(demo).val_every == 8
    inherited = srdrn_train_config(load_config("demo", ["srdrn.val_every=null"]))
    assert inherited.val_every == demo.train.val_every  # None: the train section decides
