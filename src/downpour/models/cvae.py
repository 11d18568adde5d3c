"""Conditional VAE that generates high-res precipitation from low-res predictors.

Architecture (its parts are in :mod:`downpour.models.cvae_parts`)::

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
from downpour.models.cvae_parts import (
    LOGVAR_RANGE,
    ConditionalPrior,
    Decoder,
    PyramidEncoder,
    WetRule,
    level_sizes,
    wet_cells,
)
from downpour.models.outputs import CVAEOutput
from downpour.models.registry import MODELS

__all__ = ["CVAE", "Mode"]

Mode = Literal["posterior", "prior"]


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
    def from_run(cls, cfg: Config, info: dict[str, Any]) -> nn.Module:
        """Build from a run's ``model`` section and its store facts (channels, grid, scale).

        ``model.arch: lowres`` builds the ensemble generator
        (:class:`~downpour.models.generator.LowResGenerator`) instead: both are
        the run's ``cvae``, sampled through the same ``sample`` interface.
        """
        if cfg.model.arch == "lowres":
            from downpour.models.generator import LowResGenerator

            return LowResGenerator.from_run(cfg, info)
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

    def members(
        self, x: torch.Tensor, s: torch.Tensor, n: int, *, temperature: float = 1.0
    ) -> torch.Tensor:
        """Draw ``n`` prior members per input with gradients (the ensemble objective).

        ``x (B, C, h, w)``, ``s (B, S, H, W)`` → ``(B, n, H, W)`` log1p; the
        condition is encoded once per input and its members stay in its row.
        """
        if self.cfg.head == "hurdle":
            raise ValueError(
                "the ensemble objective needs members that are samples; arch=pyramid's "
                "hurdle head trains on the expectation p_wet·intensity: use model.head=relu, "
                "or model.arch=lowres (its hurdle head draws each member's wet mask)"
            )
        self._check_inputs(x, s)
        h_x, skips = self.encode_condition(x, s)
        mu, logvar = self.prior(h_x)
        rows = torch.arange(x.shape[0], device=x.device).repeat_interleave(n)
        z = mu[rows] + temperature * torch.exp(0.5 * logvar[rows]) * torch.randn_like(mu[rows])
        y_hat, _, _ = self.decoder(z, h_x[rows], [f[rows] for f in skips], x[rows])
        return y_hat.reshape(x.shape[0], n, *self.shape)

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
