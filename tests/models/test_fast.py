"""Fast paths of a network: channels_last and torch.compile change speed, not results."""

from __future__ import annotations

import torch

from downpour.models.fast import prepare_net, to_memory_format
from downpour.models.srdrn import SRDRN


def _srdrn() -> SRDRN:
    torch.manual_seed(0)
    return SRDRN(in_channels=2, filters=8, res_blocks=2, scale_factor=6, upsample_filters=8).eval()


def test_to_memory_format_only_touches_4d_floats():
    x = torch.randn(2, 3, 5, 4)
    cl = to_memory_format(x, True)
    assert cl.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous(
        memory_format=torch.channels_last
    )
    torch.testing.assert_close(cl, x, rtol=0, atol=0)
    mask = torch.ones(2, 1, 5, 4, dtype=torch.bool)
    assert to_memory_format(mask, True) is mask  # bool masks stay as they are
    times = torch.arange(2)
    assert to_memory_format(times, True) is times
    assert to_memory_format(x, False) is x


def test_channels_last_network_gives_the_same_output():
    x = torch.randn(3, 2, 8, 8)
    ref = _srdrn()(x)
    net = prepare_net(_srdrn(), channels_last=True)
    conv = net.head[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    out = net(to_memory_format(x, True))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert list(net.state_dict()) == list(_srdrn().state_dict())


def test_compile_keeps_state_dict_names_and_output():
    x = torch.randn(2, 2, 8, 8)
    ref = _srdrn()(x)
    net = prepare_net(_srdrn(), compile=True)
    assert list(net.state_dict()) == list(_srdrn().state_dict())  # checkpoints interchangeable
    torch.testing.assert_close(net(x), ref, rtol=1e-4, atol=1e-5)
