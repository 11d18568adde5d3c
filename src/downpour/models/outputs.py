"""What generative models return: one dataclass shared by models, losses and training.

All precipitation tensors are in the network's target space, ``log1p`` of
mm/day (or mm/h), shape ``(B, 1, H, W)`` and non-negative; losses convert to
physical units with ``torch.expm1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["CVAEOutput"]


@dataclass
class CVAEOutput:
    """Output of :meth:`downpour.models.cvae.CVAE.forward`.

    Attributes
    ----------
    y_hat
        Reconstruction / sample, ``(B, 1, H, W)``, log1p space, ≥ 0. For the
        hurdle head: ``p_wet · intensity`` while training (differentiable),
        and ``intensity`` where ``p_wet ≥ 0.5`` and exactly 0 elsewhere in
        eval mode.
    mu, logvar
        Posterior q(z | x, y) parameters, ``(B, d_z)``; in prior mode the
        prior's parameters.
    prior_mu, prior_logvar
        Prior p(z | x) parameters, ``(B, d_z)``; zeros for the standard
        N(0, I) prior.
    z
        The latent code used by the decoder, ``(B, d_z)``.
    p_wet
        Hurdle head only: probability of rain, ``(B, 1, H, W)`` in (0, 1).
    intensity
        Hurdle head only: positive rain amount if wet, ``(B, 1, H, W)``, log1p space.
    """

    y_hat: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    prior_mu: torch.Tensor
    prior_logvar: torch.Tensor
    z: torch.Tensor
    p_wet: torch.Tensor | None = None
    intensity: torch.Tensor | None = None
