"""Building blocks: shapes, attention weights against a hand-written reference, identities."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from downpour.models.blocks import (
    CBAM,
    ChannelAttention,
    ConvBlock,
    DownBlock,
    FiLM,
    ResBlock,
    SpatialAttention,
    UpBlock,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("shape", [(2, 8, 12, 10), (1, 3, 7, 5), (3, 16, 1, 1)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_cbam_keeps_shape(shape, channels_last):
    h = torch.randn(shape)
    att = CBAM(shape[1])
    if channels_last:
        h, att = (
            h.contiguous(memory_format=torch.channels_last),
            att.to(memory_format=torch.channels_last),
        )
    out = att(h)
    assert out.shape == h.shape
    assert torch.isfinite(out).all()


def test_channel_attention_matches_reference():
    h = torch.randn(2, 16, 9, 7) * 3
    att = ChannelAttention(16, reduction=4)
    w = att.weights(h)
    assert w.shape == (2, 16, 1, 1)
    assert ((w > 0) & (w < 1)).all()
    # reference: shared MLP (two 1×1 convs = two matmuls) on avg and max pooling
    c1, c2 = att.mlp[0], att.mlp[2]

    def mlp(v):  # v: (B, C)
        return F.relu(v @ c1.weight[:, :, 0, 0].T + c1.bias) @ c2.weight[:, :, 0, 0].T + c2.bias

    ref = torch.sigmoid(mlp(h.mean(dim=(2, 3))) + mlp(h.flatten(2).max(dim=2).values))
    torch.testing.assert_close(w[:, :, 0, 0], ref)
    torch.testing.assert_close(att(h), h * ref[:, :, None, None])


def test_spatial_attention_matches_reference():
    h = torch.randn(2, 5, 11, 8)
    att = SpatialAttention(7)
    w = att.weights(h)
    assert w.shape == (2, 1, 11, 8)
    assert ((w > 0) & (w < 1)).all()
    maps = torch.stack([h.mean(dim=1), h.max(dim=1).values], dim=1)
    ref = torch.sigmoid(F.conv2d(maps, att.conv.weight, att.conv.bias, padding=3))
    torch.testing.assert_close(w, ref)


def test_cbam_is_channel_then_spatial():
    h = torch.randn(2, 8, 6, 6)
    att = CBAM(8)
    after_channel = h * att.channel.weights(h)
    torch.testing.assert_close(att(h), after_channel * att.spatial.weights(after_channel))


@pytest.mark.parametrize("channels", [1, 4, 32])
def test_resblock_is_identity_at_zero_last_weights(channels):
    h = torch.randn(2, channels, 9, 6)
    block = ResBlock(channels)
    torch.testing.assert_close(block(h), h, rtol=0, atol=0)  # fresh block: identity
    with torch.no_grad():
        nn.init.normal_(block.last_conv.weight)
    assert not torch.allclose(block(h), h)
    with torch.no_grad():
        block.last_conv.weight.zero_()
        block.last_conv.bias.zero_()
    torch.testing.assert_close(block(h), h, rtol=0, atol=0)


@pytest.mark.parametrize(("size", "stride", "expected"), [((9, 6), 2, (5, 3)), ((8, 8), 1, (8, 8))])
def test_conv_and_down_block_shapes(size, stride, expected):
    h = torch.randn(2, 3, *size)
    assert ConvBlock(3, 7, stride=stride)(h).shape == (2, 7, *expected)
    down = DownBlock(3, 7, stride=stride, residual=True, dropout=0.5)
    assert down(h).shape == (2, 7, *expected)


def test_film_reference_and_identity():
    film = FiLM(3, 4)
    h, c = torch.randn(2, 4, 5, 5), torch.randn(2, 3)
    gamma_beta = c @ film.proj.weight.T + film.proj.bias
    gamma, beta = gamma_beta[:, :4, None, None], gamma_beta[:, 4:, None, None]
    torch.testing.assert_close(film(h, c), h * (1 + gamma) + beta)
    with torch.no_grad():
        film.proj.weight.zero_()
        film.proj.bias.zero_()
    torch.testing.assert_close(film(h, c), h)


@pytest.mark.parametrize("attention", [False, True])
@pytest.mark.parametrize("residual", [False, True])
def test_up_block_lands_on_requested_size(attention, residual):
    up = UpBlock(6, 5, 4, cond_dim=3, residual=residual, attention=attention, dropout=0.1)
    h = torch.randn(2, 6, 5, 4)
    extras = [torch.randn(2, 3, 9, 8), torch.randn(2, 2, 9, 8)]
    out = up(h, (9, 8), extras, torch.randn(2, 3))
    assert out.shape == (2, 4, 9, 8)
    with pytest.raises(ValueError, match="cond"):
        up(h, (9, 8), extras)
