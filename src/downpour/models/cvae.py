"""Conditional VAE that generates high-res precipitation from low-res predictors.

Architecture (DESIGN.md §5)::

    x ─bilinear→ (H, W) ┐
    s ──────────────────┴→ E_x: 4-level pyramid ─→ h_x (d_x)   + skips (the level maps)
    y, s ─────────────────→ E_y: same pyramid ───→ h_y (d_y)
    q(z | x, y) = N(μ, σ²)       linear on [h_x, h_y]
    p(z | x)    = N(0, I)        or a small MLP on h_x ("conditional")
    D(z, h_x, skips, x): linear seed (2·base × ⌈H/16⌉ × ⌈W/16⌉) from [z, h_x],
        4 stages: resize to the next E_x level's grid → concat [skip] [x] →
        ConvBlock [+ ResBlock] → FiLM(z) → [CBAM, last two stages] → dropout
        → output head (relu | softplus | hurdle) on exactly (H, W)

Design choices and why:

- z reaches every decoder stage through FiLM (``h · (1 + γ(z)) + β(z)``),
  not only through the seed. The design notes' v2 decoder, with x injected at
  every block, learnt to ignore z (sample diversity 0.002); modulating every
  stage by z alone (not by ``h_x``) keeps a direct path from z to the output
  whatever the injection setting.
- Skips come only from E_x: a skip from E_y would not exist in prior mode,
  so y can reach the output only through z.
- The seed is small: its linear layer has ``(d_z + d_x) · 2·base · H0 · W0``
  weights (3.9M for v3), where the notes' fully connected layer to
  256×39×33 held ~110M. The first stage widens it to 4·base channels.
- Decoder stages land exactly on the grids of the E_x levels (``ceil(H/2^k)``)
  by resizing to an explicit size, so skips and injected fields never need
  cropping and the last stage is exactly (H, W).
- Residual blocks are bottlenecks (see :class:`~downpour.models.blocks.ResBlock`):
  with the pyramid reaching 8·base = 768 channels in v3, two full 3×3
  convolutions per block would cost 10.6M parameters at that level alone.
- Decoder channels are 4·base, 2·base, base, base (half the matching
  encoder level, at least base): the decoder mostly fuses what the skips
  already carry, and this keeps v3 near 19M parameters.
- Attention (CBAM) sits at the last two stages (H/2 and H): that is where
  heavy-rain cores are placed; at H/8 a 7×7 spatial kernel already spans
  the whole map.
- No dropout after the last stage: dropped features there become pixel
  noise in ŷ that the loss would read as drizzle.
- μ, log σ² and the reparameterisation are computed in float32 even under
  autocast, so the KL term does not see bfloat16 rounding; log σ² is
  clamped to [-10, 10].
- The conditional prior's last layer starts at zero: training begins from
  N(0, I) and moves away only as the KL term asks.

Examples
--------
>>> import torch
>>> from downpour.config import Config, ModelConfig
>>> cfg = ModelConfig(d_z=4, base_filters=4, d_x=8, d_y=8, head="hurdle", prior="conditional")
>>> net = CVAE(cfg, x_channels=2, s_channels=3, shape=(24, 24), scale_factor=6)
>>> x, s, y = torch.randn(2, 2, 4, 4), torch.randn(2, 3, 24, 24), torch.rand(2, 1, 24, 24)
>>> out = net(x, s, y)
>>> out.y_hat.shape, out.mu.shape, out.p_wet.shape
(torch.Size([2, 1, 24, 24]), torch.Size([2, 4]), torch.Size([2, 1, 24, 24]))
>>> net.sample(x, s, 5).shape
torch.Size([2, 5, 24, 24])
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from downpour.config import Config, ModelConfig
from downpour.models.blocks import DownBlock, UpBlock
from downpour.models.outputs import CVAEOutput
from downpour.models.registry import MODELS

__all__ = [
    "CVAE",
    "ConditionalPrior",
    "Decoder",
    "OutputHead",
    "PyramidEncoder",
    "WetRule",
    "wet_cells",
]

Mode = Literal["posterior", "prior"]

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


@MODELS.register("cvae")
class CVAE(nn.Module):
    """Conditional VAE for high-res precipitation given low-res predictors and static fields.

    Parameters
    ----------
    cfg
        Architecture options (:class:`~downpour.config.ModelConfig`).
    x_channels
        Predictor channels C.
    s_channels
        Static channels S (mask, elevation, lat/lon, ...); may be 0.
    shape
        High-res grid (H, W).
    scale_factor
        H / h = W / w; must divide both.

    Notes
    -----
    Inputs: ``x (B, C, H/f, W/f)`` predictors in network space,
    ``s (B, S, H, W)`` static fields, ``y (B, 1, H, W)`` target in log1p
    space. Outputs are :class:`~downpour.models.outputs.CVAEOutput`. See the
    module docstring for the architecture and the reasons behind it.
    """

    @classmethod
    def from_run(cls, cfg: Config, info: dict[str, Any]) -> CVAE:
        """Build from a run's ``model`` section and its store facts (channels, grid, scale)."""
        return cls(
            cfg.model,
            x_channels=int(info["x_channels"]),
            s_channels=int(info["s_channels"]),
            shape=(int(info["shape"][0]), int(info["shape"][1])),
            scale_factor=int(info["scale_factor"]),
        )

    @classmethod
    def trained_channels_last(cls, cfg: Config) -> bool:
        """Return ``train.channels_last``: the memory format the cVAE trained in."""
        return bool(cfg.train.channels_last)

    def __init__(
        self,
        cfg: ModelConfig,
        *,
        x_channels: int,
        s_channels: int,
        shape: tuple[int, int],
        scale_factor: int,
    ) -> None:
        super().__init__()
        height, width = (int(n) for n in shape)
        if scale_factor < 1 or height % scale_factor or width % scale_factor:
            raise ValueError(
                f"scale_factor {scale_factor} must divide the grid {height}×{width} "
                "(fit the grid with data.grid_fit)"
            )
        if x_channels < 1 or s_channels < 0:
            raise ValueError(
                f"need x_channels ≥ 1 and s_channels ≥ 0, got {x_channels}, {s_channels}"
            )
        self.cfg = cfg
        self.x_channels = x_channels
        self.s_channels = s_channels
        self.shape = (height, width)
        self.scale_factor = scale_factor
        self.low_res_shape = (height // scale_factor, width // scale_factor)
        self.sizes = level_sizes(self.shape)
        b = cfg.base_filters
        enc = {"residual": cfg.res_blocks, "dropout": cfg.dropout}
        self.enc_x = PyramidEncoder(x_channels + s_channels, b, cfg.d_x, **enc)
        self.enc_y = PyramidEncoder(1 + s_channels, b, cfg.d_y, **enc)
        self.posterior_head = nn.Linear(cfg.d_x + cfg.d_y, 2 * cfg.d_z)
        self.prior_net = ConditionalPrior(cfg.d_x, cfg.d_z) if cfg.prior == "conditional" else None
        self.decoder = Decoder(cfg, x_channels=x_channels, sizes=self.sizes)

    # ------------------------------------------------------------------ parts
    def count_parameters(self, trainable_only: bool = False) -> int:
        """Return the number of parameters (all, or only those that require grad)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def encode_condition(
        self, x: torch.Tensor, s: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """E_x: ``h_x (B, d_x)`` and the level maps (the U-Net skips), level 0 first."""
        up = F.interpolate(x, size=self.shape, mode="bilinear", align_corners=False)
        return self.enc_x(torch.cat([up, s], dim=1))

    def posterior(
        self, h_x: torch.Tensor, y: torch.Tensor, s: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x, y): ``(μ, log σ²)``, each ``(B, d_z)`` in float32."""
        h_y, _ = self.enc_y(torch.cat([y, s], dim=1))
        return self._latent(self.posterior_head, torch.cat([h_x, h_y], dim=1))

    def prior(self, h_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(z | x): ``(μ_p, log σ_p²)``, each ``(B, d_z)`` in float32; zeros for N(0, I)."""
        if self.prior_net is None:
            zeros = h_x.new_zeros(h_x.shape[0], self.cfg.d_z, dtype=torch.float32)
            return zeros, zeros.clone()
        return self._latent(self.prior_net, h_x)

    def _latent(self, layer: nn.Module, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run ``layer`` outside autocast, so μ and log σ² are not rounded to bfloat16."""
        dtype = next(layer.parameters()).dtype
        with torch.autocast(device_type=h.device.type, enabled=False):
            out = layer(h.to(dtype))
        if isinstance(out, tuple):
            return out
        mu, logvar = out.chunk(2, dim=1)
        return mu, logvar.clamp(*LOGVAR_RANGE)

    def _latent_params(
        self,
        h_x: torch.Tensor,
        mode: Mode,
        y: torch.Tensor | None,
        s: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(μ, log σ², μ_p, log σ_p²)`` for ``mode``."""
        prior_mu, prior_logvar = self.prior(h_x)
        if mode == "prior":
            return prior_mu, prior_logvar, prior_mu, prior_logvar
        if mode != "posterior":
            raise ValueError(f"mode must be 'posterior' or 'prior', got {mode!r}")
        if y is None:
            raise ValueError("posterior mode needs the target y (B, 1, H, W)")
        self._check("y", y, (1, *self.shape))
        mu, logvar = self.posterior(h_x, y, s)
        return mu, logvar, prior_mu, prior_logvar

    def _check(self, name: str, t: torch.Tensor, expected: tuple[int, ...]) -> None:
        if t.ndim != 4 or tuple(t.shape[1:]) != expected:
            raise ValueError(
                f"{name} must have shape (B, {', '.join(map(str, expected))}), got {tuple(t.shape)}"
            )

    def _check_inputs(self, x: torch.Tensor, s: torch.Tensor) -> None:
        self._check("x", x, (self.x_channels, *self.low_res_shape))
        self._check("s", s, (self.s_channels, *self.shape))
        if x.shape[0] != s.shape[0]:
            raise ValueError(f"x and s have different batch sizes: {x.shape[0]}, {s.shape[0]}")

    # ---------------------------------------------------------------- public
    def forward(
        self,
        x: torch.Tensor,
        s: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        mode: Mode = "posterior",
        temperature: float = 1.0,
        z: torch.Tensor | None = None,
    ) -> CVAEOutput:
        """Encode, draw z, decode.

        Parameters
        ----------
        x
            ``(B, C, h, w)`` low-res predictors, network space.
        s
            ``(B, S, H, W)`` static fields.
        y
            ``(B, 1, H, W)`` target, log1p space; needed in posterior mode,
            ignored in prior mode.
        mode
            ``"posterior"``: z ~ q(z | x, y); ``"prior"``: z ~ p(z | x), and the
            output's ``mu``/``logvar`` are the prior's.
        temperature
            z = μ + temperature · σ · ε (0 gives the mean), in train and eval mode.
        z
            ``(B, d_z)``: use this z instead of drawing one.

        Returns
        -------
        CVAEOutput
            ``y_hat (B, 1, H, W)`` ≥ 0 in log1p space; ``mu``, ``logvar``,
            ``prior_mu``, ``prior_logvar``, ``z`` ``(B, d_z)``; ``p_wet`` and
            ``intensity`` for the hurdle head.
        """
        self._check_inputs(x, s)
        h_x, skips = self.encode_condition(x, s)
        mu, logvar, prior_mu, prior_logvar = self._latent_params(h_x, mode, y, s)
        if z is None:
            z = mu + temperature * torch.exp(0.5 * logvar) * torch.randn_like(mu)
        elif tuple(z.shape) != tuple(mu.shape):
            raise ValueError(f"z must have shape {tuple(mu.shape)}, got {tuple(z.shape)}")
        y_hat, p_wet, intensity = self.decoder(z, h_x, skips, x)
        return CVAEOutput(
            y_hat=y_hat,
            mu=mu,
            logvar=logvar,
            prior_mu=prior_mu,
            prior_logvar=prior_logvar,
            z=z,
            p_wet=p_wet,
            intensity=intensity,
        )

    @torch.no_grad()
    def sample(
        self,
        x: torch.Tensor,
        s: torch.Tensor,
        n: int,
        *,
        mode: Mode = "prior",
        y: torch.Tensor | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        wet_rule: WetRule = "threshold",
        mask: torch.Tensor | None = None,
        chunk: int | None = None,
    ) -> torch.Tensor:
        """Draw ``n`` members per event in eval mode, decoding ``chunk`` fields at a time.

        Parameters
        ----------
        x, s
            ``(B, C, h, w)`` and ``(B, S, H, W)`` as in :meth:`forward`.
        n
            Members per event.
        mode
            ``"prior"`` (z ~ p(z | x)) or ``"posterior"`` (z ~ q(z | x, y); needs ``y``).
        y
            ``(B, 1, H, W)`` target for posterior mode.
        temperature
            Scales σ of the sampled distribution.
        generator
            Source of ε on the model's device; the same seed gives the same samples.
        wet_rule
            Hurdle head only: which cells of a member are wet (the others are
            exactly 0). ``"threshold"``: ``p_wet ≥ 0.5`` (the head's eval
            rule; it over-wets very wet days and under-wets dry ones, because
            every uncertain cell goes to the majority class); ``"calibrated"``:
            the ``round(Σ p_wet)`` cells of highest ``p_wet`` over ``mask`` (a
            wet area equal to its expectation, spatially coherent);
            ``"bernoulli"``: each cell wet with probability ``p_wet``, drawn
            from ``generator``.
        mask
            ``(H, W)`` bool, the cells over which ``"calibrated"`` counts
            (default: all).
        chunk
            Largest number of fields ``B·n`` decoded in one call (bounds the
            decoder's activations, e.g. for K = 100 members); ``None``: all at
            once. Every ε is drawn before decoding, so the result does not
            depend on ``chunk``.

        Returns
        -------
        Tensor
            ``(B, n, H, W)`` in log1p space, ≥ 0 (exact zeros on dry pixels
            for the hurdle head); member ``j`` of event ``b`` used ε row ``b·n + j``.
        """
        if n < 1:
            raise ValueError(f"n must be ≥ 1, got {n}")
        was_training = self.training
        self.eval()
        try:
            self._check_inputs(x, s)
            h_x, skips = self.encode_condition(x, s)
            mu, logvar, _, _ = self._latent_params(h_x, mode, y, s)
            mu, logvar = mu.repeat_interleave(n, 0), logvar.repeat_interleave(n, 0)
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            z = mu + temperature * torch.exp(0.5 * logvar) * eps
            if chunk is not None and chunk < 1:
                raise ValueError(f"chunk must be ≥ 1, got {chunk}")
            step = z.shape[0] if chunk is None else chunk
            parts = []
            for start in range(0, z.shape[0], step):  # chunks of fields, not single samples
                rows = torch.arange(start, min(start + step, z.shape[0]), device=z.device) // n
                parts.append(self.decoder(z[start : start + step], h_x[rows],
                                          [f[rows] for f in skips], x[rows]))  # fmt: skip
            y_hat, p_wet, intensity = (
                None if parts[0][i] is None else torch.cat([p[i] for p in parts]) for i in range(3)
            )
            if p_wet is not None and intensity is not None and wet_rule != "threshold":
                wet = wet_cells(p_wet, wet_rule, mask=mask, generator=generator)
                y_hat = torch.where(wet, intensity, torch.zeros_like(intensity))
        finally:
            self.train(was_training)
        out = y_hat.reshape(x.shape[0], n, *self.shape)
        return out.to(torch.promote_types(out.dtype, torch.float32))
