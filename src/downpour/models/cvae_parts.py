"""The parts of the conditional VAE: pyramid encoders, conditional prior, decoder, output heads.

:class:`~downpour.models.cvae.CVAE` assembles them; its module docstring
gives the architecture and the reasons behind it. Here:

- :func:`level_sizes` and :class:`PyramidEncoder`: the 4-level encoders of
  (x, s) and of (y, s);
- :class:`ConditionalPrior`: p(z | x) as a small MLP on ``h_x``;
- :class:`Decoder`: from (z, h_x, skips, x) to the high-res grid, z by FiLM
  at every stage;
- :class:`OutputHead` (relu, softplus or hurdle) and :func:`wet_cells`, the
  wet/dry decision of the hurdle head.

Examples
--------
>>> level_sizes((24, 24))
[(24, 24), (12, 12), (6, 6), (3, 3)]
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from downpour.config import ModelConfig
from downpour.models.blocks import DownBlock, UpBlock

__all__ = [
    "LEVELS",
    "LOGVAR_RANGE",
    "ConditionalPrior",
    "Decoder",
    "OutputHead",
    "PyramidEncoder",
    "WetRule",
    "level_sizes",
    "wet_cells",
]


LEVELS = 4  # encoder levels (base, ×2, ×4, ×8 channels) = decoder stages


LOGVAR_RANGE = (-10.0, 10.0)


_INJECTED_STAGES = {"every": LEVELS, "first": 1, "first_two": 2, "none": 0}


def level_sizes(shape: tuple[int, int], levels: int = LEVELS) -> list[tuple[int, int]]:
    """Return the grid of each pyramid level: ``(ceil(H / 2^k), ceil(W / 2^k))``.

    This is what a 3×3, stride-2, padding-1 convolution produces level by level.

    Examples
    --------
    >>> level_sizes((156, 132))
    [(156, 132), (78, 66), (39, 33), (20, 17)]
    """
    h, w = shape
    return [(-(-h // 2**k), -(-w // 2**k)) for k in range(levels)]


class PyramidEncoder(nn.Module):
    """Convolutional pyramid → a vector, plus the feature map of every level.

    Level 0 keeps the grid with ``base`` channels; levels 1-3 halve it
    (stride 2) and double the channels (``base · 2^k``). The top level is
    pooled (mean and max — the max keeps the storm's peak) and projected.

    Parameters
    ----------
    in_channels
        Channels of the input map.
    base
        Channels of level 0.
    out_dim
        Size of the output vector.
    residual, dropout
        See :class:`~downpour.models.blocks.DownBlock`.
    """

    def __init__(
        self,
        in_channels: int,
        base: int,
        out_dim: int,
        *,
        residual: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.channels = [base * 2**k for k in range(LEVELS)]
        ins = [in_channels, *self.channels[:-1]]
        self.levels = nn.ModuleList(
            DownBlock(i, o, stride=1 if k == 0 else 2, residual=residual, dropout=dropout)
            for k, (i, o) in enumerate(zip(ins, self.channels, strict=True))
        )
        self.proj = nn.Linear(2 * self.channels[-1], out_dim)

    def forward(self, inp: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Encode ``(B, in_channels, H, W)``.

        Returns
        -------
        (Tensor, list of Tensor)
            The vector ``(B, out_dim)`` and the level maps, level 0 first:
            ``(B, base · 2^k, ceil(H / 2^k), ceil(W / 2^k))``.
        """
        feats = []
        h = inp
        for level in self.levels:
            h = level(h)
            feats.append(h)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return self.proj(pooled), feats


class ConditionalPrior(nn.Module):
    """Learned prior p(z | x) = N(μ_p, σ_p²) from ``h_x`` by a two-layer MLP.

    The last layer starts at zero, so the prior starts as N(0, I).

    Parameters
    ----------
    d_x, d_z
        Sizes of ``h_x`` and of z.
    """

    def __init__(self, d_x: int, d_z: int) -> None:
        super().__init__()
        hidden = max(d_x, d_z)
        self.net = nn.Sequential(nn.Linear(d_x, hidden), nn.SiLU(), nn.Linear(hidden, 2 * d_z))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, h_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(μ_p, log σ_p²)``, each ``(B, d_z)``, log σ² clamped to [-10, 10]."""
        mu, logvar = self.net(h_x).chunk(2, dim=1)
        return mu, logvar.clamp(*LOGVAR_RANGE)


class OutputHead(nn.Module):
    """1×1 convolution to precipitation in log1p space (≥ 0).

    Parameters
    ----------
    channels
        Channels of the final decoder features.
    kind
        ``"relu"``: ``relu(conv)``; ``"softplus"``: ``softplus(conv)``;
        ``"hurdle"``: ``p_wet = sigmoid(conv₁)``, ``intensity = softplus(conv₂) + eps``,
        and ``ŷ = p_wet · intensity`` while training, ``intensity`` where
        ``p_wet ≥ 0.5`` and exactly 0 elsewhere in eval mode.
    eps
        Floor of the hurdle intensity (log1p space), keeps it strictly positive.
    """

    def __init__(
        self, channels: int, kind: Literal["relu", "softplus", "hurdle"], *, eps: float = 1e-4
    ) -> None:
        super().__init__()
        self.kind = kind
        self.eps = eps
        self.conv = nn.Conv2d(channels, 2 if kind == "hurdle" else 1, 1)

    def forward(
        self, h: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Return ``(ŷ, p_wet, intensity)``, each ``(B, 1, H, W)``; the last two only for hurdle."""
        out = self.conv(h)
        if self.kind == "relu":
            return F.relu(out), None, None
        if self.kind == "softplus":
            return F.softplus(out), None, None
        logit, raw = out[:, :1], out[:, 1:]
        p_wet = torch.sigmoid(logit)
        intensity = F.softplus(raw) + self.eps
        if self.training:
            y_hat = p_wet * intensity
        else:
            y_hat = torch.where(p_wet >= 0.5, intensity, torch.zeros_like(intensity))
        return y_hat, p_wet, intensity


class Decoder(nn.Module):
    """D(z, h_x, skips, x): small linear seed, four up-stages modulated by z, output head.

    Parameters
    ----------
    cfg
        Model options (``d_z``, ``d_x``, ``base_filters``, ``skips``,
        ``injection``, ``res_blocks``, ``attention``, ``dropout``, ``head``).
    x_channels
        Channels of the low-res predictors injected into the stages.
    sizes
        Grids of the encoder levels, level 0 = (H, W) first (:func:`level_sizes`).
    """

    def __init__(self, cfg: ModelConfig, *, x_channels: int, sizes: list[tuple[int, int]]) -> None:
        super().__init__()
        base = cfg.base_filters
        self.sizes = sizes
        self.seed_channels = 2 * base
        self.seed_size = (-(-sizes[-1][0] // 2), -(-sizes[-1][1] // 2))
        self.seed = nn.Linear(
            cfg.d_z + cfg.d_x, self.seed_channels * self.seed_size[0] * self.seed_size[1]
        )
        self.use_skips = cfg.skips
        n_inject = _INJECTED_STAGES[cfg.injection]
        # stage i (0-based) ends on encoder level j = LEVELS - 1 - i
        self.inject = [i < n_inject for i in range(LEVELS)]
        stages = []
        c_in = self.seed_channels
        for i in range(LEVELS):
            j = LEVELS - 1 - i
            c_out = max(base * 2**j // 2, base)
            extra = (base * 2**j if cfg.skips else 0) + (x_channels if self.inject[i] else 0)
            stages.append(
                UpBlock(
                    c_in,
                    extra,
                    c_out,
                    cond_dim=cfg.d_z,
                    residual=cfg.res_blocks,
                    attention=cfg.attention and i >= LEVELS - 2,
                    dropout=cfg.dropout if j > 0 else 0.0,
                )
            )
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        self.head = OutputHead(c_in, cfg.head)

    def forward(
        self,
        z: torch.Tensor,
        h_x: torch.Tensor,
        skips: list[torch.Tensor],
        x: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Decode to ``(ŷ, p_wet, intensity)`` on the full grid.

        Parameters
        ----------
        z
            ``(B, d_z)``.
        h_x
            ``(B, d_x)``.
        skips
            E_x level maps, level 0 first (used when ``cfg.skips``).
        x
            ``(B, C, h, w)`` low-res predictors (network space).

        Returns
        -------
        (Tensor, Tensor or None, Tensor or None)
            ``(B, 1, H, W)`` each; see :class:`OutputHead`.
        """
        seed = self.seed(torch.cat([z.to(h_x.dtype), h_x], dim=1))
        h = seed.reshape(z.shape[0], self.seed_channels, *self.seed_size)
        for i, stage in enumerate(self.stages):
            j = LEVELS - 1 - i
            size = self.sizes[j]
            extras = []
            if self.use_skips:
                extras.append(skips[j])
            if self.inject[i]:
                extras.append(F.interpolate(x, size=size, mode="bilinear", align_corners=False))
            h = stage(h, size, extras, z)
        return self.head(h)


WetRule = Literal["threshold", "calibrated", "bernoulli"]


def wet_cells(
    p_wet: torch.Tensor,
    rule: WetRule,
    *,
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Decide the wet cells of hurdle-head members.

    Parameters
    ----------
    p_wet
        ``(B, 1, H, W)`` wet probabilities.
    rule
        ``"threshold"`` (``p ≥ 0.5``), ``"calibrated"`` (per member, the
        ``round(Σ_mask p)`` cells of highest ``p`` inside ``mask``; ties at the
        cut are all wet) or ``"bernoulli"`` (``U < p`` with ``U`` from ``generator``).
    mask
        ``(H, W)`` bool; cells outside are never wet under ``"calibrated"``.
    generator
        Random source of ``"bernoulli"``.

    Returns
    -------
    Tensor
        ``(B, 1, H, W)`` bool.
    """
    if rule == "threshold":
        return p_wet >= 0.5
    if rule == "bernoulli":
        u = torch.rand(p_wet.shape, generator=generator, device=p_wet.device, dtype=p_wet.dtype)
        return u < p_wet
    if rule != "calibrated":
        raise ValueError(f"unknown wet rule {rule!r}; valid: threshold, calibrated, bernoulli")
    b = p_wet.shape[0]
    valid = (
        torch.ones(p_wet.shape[-2:], dtype=torch.bool, device=p_wet.device)
        if mask is None
        else mask.to(p_wet.device).bool()
    )
    p = p_wet.reshape(b, -1)
    v = valid.reshape(-1)
    pv = torch.where(v, p, torch.full_like(p, -1.0))  # invalid cells sort last
    k = torch.round((p * v).sum(dim=1)).long().clamp(0, int(v.sum()))
    ordered = torch.sort(pv, dim=1, descending=True).values
    cut = ordered.gather(1, (k - 1).clamp_min(0)[:, None])  # the k-th largest p
    wet = (pv >= cut) & v & (k[:, None] > 0)
    return wet.reshape(p_wet.shape)
