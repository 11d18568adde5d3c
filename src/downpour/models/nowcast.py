"""Residual U-Net for radar nowcasting: the next frame as the last frame plus a change.

The network sees the last ``n_frames`` radar frames (in the transformed space
of :func:`downpour.data.rain.rain_transform`: log1p or dBR) and predicts the
change ``Δ`` over the last one; the target time enters as its sin/cos
encoding (hour of day, day of year, :func:`downpour.data.rain.temporal_encoding`)
through a FiLM modulation of the bottleneck. The output is floored at the
value of "no rain" so rain never turns negative.

Examples
--------
>>> net = NowcastUNet(n_frames=4, base_features=8, depth=2)
>>> frames, enc = torch.rand(2, 4, 30, 41), torch.rand(2, 4)
>>> net(frames, enc).shape
torch.Size([2, 1, 30, 41])
>>> bool((net(frames, enc) - frames[:, -1:]).abs().max() < 0.1)  # close to persistence
True
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from downpour.config import NowcastConfig
from downpour.data.rain import DBR_FLOOR, no_rain_value
from downpour.models.blocks import FiLM

__all__ = ["INPUT_SCALING", "NowcastUNet", "floor_straight_through", "unet_kwargs"]

#: The 1×1 output head starts at this fraction of PyTorch's default initialisation.
_HEAD_INIT_SCALE = 0.1
#: Input scaling ``(offset, scale)`` of each rain transform: the network sees
#: ``(frames − offset) / scale``, about unit range for rain up to ~100 mm/h.
INPUT_SCALING = {"log": (0.0, 1.0), "dbr": (DBR_FLOOR, 10.0), "none": (0.0, 10.0)}


def unet_kwargs(nc: NowcastConfig) -> dict[str, Any]:
    """Size, floor and input scaling of a ``nowcast`` section's U-Net, as constructor keywords.

    Examples
    --------
    >>> from downpour.config import NowcastConfig
    >>> unet_kwargs(NowcastConfig(transform="dbr"))["floor"]
    -15.0
    """
    offset, scale = INPUT_SCALING[nc.transform]
    return {
        "n_frames": nc.n_frames,
        "base_features": nc.base_features,
        "depth": nc.depth,
        "floor": no_rain_value(nc.transform),
        "offset": offset,
        "scale": scale,
    }


def floor_straight_through(x: torch.Tensor, floor: float) -> torch.Tensor:
    """``max(x, floor)`` in the forward pass, the identity in the backward pass.

    A plain clamp has zero gradient below the floor, so a pixel predicted
    dry (below the floor) that should turn wet (rain advecting in) could
    never be pushed back up. The straight-through floor passes the gradient
    of the clamped value on to ``x``: where the truth is also dry the loss
    gradient is zero anyway, where it is wet it pushes ``x`` up.

    Parameters
    ----------
    x
        Any shape.
    floor
        The value of "no rain" in the network's space (0 for log1p, −15 dBR).

    Returns
    -------
    torch.Tensor
        Same shape, every value ``≥ floor``.
    """
    return x + (x.clamp_min(floor) - x).detach()


class _DoubleConv(nn.Sequential):
    """(3×3 conv → SiLU) × 2; no normalisation, so batch 1 trains like batch 16."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.SiLU(),
        )


class NowcastUNet(nn.Module):
    """U-Net that predicts the change of the next radar frame over the last one.

    ``out = max(last + scale · Δ(frames, enc), floor)`` with ``Δ`` a U-Net of
    ``depth`` 2× down/up-sampling levels (max-pool down, bilinear up,
    concatenated skips; channels ``base_features · 2^level``), conditioned on
    the temporal encoding of the target time by FiLM at the bottleneck. The
    1×1 output head starts small (0.1 × the default initialisation), so an
    untrained network is close to persistence while every layer gets
    gradients from the first step (a zero head would stall them).
    The grid is padded (edge values repeated) to a multiple of ``2^depth``
    and cropped back, so any ``H × W`` works. No normalisation layers: the
    result of one item does not depend on the rest of the batch.

    Parameters
    ----------
    n_frames
        Input frames (``nowcast.n_frames``).
    base_features
        Channels of the first level (``nowcast.base_features``).
    depth
        Number of down-sampling levels (``nowcast.depth``).
    temporal_dim
        Size of the temporal encoding (4: sin/cos hour, sin/cos day).
    floor
        Value of 0 mm/h in the input space (:func:`downpour.data.rain.no_rain_value`).
    offset, scale
        The network sees ``(frames − offset) / scale`` and its change is
        multiplied by ``scale`` (e.g. ``offset=-15, scale=10`` for dBR).
    extra_channels
        Further input channels given to :meth:`residual` as ``extra``, already
        scaled by the caller (the advection model's advected frame and motion).

    Notes
    -----
    Input ``frames`` ``(B, n_frames, H, W)`` oldest first, ``enc``
    ``(B, temporal_dim)``; output ``(B, 1, H, W)``, ``≥ floor``.
    """

    def __init__(
        self,
        *,
        n_frames: int = 4,
        base_features: int = 40,
        depth: int = 3,
        temporal_dim: int = 4,
        floor: float = 0.0,
        offset: float = 0.0,
        scale: float = 1.0,
        extra_channels: int = 0,
    ) -> None:
        super().__init__()
        if n_frames < 1 or base_features < 1 or depth < 1:
            raise ValueError(
                f"NowcastUNet needs n_frames, base_features, depth ≥ 1, got "
                f"{n_frames}, {base_features}, {depth}"
            )
        if scale <= 0:
            raise ValueError(f"NowcastUNet: scale must be > 0, got {scale}")
        self.n_frames, self.depth, self.temporal_dim = n_frames, depth, temporal_dim
        self.floor, self.offset, self.scale = float(floor), float(offset), float(scale)
        self.extra_channels = int(extra_channels)
        ch = [base_features * 2**level for level in range(depth + 1)]
        self.stem = _DoubleConv(n_frames + self.extra_channels, ch[0])
        self.down = nn.ModuleList(_DoubleConv(ch[i], ch[i + 1]) for i in range(depth))
        self.film = FiLM(temporal_dim, ch[depth])
        self.up = nn.ModuleList(_DoubleConv(ch[i + 1] + ch[i], ch[i]) for i in range(depth))
        self.head = nn.Conv2d(ch[0], 1, 1)
        with torch.no_grad():  # start close to persistence, but not at it: a zero head
            self.head.weight.mul_(_HEAD_INIT_SCALE)  # would give the body no gradient
            self.head.bias.zero_()

    @classmethod
    def from_config(cls, nc: NowcastConfig) -> NowcastUNet:
        """Build the U-Net of a ``nowcast`` section (input scaling and floor from its transform)."""
        return cls(**unet_kwargs(nc))

    def residual(
        self, frames: torch.Tensor, enc: torch.Tensor, extra: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return the predicted change ``Δ`` (before scaling), ``(B, 1, H, W)``.

        ``extra`` ``(B, extra_channels, H, W)`` joins the scaled frames as input.
        """
        if frames.ndim != 4 or frames.shape[1] != self.n_frames:
            raise ValueError(
                f"frames must be (B, {self.n_frames}, H, W), got {tuple(frames.shape)}"
            )
        if enc.shape != (frames.shape[0], self.temporal_dim):
            raise ValueError(
                f"enc must be (B, {self.temporal_dim}) = ({frames.shape[0]}, "
                f"{self.temporal_dim}), got {tuple(enc.shape)}"
            )
        h, w = frames.shape[-2:]
        m = 2**self.depth
        ph, pw = (-h) % m, (-w) % m
        x = (frames - self.offset) / self.scale
        if self.extra_channels:
            if extra is None or extra.shape[1] != self.extra_channels:
                got = None if extra is None else tuple(extra.shape)
                raise ValueError(f"extra must be (B, {self.extra_channels}, H, W), got {got}")
            x = torch.cat([x, extra.to(x.dtype)], dim=1)
        if ph or pw:
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="replicate")
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(F.max_pool2d(skips[-1], 2)))
        y = self.film(skips.pop(), enc.to(x.dtype))
        for block in reversed(self.up):
            skip = skips.pop()
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], dim=1))
        delta = self.head(y)
        return delta[..., ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w]

    def forward(self, frames: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        """Predict the next frame.

        Parameters
        ----------
        frames
            ``(B, n_frames, H, W)``, transformed rain (oldest first).
        enc
            ``(B, temporal_dim)``, temporal encoding of the target time.

        Returns
        -------
        torch.Tensor
            ``(B, 1, H, W)``: ``max(frames[:, -1:] + scale · Δ, floor)``
            (the floor passes gradients straight through,
            :func:`floor_straight_through`).
        """
        last = frames[:, -1:]
        out = last + self.scale * self.residual(frames, enc)
        return floor_straight_through(out, self.floor)
