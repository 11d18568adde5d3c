"""Regularisers of the generator: KL divergence with free bits, and the wet-fraction target."""

from __future__ import annotations

import torch

from downpour.losses.masked import (
    as_float,
    as_mask,
    batch_mean,
    check_same_shape,
    item_mean,
)

__all__ = ["kl_divergence", "sparsity"]


def kl_divergence(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    prior_mu: torch.Tensor | None = None,
    prior_logvar: torch.Tensor | None = None,
    *,
    free_bits: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """KL(q ‖ p) between diagonal Gaussians, with free bits.

    Per item ``b`` and latent dimension ``d``::

        KL_bd = ½ (lvp − lvq + (exp(lvq) + (μq − μp)²) / exp(lvp) − 1)

    with ``p = N(0, I)`` where ``prior_*`` are ``None`` (zeros give the same).
    Free bits (Kingma et al. 2016): ``kl_for_loss = Σ_d max(free_bits,
    mean_b KL_bd)``, so a dimension whose batch-mean KL is below the floor
    adds exactly ``free_bits`` and receives no gradient, which leaves it room
    to carry information instead of collapsing onto the prior. With
    ``free_bits = 0`` no clamp is applied and ``kl_for_loss == kl_raw``.

    Parameters
    ----------
    mu, logvar
        Posterior q(z | x, y), ``(B, d_z)`` (further dims are summed as latent dims).
    prior_mu, prior_logvar
        Prior p(z | x), same shape, or ``None`` for the standard normal.
    free_bits
        Floor in nats per latent dimension.

    Returns
    -------
    kl_for_loss, kl_raw
        Scalars: the free-bits KL used in the loss, and the unclamped
        ``mean_b Σ_d KL_bd`` for logging.
    """
    check_same_shape(mu, logvar, "mu and logvar")
    mu, logvar = as_float(mu), as_float(logvar)
    pmu = torch.zeros_like(mu) if prior_mu is None else as_float(prior_mu)
    plv = torch.zeros_like(logvar) if prior_logvar is None else as_float(prior_logvar)
    check_same_shape(mu, pmu, "mu and prior_mu")
    check_same_shape(logvar, plv, "logvar and prior_logvar")
    kl = 0.5 * (plv - logvar + (logvar - plv).exp() + (mu - pmu).pow(2) * (-plv).exp() - 1.0)
    kl = kl.flatten(1)  # (B, D)
    kl_raw = kl.sum(dim=1).mean()
    if free_bits <= 0.0:
        return kl_raw, kl_raw
    per_dim = kl.mean(dim=0)
    return per_dim.clamp_min(free_bits).sum(), kl_raw


def sparsity(
    pred: torch.Tensor,
    mask: torch.Tensor,
    *,
    target_wet: float,
    wet_threshold: float = 0.1,
    temperature: float = 0.1,
) -> torch.Tensor:
    """Distance of the soft wet fraction from a target (anti-drizzle).

    ``soft_wet_b = masked_mean(sigmoid((pred − wet_threshold) / temperature))``;
    ``loss = mean_b |soft_wet_b − target_wet|``.

    The design notes count ``pred > threshold`` (a hard step), whose gradient
    is zero almost everywhere, so it never moves the network; the sigmoid is
    its differentiable relaxation (``temperature → 0`` recovers the step).
    Note that a cell at exactly 0 still counts ``sigmoid(−wet_threshold /
    temperature)`` (0.27 with the defaults) as wet; lower the temperature for
    a sharper count.

    Parameters
    ----------
    pred
        ``(B, 1, H, W)``, mm/day.
    mask
        Valid cells, ``(B, 1, H, W)`` or ``(1, 1, H, W)``.
    target_wet
        Target share of wet valid cells, in [0, 1].
    wet_threshold, temperature
        Centre and width (mm/day) of the sigmoid.

    Returns
    -------
    torch.Tensor
        Scalar loss in [0, 1].
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    mask = as_mask(mask, pred)
    soft = torch.sigmoid((as_float(pred) - wet_threshold) / temperature)
    wet, valid = item_mean(soft, mask)
    return batch_mean((wet - target_wet).abs(), valid)
