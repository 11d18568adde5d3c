"""SRDRN: the super-resolution deep residual network for daily precipitation.

Architecture (Wang et al. 2021, after SRResNet; docs/models.md, docs/presets.md#presets)::

    x (B, C, h, w) ─ conv k×k → F, PReLU ────────────────┐ (global skip)
      → R × [conv → BN → PReLU → conv → BN, + skip]       │
      → conv → BN ──────────────────────────────── + ─────┘
      → per upsampling factor f: conv k×k → U, nearest ×f, PReLU
      → conv k×k → Q' → monotone non-negative heads → (B, Q', h·s, w·s) mm/day

with F = ``filters`` (64 published), R = ``res_blocks`` (16), U =
``upsample_filters`` (256), s = the product of the factors and Q' the
number of heads: 1 (the published deterministic network) or Q quantile
levels τ_1 < … < τ_Q (``srdrn.quantiles``, after Najafi et al. 2026,
"Multi-Quantile Regression for Extreme Precipitation Downscaling").

This module is long because the network, its quantile heads and its
residual-over-bicubic mode share one forward pass and one set of
constructors (``from_config``/``from_run``), which the registry and
checkpoints rebuild as one class.

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
- Quantile heads: the last conv has one output channel per τ, each its own
  kernel and bias (Q separate last convolutions computed in one call), so
  the heads share the trunk and nothing else. Monotone by construction
  without starving a head of gradient: the lowest head is the head above
  (``relu(u_1)`` or the log1p form), every higher head adds a non-negative
  increment that has a gradient everywhere, ``q_k = q_{k-1} +
  softplus(u_k)`` in mm/day, added one head at a time, so
  ``0 ≤ q_1 ≤ q_2 ≤ … ≤ q_Q`` holds in floating point too (rounding is
  monotone). Clamping or sorting instead would cut the gradient of the
  heads that cross. :func:`median_head` picks the head scored as the
  point forecast.
- Residual mode ``"bicubic"``: the network predicts the correction to the
  bicubic interpolation (:func:`~downpour.models.baselines.bicubic`,
  clamped ≥ 0) of the low-res precipitation channel in mm/day, de-normalised
  with the store's :class:`~downpour.data.normalize.Normalization` (and kept
  inside ``[0, RAIN_MAX]``, so no input can make the interpolation NaN); the
  lowest head is ``relu(bicubic + u_1)``, so a zero correction gives the
  bicubic field exactly, and the other heads add increments as above.
  A network that re-learns the identity from scratch wastes its budget
  where interpolation is already good. Linear output only.

Examples
--------
>>> import torch
>>> net = SRDRN(in_channels=2, filters=8, res_blocks=2, scale_factor=12, upsample_filters=8)
>>> net.factors
[2, 3, 2]
>>> y = net(torch.randn(3, 2, 4, 3))
>>> y.shape, bool((y >= 0).all())
(torch.Size([3, 1, 48, 36]), True)
>>> q = SRDRN(in_channels=2, filters=8, res_blocks=1, scale_factor=2, upsample_filters=8,
...           quantiles=[0.5, 0.9, 0.99])(torch.randn(3, 2, 4, 3))
>>> q.shape, bool((q[:, 1:] >= q[:, :-1]).all()), median_head([0.5, 0.9, 0.99])
(torch.Size([3, 3, 8, 6]), True, 0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from downpour.config import Config, SRDRNConfig
from downpour.core.errors import DownpourError
from downpour.data.normalize import Normalization
from downpour.models.baselines import bicubic
from downpour.models.registry import MODELS

__all__ = [
    "LOG1P_MAX",
    "RAIN_MAX",
    "SRDRN",
    "SRDRNResBlock",
    "UpsampleStage",
    "median_head",
    "residual_inputs",
    "upsample_factors",
]

Output = Literal["linear", "log1p"]
Residual = Literal["none", "bicubic"]

#: Upper bound of the log1p head: expm1(8) ≈ 2,980 mm/day, above any daily record.
LOG1P_MAX = 8.0
#: Bound of the de-normalised precipitation that residual mode interpolates (expm1(8) mm/day):
#: above any daily record, and it keeps an absurd input from turning bicubic's inf − inf into NaN.
RAIN_MAX = math.expm1(LOG1P_MAX)
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


def median_head(quantiles: Sequence[float]) -> int:
    """Index of the median head: the τ closest to 0.5 (the lower of two equally close).

    It is the head scored as the point forecast (MAE, ``val/MAE``); 0 for a
    deterministic network (no quantiles).

    Examples
    --------
    >>> median_head([0.5, 0.95, 0.99]), median_head([0.1, 0.45, 0.55, 0.9]), median_head([])
    (0, 1, 0)
    """
    taus = [float(t) for t in quantiles]
    if not taus:
        return 0
    return min(range(len(taus)), key=lambda i: (abs(taus[i] - 0.5), taus[i]))


def residual_inputs(info: dict[str, Any]) -> dict[str, Any]:
    """Return the store facts residual mode needs: normalisation and precipitation channel.

    Parameters
    ----------
    info
        Store facts (:class:`~downpour.downscaling.datamodule.StoreInfo`):
        ``normalization`` and ``precip_channels`` (derived from the
        normalisation's ``x_log1p`` when absent).

    Returns
    -------
    dict
        ``normalization`` (:class:`~downpour.data.normalize.Normalization`) and
        ``precip_channel`` (the first precipitation channel), keyword
        arguments of :class:`SRDRN`.

    Raises
    ------
    DownpourError
        The store has no precipitation predictor channel.
    """
    norm_dict = info.get("normalization")
    if not norm_dict:
        raise DownpourError(
            "srdrn.residual=bicubic needs the store's normalisation to read the low-res "
            "precipitation channel, and these data facts have none; run `downpour prepare` again"
        )
    norm = Normalization.from_dict(norm_dict)
    channels = info.get("precip_channels")
    if channels is None:
        channels = [i for i, log in enumerate(norm.x_log1p) if log]
    if not channels:
        raise DownpourError(
            "srdrn.residual=bicubic interpolates the low-res precipitation predictor, but the "
            f"store has no precipitation channel (channels: {', '.join(norm.channels)}); set "
            "srdrn.residual=none, or give a predictor with kind: precip in data.predictors (or "
            "none, to coarsen the target) and run `downpour prepare` again"
        )
    return {"normalization": norm, "precip_channel": int(channels[0])}


def one_channel(normalization: Normalization, channel: int) -> Normalization:
    """Return the normalisation of predictor ``channel`` alone (for :func:`bicubic_rain`)."""
    c = int(channel)
    return Normalization(
        channels=(normalization.channels[c],),
        x_log1p=(normalization.x_log1p[c],),
        x_mean=(normalization.x_mean[c],),
        x_std=(normalization.x_std[c],),
        y_mean=normalization.y_mean,
        y_std=normalization.y_std,
        units=normalization.units,
    )


def bicubic_rain(x: torch.Tensor, channel: int, norm: Normalization, scale: int) -> torch.Tensor:
    """Bicubic interpolation of the precipitation channel of normalised predictors, mm/day ≥ 0.

    Parameters
    ----------
    x
        Normalised predictors ``(B, C, h, w)``.
    channel, norm
        The precipitation channel and its one-channel normalisation (:func:`one_channel`).
    scale
        Scale factor.

    Returns
    -------
    torch.Tensor
        ``(B, 1, h·scale, w·scale)`` float32: the channel de-normalised, clamped to
        ``[0, RAIN_MAX]``, then :func:`~downpour.models.baselines.bicubic`.
    """
    rain = norm.denormalize_x(x[:, channel : channel + 1].float()).clamp(0.0, RAIN_MAX)
    return bicubic(rain, scale)  # type: ignore[return-value]


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
    quantiles
        Quantile levels τ_1 < … < τ_Q in (0, 1), one head each; empty: one
        deterministic head.
    residual
        ``"none"`` or ``"bicubic"``: predict the correction to the bicubic
        interpolation of the precipitation channel (linear output only).
    normalization, precip_channel
        Residual mode only: the predictors' normalisation and the index of
        the precipitation channel (:func:`residual_inputs`).

    Notes
    -----
    Input ``x (B, C, h, w)``; output ``(B, Q', h·s, w·s)`` precipitation in
    mm/day, ≥ 0 and non-decreasing along dim 1, with Q' = ``max(1, Q)``
    (``(B, 1, h·s, w·s)`` for the deterministic network). Parameters
    (k = kernel size, f_i the factors)::

        (C·k² + 1)·F + F                          input conv + PReLU
        + R · (2·(k²·F² + F) + 4·F + F)           residual blocks
        + (k²·F² + F) + 2·F                       post-block conv + BN
        + Σ_i (k²·U_in,i·U + U) + U               stages (U_in,0 = F, then U)
        + Q'·(k²·U + 1)                           output conv (one per head)
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
        quantiles: Sequence[float] = (),
        residual: Residual = "none",
        normalization: Normalization | None = None,
        precip_channel: int | None = None,
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
        taus = tuple(float(t) for t in quantiles)
        if any(not 0.0 < t < 1.0 for t in taus) or any(
            b <= a for a, b in zip(taus, taus[1:], strict=False)
        ):
            raise ValueError(f"quantiles must be strictly increasing in (0, 1), got {list(taus)}")
        self.quantiles = taus
        self.n_heads = max(1, len(taus))
        self.residual = residual
        self._precip: tuple[int, Normalization] | None = None
        if residual == "bicubic":
            if output != "linear":
                raise ValueError("residual='bicubic' needs output='linear'")
            if normalization is None or precip_channel is None:
                raise ValueError("residual='bicubic' needs normalization and precip_channel")
            c = int(precip_channel)
            if not 0 <= c < in_channels:
                raise ValueError(f"precip_channel {c} is not one of the {in_channels} channels")
            self._precip = (c, one_channel(normalization, c))
        elif residual != "none":
            raise ValueError(f"residual must be 'none' or 'bicubic', got {residual!r}")
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
        self.out = nn.Conv2d(widths[-1], self.n_heads, k, padding=pad)

    @classmethod
    def from_config(
        cls,
        cfg: SRDRNConfig,
        *,
        in_channels: int,
        scale_factor: int,
        normalization: Normalization | None = None,
        precip_channel: int | None = None,
    ) -> SRDRN:
        """Build from the ``srdrn`` config section and the store's scale factor.

        ``normalization`` and ``precip_channel`` are needed with
        ``srdrn.residual=bicubic`` (:func:`residual_inputs`).

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
            quantiles=cfg.quantiles,
            residual=cfg.residual,
            normalization=normalization,
            precip_channel=precip_channel,
        )

    @classmethod
    def from_run(cls, cfg: Config, info: dict[str, Any]) -> SRDRN:
        """Build from a run's ``srdrn`` section and its store facts.

        Uses ``x_channels`` and ``scale_factor``, and in residual mode
        ``normalization`` and ``precip_channels`` (:func:`residual_inputs`),
        so a checkpoint alone rebuilds the network.

        Raises
        ------
        DownpourError
            ``srdrn.residual`` is set and the store has no precipitation predictor.
        """
        extra = residual_inputs(info) if cfg.srdrn.residual != "none" else {}
        return cls.from_config(
            cfg.srdrn,
            in_channels=int(info["x_channels"]),
            scale_factor=int(info["scale_factor"]),
            **extra,
        )

    @classmethod
    def trained_channels_last(cls, cfg: Config) -> bool:
        """Return ``srdrn.channels_last``, or ``train.channels_last`` when that is unset."""
        s = cfg.srdrn.channels_last
        return bool(cfg.train.channels_last if s is None else s)

    def count_parameters(self, trainable_only: bool = False) -> int:
        """Return the number of parameters (all, or only those that require grad)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def interpolated(self, x: torch.Tensor) -> torch.Tensor:
        """Bicubic interpolation of the precipitation channel of ``x``, mm/day, ≥ 0.

        Parameters
        ----------
        x
            Normalised predictors ``(B, C, h, w)``.

        Returns
        -------
        torch.Tensor
            ``(B, 1, h·s, w·s)`` float32: the channel de-normalised
            (:meth:`~downpour.data.normalize.Normalization.denormalize_x`),
            clamped to ``[0, RAIN_MAX]``, then :func:`~downpour.models.baselines.bicubic`.
        """
        if self._precip is None:
            raise RuntimeError("interpolated() needs residual='bicubic'")
        return bicubic_rain(x, *self._precip, self.scale_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Downscale ``x (B, C, h, w)`` to rain ``(B, Q', h·s, w·s)`` in mm/day (class Notes)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have shape (B, {self.in_channels}, h, w), got {tuple(x.shape)}"
            )
        h = self.head(x)
        h = self.upsample(h + self.trunk(h))
        u = self.out(h).float()
        first = u[:, :1] if self.n_heads > 1 else u
        if self._precip is not None:
            first = first + self.interpolated(x)
        if self.output == "linear":
            q = F.relu(first)
        else:
            q = torch.expm1(first.clamp(0.0, LOG1P_MAX))
        if self.n_heads == 1:
            return q
        heads = [q]
        for k in range(1, self.n_heads):  # one head at a time: monotone in floating point
            heads.append(heads[-1] + F.softplus(u[:, k : k + 1]))
        return torch.cat(heads, dim=1)


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
