"""Advection-aware residual nowcaster: extrapolation along the motion, plus a learned correction.

The forecast at lead ``k`` starts from the latest observed frame advected
``k`` steps along the motion field estimated from the input frames
(:func:`downpour.models.warp.advect` of the rain rate in mm/h, sampled once
per lead, so it does not blur), and a U-Net
(:class:`~downpour.models.nowcast.NowcastUNet` with extra inputs) predicts
the correction on top: growth, decay, new cells. The correction is carried
along the flow from one lead to the next and the network adds to it::

    base_k = T(advect(T⁻¹(last), V, k))       T: the rain transform (log1p, dBR)
    C_k    = warp(C_{k−1}, D_1) + scale · Δ_k(window_k, base_k, C_{k−1}, V, enc_k)
    ŷ_k    = max(base_k + C_k, floor)

``window_k`` holds the last ``n_frames`` frames, observed or predicted (the
predictions are fed back, as in :func:`downpour.nowcast.module.rollout_batch`).
With a zero correction the model is the semi-Lagrangian extrapolation
nowcast of its motion field (pysteps' scheme, to float rounding), so where it
learns nothing it cannot be worse than extrapolation (the idea of NowcastNet's
evolution network, Zhang et al. 2023, with the motion from optical flow). The
motion is an input: it comes from pysteps' Lucas-Kanade optical flow on the
input frames
(:func:`downpour.nowcast.motion.lk_motion`), the same as the extrapolation
baseline's.

Examples
--------
>>> net = AdvectionNowcaster(n_frames=3, base_features=4, depth=2)
>>> frames, enc = torch.rand(2, 3, 16, 20), torch.rand(2, 5, 4)
>>> motion = torch.zeros(2, 2, 16, 20)
>>> net.rollout(frames, enc, motion).shape
torch.Size([2, 5, 16, 20])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from downpour.config import NowcastConfig
from downpour.data.rain import (
    TransformKind,
    inverse_rain_transform,
    rain_transform,
)
from downpour.models.nowcast import NowcastUNet, floor_straight_through, unet_kwargs
from downpour.models.warp import advect, displacements, warp

__all__ = ["MOTION_SCALE", "AdvectionNowcaster"]

#: The network sees the motion (pixels per step) divided by this.
MOTION_SCALE = 4.0
#: Extra input channels of the U-Net: advected frame, carried correction, motion x and y.
_EXTRA = 4


class AdvectionNowcaster(nn.Module):
    """Semi-Lagrangian extrapolation of the latest frame plus a learned, advected correction.

    Parameters
    ----------
    n_frames, base_features, depth, temporal_dim, floor, offset, scale
        As :class:`~downpour.models.nowcast.NowcastUNet` (the correction network).
    transform
        The rain transform of the frames (``log``, ``dbr``, ``none``): the
        latest frame is advected as a rate in mm/h.

    Attributes
    ----------
    needs_motion : bool
        True: rollouts take the motion field of the input frames.

    Notes
    -----
    :meth:`rollout` takes ``inputs`` ``(B, n_frames, H, W)`` (transformed
    rain, oldest first), ``temporal`` ``(B, K, 4)`` and ``motion``
    ``(B, 2, H, W)`` (pixels per step, x then y) and returns ``(B, K, H, W)``,
    every value ``≥ floor``.
    """

    needs_motion = True

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
        transform: TransformKind = "log",
    ) -> None:
        super().__init__()
        self.transform: TransformKind = transform
        self.unet = NowcastUNet(
            n_frames=n_frames,
            base_features=base_features,
            depth=depth,
            temporal_dim=temporal_dim,
            floor=floor,
            offset=offset,
            scale=scale,
            extra_channels=_EXTRA,
        )
        self.floor, self.offset, self.scale = float(floor), float(offset), float(scale)

    @classmethod
    def from_config(cls, nc: NowcastConfig) -> AdvectionNowcaster:
        """Build from a ``nowcast`` section (input scaling and floor from its transform)."""
        return cls(**unet_kwargs(nc), transform=nc.transform)

    def rollout(
        self,
        inputs: torch.Tensor,
        temporal: torch.Tensor,
        motion: torch.Tensor,
        post: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Forecast ``K = temporal.shape[1]`` leads (class docstring).

        Parameters
        ----------
        inputs
            ``(B, n_frames, H, W)``, transformed, oldest first.
        temporal
            ``(B, K, 4)``: encoding of each target time.
        motion
            ``(B, 2, H, W)``: x and y velocity in pixels per step.
        post
            Applied to each prediction ``(B, 1, H, W)`` before it is kept and
            fed back (e.g. probability matching).

        Returns
        -------
        torch.Tensor
            ``(B, K, H, W)``.
        """
        if motion.shape != (inputs.shape[0], 2, *inputs.shape[-2:]):
            raise ValueError(
                f"motion must be (B, 2, H, W) = ({inputs.shape[0]}, 2, "
                f"{inputs.shape[-2]}, {inputs.shape[-1]}), got {tuple(motion.shape)}"
            )
        steps = temporal.shape[1]
        motion = motion.to(inputs.dtype)
        rate = inverse_rain_transform(inputs[:, -1:], self.transform)
        bases = rain_transform(advect(rate, motion, steps), self.transform)  # (B, K, H, W)
        bases = bases.clamp_min(self.floor)
        one_step = displacements(motion, 1)[:, 0]
        v_in = motion / MOTION_SCALE
        corr = torch.zeros_like(inputs[:, :1])
        window, preds = inputs, []
        for k in range(steps):
            if k:
                corr = warp(corr, one_step)
            base = bases[:, k : k + 1]
            extra = torch.cat([(base - self.offset) / self.scale, corr / self.scale, v_in], dim=1)
            corr = corr + self.scale * self.unet.residual(window, temporal[:, k], extra)
            pred = floor_straight_through(base + corr, self.floor)
            if post is not None:
                pred = post(pred)
            preds.append(pred)
            window = torch.cat([window[:, 1:], pred], dim=1)
        return torch.cat(preds, dim=1)
