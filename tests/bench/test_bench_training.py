"""The training benchmark's FLOP count equals the hand count."""

from __future__ import annotations

import pytest
import torch

from downpour.bench.training import count_step_flops, fake_batch, fake_info, training_module
from downpour.config import load_config

TINY_SRDRN = [
    "srdrn.filters=8", "srdrn.res_blocks=2", "srdrn.upsample=[2,3]", "srdrn.upsample_filters=8",
]  # fmt: skip


def test_srdrn_step_flops_equal_the_hand_count():
    """Every conv costs 2·Cin·Cout·k²·H·W·B forward, as much again for each gradient."""
    cfg = load_config("srdrn", TINY_SRDRN)
    info = fake_info((48, 48), 6)
    batch = fake_batch(info, 3)
    module = training_module("srdrn", cfg, info)
    convs: list[float] = []

    def hook(mod: torch.nn.Conv2d, inp: tuple, out: torch.Tensor) -> None:
        b, c_out, h, w = out.shape
        k = mod.kernel_size[0] * mod.kernel_size[1]
        convs.append(2.0 * mod.in_channels * c_out * k * h * w * b)

    for m in module.net.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(hook)
    with torch.no_grad():
        module.net(batch["x"])
    forward = sum(convs)
    # backward: weight gradients of every conv, input gradients of all but the first
    # (the data needs none)
    expected = forward + forward + (forward - convs[0])
    assert count_step_flops("srdrn", module, batch) == pytest.approx(expected, rel=1e-12)
