import math

import pytest
import torch

from downpour.config import TrainConfig
from downpour.training.optim import configure_optimizers, cosine_factor


def test_cosine_factor_values():
    # warm-up 4 steps: 1/4, 2/4, 3/4, 4/4; then cosine from 1 to min_ratio over 10 steps
    got = [cosine_factor(s, warmup_steps=4, total_steps=14, min_ratio=0.1) for s in range(4)]
    assert got == [0.25, 0.5, 0.75, 1.0]
    assert cosine_factor(4, warmup_steps=4, total_steps=14, min_ratio=0.1) == pytest.approx(1.0)
    mid = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))  # half-way: 0.55
    assert cosine_factor(9, warmup_steps=4, total_steps=14, min_ratio=0.1) == pytest.approx(mid)
    assert cosine_factor(14, warmup_steps=4, total_steps=14, min_ratio=0.1) == pytest.approx(0.1)
    assert cosine_factor(99, warmup_steps=4, total_steps=14, min_ratio=0.1) == pytest.approx(0.1)


def lrs(conf, steps, metric=None):
    if isinstance(conf, dict):
        opt, scheds = conf["optimizer"], [conf["lr_scheduler"]] if "lr_scheduler" in conf else []
    else:
        (opt,), scheds = conf
    out = []
    for step in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        for s in scheds:
            if s["interval"] == "step":
                s["scheduler"].step()
            elif metric is not None and (step + 1) % 2 == 0:  # 2 steps per epoch
                s["scheduler"].step(metric)
    return out


def test_cosine_with_warmup_schedule():
    p = [torch.nn.Parameter(torch.zeros(1))]
    conf = configure_optimizers(p, TrainConfig(lr=1.0, min_lr=0.0, epochs=3, warmup_epochs=1), 2)
    got = lrs(conf, 6)
    # steps/epoch 2: warm-up 0.5, 1.0; cosine over 4 steps: 1, cos²-ish 0.8536, 0.5, 0.1464
    assert got == pytest.approx([0.5, 1.0, 1.0, 0.8535534, 0.5, 0.1464466], rel=1e-6)


def test_plateau_with_warmup_keeps_reductions():
    p = [torch.nn.Parameter(torch.zeros(1))]
    cfg = TrainConfig(
        lr=1.0,
        scheduler="plateau",
        warmup_epochs=1,
        plateau_patience=0,
        plateau_factor=0.5,
        min_lr=0.1,
        epochs=10,
    )
    conf = configure_optimizers(p, cfg, 2)
    _, scheds = conf
    assert [s["interval"] for s in scheds] == ["step", "epoch"] and scheds[1][
        "monitor"
    ] == "val/MAE_tail"
    got = lrs(conf, 12, metric=1.0)
    # warm-up 0.5, 1.0; the metric never improves, patience 0: the first epoch-end sets the
    # best, every later one halves the lr, down to min_lr 0.1
    assert got == pytest.approx([0.5, 1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125, 0.1, 0.1])


def test_no_scheduler():
    p = [torch.nn.Parameter(torch.zeros(1))]
    conf = configure_optimizers(p, TrainConfig(lr=0.3, scheduler="none"), 5)
    assert set(conf) == {"optimizer"} and conf["optimizer"].param_groups[0]["lr"] == 0.3
