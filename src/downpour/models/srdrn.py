"""SRDRN: the super-resolution deep residual network for daily precipitation.

Architecture (Wang et al. 2021, after SRResNet; docs/models.md, docs/presets.md#presets)::

    x (B, C, h, w) ─ conv k×k → F, PReLU ────────────────┐ (global skip)
      → R × [conv → BN → PReLU → conv → BN, + skip]       │
      → conv → BN ──────────────────────────────── + ─────┘
      → per upsampling factor f: conv k×k → U, nearest ×f, PReLU
      → conv k×k → 1 → non-negative head → (B, 1, h·s, w·s) mm/day

with F = ``filters`` (64 published), R = ``res_blocks`` (16), U =
``upsample_filters`` (256) and s = the product of the factors.

Design choices and why:

- Input: the normalised low-res predictors only (every channel), as
  published; static fields are not used, so the network is the published
  one and works on any predictor set.
- Upsampling stages are the published ones (conv, then nearest-neighbour
  ×f, then PReLU). Nearest upsampling works for any integer factor, so a
  scale factor with primes other than 2 and 3 (e.g. ×5 for the ERA5-Land
  example) gets one stage per prime with the same structure; sub-pixel
  convolution (PixelShuffle) would need ``U·f²`` conv outputs per stage
  (6,400 channels for ×5 at U = 256) for no gain in expressiveness here.
  :func:`upsample_factors` orders factors as published (×2 ×3 ×2 for ×12).
- PReLU has one slope per channel, initialised at 0 (the published Keras
  ``PReLU(alpha_initializer="zeros", shared_axes=[1, 2])``); convolutions
  keep their bias and batch norm its momentum of 0.5, as published.
- Output head ``"linear"`` (default, as published): the last conv predicts
  mm/day and the network returns ``relu(u)``. ``"log1p"``: the last conv
  predicts ``u`` ≈ log1p(rain) and the network returns
  ``expm1(clamp(u, 0, 8))`` in mm/day (8 ≈ 2,980 mm/day bounds ``expm1``
  under autocast). Either head gives exact zeros on dry cells and never
  negative rain, and the loss is computed on mm/day in both. On the demo
  data (45k-parameter network, 320 steps) the linear head had the lower
  tail error (test MAE above P95 7.4 vs 7.8 mm/day) and the right P99
  (23.3, truth 22.9; log1p head 20.9) at a similar overall MAE (1.32 vs 1.29).

Examples
--------
>>> import torch
>>> net = SRDRN(in_channels=2, filters=8, res_blocks=2, scale_factor=12, upsample_filters=8)
>>> net.factors
[2, 3, 2]
>>> y = net(torch.randn(3, 2, 4, 3))
>>> y.shape, bool((y >= 0).all())
(torch.Size([3, 1, 48, 36]), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from downpour.config import Config, SRDRNConfig
from downpour.core.errors import DownpourError
from downpour.models.registry import MODELS

__all__ = ["SRDRN", "SRDRNResBlock", "UpsampleStage", "upsample_factors"]

Output = Literal["linear", "log1p"]

#: Upper bound of the log1p head: expm1(8) ≈ 2,980 mm/day, above any daily record.
LOG1P_MAX = 8.0
_BN_MOMENTUM = 0.5  # Keras BatchNormalization(momentum=0.5): running = ½ running + ½ batch


def upsample_factors(scale: int, *, published_only: bool = False) -> list[int]:
    """Split a scale factor into upsampling stages, in the published order.

    2s and 3s alternate starting with 2 (×12 → [2, 3, 2], ×36 → [2, 3, 2, 3]);
    any other prime factor follows as its own stage, in increasing order
    (×5 → [5], ×10 → [2, 5]).

    Parameters
    ----------
    scale
        The scale factor (``data.scale_factor``), ≥ 1; 1 gives no stage.
    published_only
        Refuse factors that are not products of 2s and 3s (the published
        network's stages).

    Returns
    -------
    list[int]
        Factors whose product is ``scale``.

    Raises
    ------
    DownpourError
        ``scale < 1``, or a prime other than 2 and 3 with ``published_only``.

    Examples
    --------
    >>> upsample_factors(12), upsample_factors(6), upsample_factors(4), upsample_factors(10)
    ([2, 3, 2], [2, 3], [2, 2], [2, 5])
    """
    if int(scale) != scale or scale < 1:
        raise DownpourError(f"data.scale_factor must be an integer ≥ 1, got {scale}")
    rest, twos, threes = int(scale), 0, 0
    while rest % 2 == 0:
        rest, twos = rest // 2, twos + 1
    while rest % 3 == 0:
        rest, threes = rest // 3, threes + 1
    others: list[int] = []
    p = 5
    while rest > 1:
        while rest % p == 0:
            rest //= p
            others.append(p)
        p += 2
    if others and published_only:
        raise DownpourError(
            f"data.scale_factor={scale} has the prime factor(s) {others}; the published "
            "SRDRN upsamples by ×2 and ×3 stages only: choose a scale factor made of 2s and 3s "
            "(e.g. 6, 12, 18) or allow other stages"
        )
    factors: list[int] = []
    while twos or threes:
        if twos:
            factors.append(2)
            twos -= 1
        if threes:
            factors.append(3)
            threes -= 1
    return factors + others


class SRDRNResBlock(nn.Module):
    """Published residual block: ``x + BN(conv(PReLU(BN(conv(x)))))``, shape unchanged.

    Parameters
    ----------
    channels
        Channels in and out.
    kernel_size
        Odd kernel size of both convolutions.
    """

    def __init__(self, channels: int, *, kernel_size: int = 3) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.branch = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size, padding=pad),
            nn.BatchNorm2d(channels, momentum=_BN_MOMENTUM),
            nn.PReLU(channels, init=0.0),
            nn.Conv2d(channels, channels, kernel_size, padding=pad),
            nn.BatchNorm2d(channels, momentum=_BN_MOMENTUM),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, C, H, W)`` to ``(B, C, H, W)``."""
        return x + self.branch(x)


class UpsampleStage(nn.Module):
    """Published upsampling stage: conv → nearest ×``factor`` → PReLU.

    Parameters
    ----------
    in_channels, out_channels
        Channels in and out.
    factor
        Integer upsampling factor: ``(H, W)`` → ``(H·f, W·f)``.
    kernel_size
        Odd kernel size of the convolution.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, factor: int, kernel_size: int = 3
    ) -> None:
        super().__init__()
        self.factor = int(factor)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.act = nn.PReLU(out_channels, init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, C_in, H, W)`` to ``(B, C_out, H·f, W·f)``."""
        return self.act(F.interpolate(self.conv(x), scale_factor=self.factor, mode="nearest"))


@MODELS.register("srdrn")
class SRDRN(nn.Module):
    """Super-resolution deep residual network: low-res predictors → high-res rain (mm/day).

    Parameters
    ----------
    in_channels
        Predictor channels C (normalised, see :class:`~downpour.data.normalize.Normalization`).
    filters
        Width F of the input conv and of the residual trunk (64 published).
    res_blocks
        Residual blocks R (16 published).
    scale_factor
        High-res / low-res grid ratio s; stages from :func:`upsample_factors`.
    upsample
        Explicit upsampling factors instead (their product is the scale factor);
        with ``scale_factor`` too, the two must agree.
    upsample_filters
        Width U of the upsampling stages (256 published).
    kernel_size
        Odd kernel size of every convolution (3 published).
    output
        ``"linear"`` or ``"log1p"`` head (module docstring).

    Notes
    -----
    Input ``x (B, C, h, w)``; output ``(B, 1, h·s, w·s)`` precipitation in
    mm/day, ≥ 0. Parameters (k = kernel size, f_i the factors)::

        (C·k² + 1)·F + F                          input conv + PReLU
        + R · (2·(k²·F² + F) + 4·F + F)           residual blocks
        + (k²·F² + F) + 2·F                       post-block conv + BN
        + Σ_i (k²·U_in,i·U + U) + U               stages (U_in,0 = F, then U)
        + k²·U + 1                                output conv
    """

    def __init__(
        self,
        *,
        in_channels: int,
        filters: int = 64,
        res_blocks: int = 16,
        scale_factor: int | None = None,
        upsample: Sequence[int] | None = None,
        upsample_filters: int = 256,
        kernel_size: int = 3,
        output: Output = "linear",
    ) -> None:
        super().__init__()
        if in_channels < 1 or filters < 1 or res_blocks < 0 or upsample_filters < 1:
            raise ValueError(
                f"need in_channels, filters, upsample_filters ≥ 1 and res_blocks ≥ 0, got "
                f"{in_channels}, {filters}, {upsample_filters}, {res_blocks}"
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if output not in ("linear", "log1p"):
            raise ValueError(f"output must be 'linear' or 'log1p', got {output!r}")
        self.factors = _resolve_factors(scale_factor, upsample)
        self.scale_factor = _product(self.factors)
        self.in_channels = int(in_channels)
        self.output = output
        k, pad = kernel_size, kernel_size // 2
        self.head = nn.Sequential(
            nn.Conv2d(in_channels, filters, k, padding=pad), nn.PReLU(filters, init=0.0)
        )
        self.trunk = nn.Sequential(
            *(SRDRNResBlock(filters, kernel_size=k) for _ in range(res_blocks)),
            nn.Conv2d(filters, filters, k, padding=pad),
            nn.BatchNorm2d(filters, momentum=_BN_MOMENTUM),
        )
        widths = [filters] + [upsample_filters] * len(self.factors)
        self.upsample = nn.Sequential(
            *(
                UpsampleStage(widths[i], upsample_filters, factor=f, kernel_size=k)
                for i, f in enumerate(self.factors)
            )
        )
        self.out = nn.Conv2d(widths[-1], 1, k, padding=pad)

    @classmethod
    def from_config(cls, cfg: SRDRNConfig, *, in_channels: int, scale_factor: int) -> SRDRN:
        """Build from the ``srdrn`` config section and the store's scale factor.

        Raises
        ------
        DownpourError
            ``srdrn.upsample`` is set and its product is not ``data.scale_factor``.
        """
        return cls(
            in_channels=in_channels,
            filters=cfg.filters,
            res_blocks=cfg.res_blocks,
            scale_factor=scale_factor,
            upsample=cfg.upsample,
            upsample_filters=cfg.upsample_filters,
            kernel_size=cfg.kernel_size,
            output=cfg.output,
        )

    @classmethod
    def from_run(cls, cfg: Config, info: dict[str, Any]) -> SRDRN:
        """Build from a run's ``srdrn`` section and its store facts (channels, scale factor)."""
        return cls.from_config(
            cfg.srdrn, in_channels=int(info["x_channels"]), scale_factor=int(info["scale_factor"])
        )

    @classmethod
    def trained_channels_last(cls, cfg: Config) -> bool:
        """Return ``srdrn.channels_last``, or ``train.channels_last`` when that is unset."""
        s = cfg.srdrn.channels_last
        return bool(cfg.train.channels_last if s is None else s)

    def count_parameters(self, trainable_only: bool = False) -> int:
        """Return the number of parameters (all, or only those that require grad)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Downscale ``x (B, C, h, w)`` to rain ``(B, 1, h·s, w·s)`` in mm/day, ≥ 0."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have shape (B, {self.in_channels}, h, w), got {tuple(x.shape)}"
            )
        h = self.head(x)
        h = self.upsample(h + self.trunk(h))
        u = self.out(h).float()
        if self.output == "linear":
            return F.relu(u)
        return torch.expm1(u.clamp(0.0, LOG1P_MAX))


def _product(factors: Sequence[int]) -> int:
    out = 1
    for f in factors:
        out *= int(f)
    return out


def _resolve_factors(scale_factor: int | None, upsample: Sequence[int] | None) -> list[int]:
    if upsample is None:
        if scale_factor is None:
            raise ValueError("give scale_factor or upsample")
        return upsample_factors(scale_factor)
    factors = [int(f) for f in upsample]
    if any(f < 2 for f in factors):
        raise ValueError(f"upsampling factors must be ≥ 2, got {factors}")
    if scale_factor is not None and _product(factors) != scale_factor:
        raise DownpourError(
            f"srdrn.upsample={factors} multiplies to {_product(factors)}, not the store's "
            f"data.scale_factor {scale_factor}; set srdrn.upsample to null (derived from the "
            "scale factor) or to factors whose product matches"
        )
    return factors
