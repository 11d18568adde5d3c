"""The ensemble generator: conditioning at the low-res grid, noise maps and FiLM(z) on the way up.

``model.arch: lowres``, trained with ``loss.objective: ensemble``. It draws
members from p(z | x) and from spatial noise; it has no posterior encoder
(prior training needs none), so it samples in prior mode only.

Architecture::

    x (B, C, h, w), area-mean of s on (h, w) ─→ trunk: ConvBlock(4·base) + trunk_blocks × ResBlock
          (computed once per input, shared by its members)
    trunk ─→ mean/max pool ─→ linear (d_x) ─→ p(z | x) = N(μ_p, σ_p²) (or N(0, I))
    per member: z ~ p(z | x);  for each upsampling stage k (factors of the scale, e.g. ×2 ×3 ×2):
        h ← resize(h) ⊕ noise_k (noise_channels × N(0, 1) on the stage grid)
                      ⊕ area-mean of s on the stage grid [⊕ bilinear x if injected here]
        h ← ConvBlock → [ResBlock] → FiLM(z) → [CBAM, last two stages] → [dropout]
    output head (relu | softplus | hurdle) on exactly (H, W)
    [residual=bicubic: the head's pre-activation is added to log1p(bicubic(low-res rain))]

Design choices and why:

- The conditioning lives at the low-res grid (13×11 for the demo), where the
  predictors are: the design notes' network convolves the bilinearly
  upsampled predictors at full resolution in two pyramid encoders (92 GFLOP
  per sample at base 96), which buys nothing the 13×11 grid does not hold.
  Here the widest layers (4·base) act on h·w cells, the full-resolution stage
  has ``base`` channels, and the trunk is run once per input for all M members.
- Two sources of variability: the global z (through FiLM at every stage)
  moves whole storms and intensities; the noise maps, fresh for every member
  at every stage's grid, let the members differ at every scale down to the
  grid cell. A single global z through FiLM cannot place independent small
  cells (the feasibility check of issue 12: members smooth below ~10 cells).
- The static fields (mask, elevation, lat/lon) enter every stage at that
  stage's resolution: orographic structure is drawn where it is, not
  carried up from 13×11.
- The residual mode makes the bicubic field the zero of the network's
  output: ``relu(log1p(bicubic) + Δ)``, so the generator spends its capacity
  on the departures from the smooth field, which is where members differ.
- The hurdle head draws each member's wet mask: ``wet = [logit + L > 0]``
  with logistic noise ``L`` (a Bernoulli(p_wet) draw), passed to the
  gradient as ``p_wet`` (straight-through), so dry cells are exactly 0 in
  training as in sampling.

This module is long because the generator's three ways of drawing a member
(training with gradients, sampling in chunks, the hurdle head's wet rules)
share one set of random draws, and keeping them in one class is what makes
a member reproducible whatever the chunk.

Examples
--------
>>> import torch
>>> from downpour.config import ModelConfig
>>> cfg = ModelConfig(arch="lowres", d_z=4, base_filters=4, d_x=8, prior="conditional")
>>> net = LowResGenerator(cfg, x_channels=2, s_channels=3, shape=(24, 24), scale_factor=6)
>>> x, s = torch.randn(2, 2, 4, 4), torch.randn(2, 3, 24, 24)
>>> net.members(x, s, 3).shape
torch.Size([2, 3, 24, 24])
>>> net.sample(x, s, 5).shape
torch.Size([2, 5, 24, 24])
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from downpour.config import ModelConfig
from downpour.data.normalize import Normalization
from downpour.models.blocks import CBAM, ConvBlock, FiLM, ResBlock
from downpour.models.cvae_parts import ConditionalPrior, WetRule, wet_cells
from downpour.models.srdrn import bicubic_rain, one_channel, upsample_factors

__all__ = ["LowResGenerator"]


class _Stage(nn.Module):
    """One upsampling stage: fuse (features ⊕ noise ⊕ statics [⊕ x]) → [res] → FiLM(z) → [CBAM]."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        extra: int,
        d_z: int,
        residual: bool,
        attention: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        self.fuse = ConvBlock(in_channels + extra, out_channels)
        self.res = ResBlock(out_channels) if residual else nn.Identity()
        self.film = FiLM(d_z, out_channels)
        self.attn = CBAM(out_channels) if attention else nn.Identity()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, h: torch.Tensor, extras: list[torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        """``h (N, C_in, H_k, W_k)`` already on the stage grid → ``(N, C_out, H_k, W_k)``."""
        h = self.res(self.fuse(torch.cat([h, *extras], dim=1)))
        return self.drop(self.attn(self.film(h, z)))


class LowResGenerator(nn.Module):
    """Ensemble generator of high-res precipitation from low-res predictors (module docstring).

    Parameters
    ----------
    cfg
        ``model`` options: ``d_z``, ``base_filters``, ``d_x``, ``trunk_blocks``,
        ``noise_channels``, ``res_blocks``, ``attention``, ``injection``,
        ``dropout``, ``head``, ``prior``, ``residual``.
    x_channels
        Predictor channels C.
    s_channels
        Static channels S (may be 0).
    shape
        High-res grid (H, W).
    scale_factor
        H / h = W / w; must divide both.
    normalization, precip_channel
        Needed by ``residual="bicubic"``: the store's normalisation and the
        first precipitation channel of x
        (:func:`~downpour.models.srdrn.residual_inputs`).

    Notes
    -----
    Inputs as for :class:`~downpour.models.cvae.CVAE`: ``x (B, C, h, w)``
    normalised predictors, ``s (B, S, H, W)``; outputs in log1p space.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        *,
        x_channels: int,
        s_channels: int,
        shape: tuple[int, int],
        scale_factor: int,
        normalization: Normalization | None = None,
        precip_channel: int | None = None,
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
        self.x_channels, self.s_channels = x_channels, s_channels
        self.shape = (height, width)
        self.scale_factor = scale_factor
        self.low_res_shape = (height // scale_factor, width // scale_factor)
        self.factors = upsample_factors(scale_factor) or [1]
        sizes, (gh, gw) = [], self.low_res_shape
        for f in self.factors:
            gh, gw = gh * f, gw * f
            sizes.append((gh, gw))
        self.sizes = sizes
        b = cfg.base_filters
        self.trunk = nn.Sequential(
            ConvBlock(x_channels + s_channels, 4 * b),
            *(ResBlock(4 * b) for _ in range(cfg.trunk_blocks)),
        )
        self.context = nn.Linear(8 * b, cfg.d_x)
        self.prior_net = ConditionalPrior(cfg.d_x, cfg.d_z) if cfg.prior == "conditional" else None
        n = len(self.factors)
        n_inject = {"every": n, "first": 1, "first_two": 2, "none": 0}[cfg.injection]
        self.inject = [k < n_inject for k in range(n)]
        stages, c_in = [], 4 * b
        for k in range(n):
            c_out = max(4 * b // 2 ** (k + 1), b)
            extra = cfg.noise_channels + s_channels + (x_channels if self.inject[k] else 0)
            last = k == n - 1
            stages.append(
                _Stage(
                    c_in,
                    c_out,
                    extra=extra,
                    d_z=cfg.d_z,
                    residual=cfg.res_blocks,
                    attention=cfg.attention and k >= n - 2,
                    dropout=0.0 if last else cfg.dropout,
                )  # fmt: skip
            )
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        self.head = nn.Conv2d(c_in, 2 if cfg.head == "hurdle" else 1, 1)
        self._precip: tuple[int, Normalization] | None = None
        if cfg.residual == "bicubic":
            if normalization is None or precip_channel is None:
                raise ValueError("residual='bicubic' needs normalization and precip_channel")
            self._precip = (int(precip_channel), one_channel(normalization, precip_channel))

    @classmethod
    def from_run(cls, cfg: Any, info: dict[str, Any]) -> LowResGenerator:
        """Build from a run's ``model`` section and its store facts."""
        extra: dict[str, Any] = {}
        if cfg.model.residual == "bicubic":
            from downpour.models.srdrn import residual_inputs

            extra = residual_inputs(info)
        return cls(
            cfg.model,
            x_channels=int(info["x_channels"]),
            s_channels=int(info["s_channels"]),
            shape=(int(info["shape"][0]), int(info["shape"][1])),
            scale_factor=int(info["scale_factor"]),
            **extra,
        )

    # ------------------------------------------------------------------ parts
    def count_parameters(self, trainable_only: bool = False) -> int:
        """Return the number of parameters (all, or only those that require grad)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def _check_inputs(self, x: torch.Tensor, s: torch.Tensor) -> None:
        for name, t, expected in (
            ("x", x, (self.x_channels, *self.low_res_shape)),
            ("s", s, (self.s_channels, *self.shape)),
        ):
            if t.ndim != 4 or tuple(t.shape[1:]) != expected:
                raise ValueError(
                    f"{name} must have shape (B, {', '.join(map(str, expected))}), "
                    f"got {tuple(t.shape)}"
                )
        if x.shape[0] != s.shape[0]:
            raise ValueError(f"x and s have different batch sizes: {x.shape[0]}, {s.shape[0]}")

    def condition(self, x: torch.Tensor, s: torch.Tensor) -> dict[str, Any]:
        """Everything the members of an input share, computed once per input.

        Returns
        -------
        dict
            ``trunk (B, 4·base, h, w)``, ``prior`` ``(μ_p, log σ_p²)`` each
            ``(B, d_z)`` float32, ``statics`` (s on every stage grid),
            ``injected`` (x on the grids of injected stages, else None) and
            ``base`` (``(B, 1, H, W)`` log1p of bicubic rain, or None).
        """
        self._check_inputs(x, s)
        s_low = F.adaptive_avg_pool2d(s, self.low_res_shape) if self.s_channels else s[:, :0]
        h = self.trunk(torch.cat([x, s_low.to(x.dtype)], dim=1))
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        h_x = self.context(pooled)
        if self.prior_net is None:
            zeros = h_x.new_zeros(h_x.shape[0], self.cfg.d_z, dtype=torch.float32)
            prior = (zeros, zeros.clone())
        else:
            with torch.autocast(device_type=h_x.device.type, enabled=False):
                prior = self.prior_net(h_x.float())
        statics = [
            (F.adaptive_avg_pool2d(s, size) if size != self.shape else s).to(x.dtype)
            for size in self.sizes
        ]
        injected = [
            F.interpolate(x, size=size, mode="bilinear", align_corners=False) if inj else None
            for size, inj in zip(self.sizes, self.inject, strict=True)
        ]
        return {"trunk": h, "prior": prior, "statics": statics, "injected": injected,
                "base": self._base(x)}  # fmt: skip

    def _base(self, x: torch.Tensor) -> torch.Tensor | None:
        if self._precip is None:
            return None
        return torch.log1p(bicubic_rain(x, *self._precip, self.scale_factor))

    def noise(
        self, n: int, *, generator: torch.Generator | None = None, device: Any = None
    ) -> list[torch.Tensor]:
        """Draw the noise maps of ``n`` members: one ``(n, noise_channels, H_k, W_k)`` per stage."""
        return [
            torch.randn((n, self.cfg.noise_channels, *size), generator=generator, device=device)
            for size in self.sizes
        ]

    def decode(
        self,
        cond: dict[str, Any],
        rows: torch.Tensor,
        z: torch.Tensor,
        noise: list[torch.Tensor],
        wet_noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Decode members: input ``rows[i]`` of ``cond`` with ``z[i]`` and ``noise[k][i]``.

        Parameters
        ----------
        cond
            From :meth:`condition`.
        rows
            ``(N,)`` long, the input of each member.
        z
            ``(N, d_z)``.
        noise
            Per stage ``(N, noise_channels, H_k, W_k)``.
        wet_noise
            Hurdle head: ``(N, 1, H, W)`` standard logistic noise (the wet
            draw); ``None`` uses ``p_wet ≥ 0.5``.

        Returns
        -------
        (Tensor, Tensor or None, Tensor or None)
            ``(N, 1, H, W)`` members in log1p space (≥ 0) and, for the hurdle
            head, ``p_wet`` and the intensity if wet, each ``(N, 1, H, W)``.
        """
        h = cond["trunk"][rows]
        dtype = h.dtype
        for k, stage in enumerate(self.stages):
            size = self.sizes[k]
            h = F.interpolate(h, size=size, mode="bilinear", align_corners=False)
            extras = [noise[k].to(dtype), cond["statics"][k][rows]]
            if cond["injected"][k] is not None:
                extras.append(cond["injected"][k][rows])
            h = stage(h, extras, z.to(dtype))
        out = self.head(h).float()
        base = None if cond["base"] is None else cond["base"][rows]
        amount = out[:, -1:] if base is None else out[:, -1:] + base
        if self.cfg.head == "relu":
            return F.relu(amount), None, None
        if self.cfg.head == "softplus":
            return F.softplus(amount), None, None
        logit = out[:, :1]
        p_wet = torch.sigmoid(logit)
        intensity = F.softplus(amount) + 1e-4
        hard = (logit + wet_noise > 0) if wet_noise is not None else (p_wet >= 0.5)
        wet = hard.to(p_wet.dtype) + p_wet - p_wet.detach()  # straight-through
        return wet * intensity, p_wet, intensity

    def _draw(
        self,
        cond: dict[str, Any],
        n: int,
        *,
        temperature: float,
        generator: torch.Generator | None,
        wet_rule: WetRule | None,
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor | None]:
        """Draw z, noise maps and wet draws of ``n`` members per input (member-major rows)."""
        mu, logvar = cond["prior"]
        b, dev = mu.shape[0], mu.device
        rows = torch.arange(b, device=dev).repeat_interleave(n)
        eps = torch.randn((b * n, mu.shape[1]), generator=generator, device=dev, dtype=mu.dtype)
        z = mu[rows] + temperature * torch.exp(0.5 * logvar[rows]) * eps
        noise = [temperature * e for e in self.noise(b * n, generator=generator, device=dev)]
        wet_noise = None
        if self.cfg.head == "hurdle" and wet_rule in ("bernoulli", None):
            u = torch.rand((b * n, 1, *self.shape), generator=generator, device=dev)
            u = u.clamp(1e-6, 1 - 1e-6)
            wet_noise = torch.log(u) - torch.log1p(-u)  # logistic: [logit + L > 0] ~ Bernoulli(p)
        return rows, z, noise, wet_noise

    # ---------------------------------------------------------------- public
    def members(
        self, x: torch.Tensor, s: torch.Tensor, n: int, *, temperature: float = 1.0
    ) -> torch.Tensor:
        """Draw ``n`` members per input with gradients (training): ``(B, n, H, W)`` log1p.

        Members of input ``b`` are rows ``b·n … b·n + n − 1`` of the decoded
        batch, reshaped so that one input's members stay in one row: a DDP
        sampler shards inputs, never members.
        """
        if n < 1:
            raise ValueError(f"n must be ≥ 1, got {n}")
        cond = self.condition(x, s)
        rows, z, noise, wet_noise = self._draw(
            cond, n, temperature=temperature, generator=None, wet_rule=None
        )
        y, _, _ = self.decode(cond, rows, z, noise, wet_noise)
        return y.reshape(x.shape[0], n, *self.shape)

    @torch.no_grad()
    def sample(
        self,
        x: torch.Tensor,
        s: torch.Tensor,
        n: int,
        *,
        mode: str = "prior",
        y: torch.Tensor | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        wet_rule: WetRule = "bernoulli",
        mask: torch.Tensor | None = None,
        chunk: int | None = None,
    ) -> torch.Tensor:
        """Draw ``n`` members per input in eval mode (the interface of ``CVAE.sample``).

        Parameters
        ----------
        x, s
            ``(B, C, h, w)`` and ``(B, S, H, W)``.
        n
            Members per input.
        mode
            ``"prior"`` only: this generator has no posterior encoder.
        y
            Ignored (posterior mode is refused).
        temperature
            Scales σ of z and the noise maps.
        generator
            Source of z, the noise maps and the wet draws; the same seed gives
            the same members.
        wet_rule
            Hurdle head: ``"bernoulli"`` (the training draw), ``"threshold"``
            (``p_wet ≥ 0.5``) or ``"calibrated"`` (see
            :func:`~downpour.models.cvae_parts.wet_cells`).
        mask
            ``(H, W)`` cells counted by ``"calibrated"``.
        chunk
            Most fields decoded in one call; every random number is drawn
            before decoding, so the result does not depend on ``chunk``.

        Returns
        -------
        Tensor
            ``(B, n, H, W)`` float32, log1p space, ≥ 0.
        """
        if mode != "prior":
            raise ValueError(
                "model.arch=lowres draws members from the prior only (it has no posterior "
                "encoder); set sampling.mode=prior"
            )
        if n < 1:
            raise ValueError(f"n must be ≥ 1, got {n}")
        if chunk is not None and chunk < 1:
            raise ValueError(f"chunk must be ≥ 1, got {chunk}")
        was_training = self.training
        self.eval()
        try:
            cond = self.condition(x, s)
            rows, z, noise, wet_noise = self._draw(
                cond, n, temperature=temperature, generator=generator, wet_rule=wet_rule
            )
            step = z.shape[0] if chunk is None else chunk
            parts = []
            for a in range(0, z.shape[0], step):  # chunks of fields, not single samples
                sl = slice(a, a + step)
                wn = None if wet_noise is None else wet_noise[sl]
                parts.append(self.decode(cond, rows[sl], z[sl], [e[sl] for e in noise], wn))
            y_hat = torch.cat([p[0] for p in parts])
            if self.cfg.head == "hurdle" and wet_rule == "calibrated":
                p_wet = torch.cat([p[1] for p in parts])  # type: ignore[misc]
                intensity = torch.cat([p[2] for p in parts])  # type: ignore[misc]
                wet = wet_cells(p_wet, "calibrated", mask=mask)
                y_hat = torch.where(wet, intensity, torch.zeros_like(intensity))
        finally:
            self.train(was_training)
        return y_hat.reshape(x.shape[0], n, *self.shape).float()
