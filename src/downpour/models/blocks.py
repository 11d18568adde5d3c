"""Building blocks of the convolutional networks: conv, residual, attention, FiLM, up/down.

Every block maps ``(B, C_in, H, W)`` feature maps to ``(B, C_out, H', W')``,
works in either memory format (``channels_last`` included) and under
autocast. Normalisation is batch norm: unlike group or instance norm it keeps
each sample's overall amplitude (how strong the storm is), which a
precipitation model must not normalise away.

Examples
--------
>>> import torch
>>> h = torch.randn(2, 8, 12, 10)
>>> CBAM(8)(h).shape
torch.Size([2, 8, 12, 10])
>>> DownBlock(8, 16, residual=True)(h).shape
torch.Size([2, 16, 6, 5])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CBAM",
    "ChannelAttention",
    "ConvBlock",
    "DownBlock",
    "FiLM",
    "ResBlock",
    "SpatialAttention",
    "UpBlock",
]


class ConvBlock(nn.Sequential):
    """3×3 convolution → batch norm → SiLU.

    Parameters
    ----------
    in_channels, out_channels
        Channels of the input and the output.
    stride
        2 halves the grid: ``(H, W)`` → ``(ceil(H/2), ceil(W/2))``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.SiLU(),
        )


class ResBlock(nn.Module):
    """Pre-activation bottleneck residual block: ``x + F(x)``, shape unchanged.

    ``F`` is (BN → SiLU → 1×1 conv to ``channels // reduction``) → (BN → SiLU →
    3×3 conv) → (BN → SiLU → 1×1 conv back to ``channels``). The bottleneck
    keeps a block at 768 channels near 0.6M parameters instead of the 10.6M
    of two full 3×3 convolutions. The last convolution starts at zero, so a
    fresh block is the identity and a deep stack trains like a shallow one
    (the "zero-init residual" trick).

    Parameters
    ----------
    channels
        Channels in and out.
    reduction
        Width of the bottleneck is ``max(channels // reduction, 1)``.
    """

    def __init__(self, channels: int, *, reduction: int = 4) -> None:
        super().__init__()
        mid = max(channels // reduction, 1)
        self.branch = nn.Sequential(
            nn.BatchNorm2d(channels),
            nn.SiLU(),
            nn.Conv2d(channels, mid, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.SiLU(),
            nn.Conv2d(mid, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.SiLU(),
            nn.Conv2d(mid, channels, 1),
        )
        last = self.last_conv
        nn.init.zeros_(last.weight)
        assert last.bias is not None
        nn.init.zeros_(last.bias)

    @property
    def last_conv(self) -> nn.Conv2d:
        """The residual branch's final convolution (zero at initialisation)."""
        conv = self.branch[-1]
        assert isinstance(conv, nn.Conv2d)
        return conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x + F(x)``, ``(B, C, H, W)``."""
        return x + self.branch(x)


class ChannelAttention(nn.Module):
    """CBAM channel attention: per-channel weights from avg- and max-pooled features.

    ``w = sigmoid(MLP(avgpool(h)) + MLP(maxpool(h)))`` with one MLP shared by
    both poolings; the output is ``h · w``.

    Parameters
    ----------
    channels
        Channels of the feature map.
    reduction
        Hidden width of the MLP is ``max(channels // reduction, 1)``.
    """

    def __init__(self, channels: int, *, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, channels, 1)
        )

    def weights(self, h: torch.Tensor) -> torch.Tensor:
        """Return the channel weights, ``(B, C, 1, 1)`` in (0, 1)."""
        pooled = torch.cat([h.mean(dim=(2, 3), keepdim=True), h.amax(dim=(2, 3), keepdim=True)])
        avg, mx = self.mlp(pooled).chunk(2, dim=0)
        return torch.sigmoid(avg + mx)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Return ``h`` reweighted per channel, same shape."""
        return h * self.weights(h)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: a per-pixel weight from channel-mean and channel-max maps.

    ``w = sigmoid(conv_k×k([mean_c(h), max_c(h)]))``; the output is ``h · w``.

    Parameters
    ----------
    kernel_size
        Odd size of the convolution (7 in CBAM).
    """

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def weights(self, h: torch.Tensor) -> torch.Tensor:
        """Return the pixel weights, ``(B, 1, H, W)`` in (0, 1)."""
        maps = torch.cat([h.mean(dim=1, keepdim=True), h.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(maps))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Return ``h`` reweighted per pixel, same shape."""
        return h * self.weights(h)


class CBAM(nn.Module):
    """Convolutional block attention (Woo et al., 2018): channel, then spatial attention.

    Parameters
    ----------
    channels
        Channels of the feature map; the output has the input's shape.
    reduction
        Reduction of the channel-attention MLP.
    kernel_size
        Kernel of the spatial-attention convolution.
    """

    def __init__(self, channels: int, *, reduction: int = 8, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction=reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Return the attended features, ``(B, C, H, W)``."""
        return self.spatial(self.channel(h))


class FiLM(nn.Module):
    """Feature-wise linear modulation ``h · (1 + γ(c)) + β(c)`` from a vector ``c``.

    Parameters
    ----------
    cond_dim
        Size of the conditioning vector ``c``, ``(B, cond_dim)``.
    channels
        Channels of the modulated feature map ``h``, ``(B, channels, H, W)``.
    """

    def __init__(self, cond_dim: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(cond_dim, 2 * channels)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Return the modulated features, same shape as ``h``."""
        gamma, beta = self.proj(cond)[:, :, None, None].chunk(2, dim=1)
        return h * (1 + gamma) + beta


class DownBlock(nn.Module):
    """One encoder level: ConvBlock (stride 1 or 2) [+ ResBlock] → dropout.

    Parameters
    ----------
    in_channels, out_channels
        Channels in and out.
    stride
        2 halves the grid (``ceil``), 1 keeps it.
    residual
        Add a :class:`ResBlock` after the convolution.
    dropout
        Dropout probability on the output.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 2,
        residual: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.conv = ConvBlock(in_channels, out_channels, stride=stride)
        self.res = ResBlock(out_channels) if residual else nn.Identity()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``(B, out_channels, H', W')``."""
        return self.drop(self.res(self.conv(x)))


class UpBlock(nn.Module):
    """One decoder stage: resize → concat extras → ConvBlock [+ ResBlock] → FiLM → [CBAM] → dropout.

    The input is resized bilinearly to an explicit ``size`` (about ×2) rather
    than by a fixed factor, so the stage lands exactly on the grid of the
    skip and the injected fields it is concatenated with: no crop or pad,
    no misalignment that grows stage by stage.

    Parameters
    ----------
    in_channels
        Channels of the incoming decoder features.
    extra_channels
        Channels of everything concatenated to them (skip, low-res fields).
    out_channels
        Channels out.
    cond_dim
        Size of the FiLM conditioning vector; ``None`` = no FiLM.
    residual
        Add a :class:`ResBlock` after the fusing convolution.
    attention
        Apply :class:`CBAM` after the modulation.
    dropout
        Dropout probability on the output (0 = none).
    """

    def __init__(
        self,
        in_channels: int,
        extra_channels: int,
        out_channels: int,
        *,
        cond_dim: int | None = None,
        residual: bool = False,
        attention: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.fuse = ConvBlock(in_channels + extra_channels, out_channels)
        self.res = ResBlock(out_channels) if residual else nn.Identity()
        self.film = FiLM(cond_dim, out_channels) if cond_dim is not None else None
        self.attn = CBAM(out_channels) if attention else nn.Identity()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(
        self,
        h: torch.Tensor,
        size: tuple[int, int],
        extras: Sequence[torch.Tensor] = (),
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return ``(B, out_channels, *size)``.

        Parameters
        ----------
        h
            ``(B, in_channels, h, w)``.
        size
            Output grid ``(H', W')``.
        extras
            Maps already on ``size``, concatenated along channels.
        cond
            ``(B, cond_dim)`` FiLM conditioning (required when ``cond_dim`` was given).
        """
        h = F.interpolate(h, size=size, mode="bilinear", align_corners=False)
        if extras:
            h = torch.cat([h, *extras], dim=1)
        h = self.res(self.fuse(h))
        if self.film is not None:
            if cond is None:
                raise ValueError("this UpBlock has FiLM; pass cond=(B, cond_dim)")
            h = self.film(h, cond)
        return self.drop(self.attn(h))
