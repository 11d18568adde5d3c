"""The generator's ensemble objective (``loss.objective: ensemble``): :func:`ensemble_loss`.

Every term that shapes the members is a proper score of the ensemble (the
almost-fair CRPS of :mod:`downpour.losses.ensemble`): per cell, on block
means and, optionally, on log spectral amplitudes. The deterministic
regularisers the ELBO objective also uses (mass, multi-scale, gradient)
act on the ensemble mean only, so they cannot pull every member towards
the conditional median and erase the spread the CRPS rewards.

The CRPS terms are computed in the network's space (``log1p`` of mm/day):
a proper score there is still minimised by the true predictive
distribution (log1p is monotone, so quantiles map onto quantiles), and it
weighs a 2 mm/day error at 1 mm/day like a 60 mm/day error at 30 mm/day,
which keeps the dry and light majority of cells from drowning the storms.
"""

from __future__ import annotations

import torch

from downpour.config import LossConfig
from downpour.losses.combine import Term, weighted_sum
from downpour.losses.cvae import recon_weights
from downpour.losses.ensemble import almost_fair_crps, pooled_crps, spectral_crps
from downpour.losses.masked import as_float, zero_like
from downpour.losses.reconstruction import (
    gradient_loss,
    mass_conservation,
    multiscale_reconstruction,
)

__all__ = ["ensemble_loss"]


def ensemble_loss(
    members: torch.Tensor,
    y_log: torch.Tensor,
    mask: torch.Tensor,
    cfg: LossConfig,
    *,
    tail_threshold: float,
    wet_threshold: float = 0.1,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of the ensemble objective's terms, and every term for logging.

    With members ``x`` and truth ``y`` in log1p space and ``m̄`` the
    ensemble mean of ``expm1(x)`` (mm/day)::

        total = afCRPS_α(x, y)                                 per valid cell
              + λ_pooled · Σ_s afCRPS_α(pool_s(x), pool_s(y))   s in crps_scales
              + λ_spectral_crps · spectral_afCRPS_α(x, y)
              + λ_mass · mass(m̄, y) + λ_multiscale · multiscale(m̄, y) + λ_grad · grad(m̄, y)

    Parameters
    ----------
    members
        ``(B, M, H, W)``, ``M ≥ 2`` members of each input, log1p space.
    y_log
        Truth ``(B, 1, H, W)`` in log1p space.
    mask
        Valid cells, ``(B, 1, H, W)`` or ``(1, 1, H, W)`` bool.
    cfg
        ``crps_alpha``, ``crps_scales``, ``lambda_pooled``,
        ``lambda_spectral_crps``, ``lambda_mass``, ``lambda_multiscale``
        (with ``multiscale_weights`` and the intensity weights ``scale``,
        ``w_min``, ``w_max``, ``tail_boost``, ``dry_weight``), ``lambda_grad``,
        ``grad_variant``.
    tail_threshold, wet_threshold
        mm/day, for the multi-scale term's tail boost and dry weight.

    Returns
    -------
    total
        Scalar loss to back-propagate.
    terms
        ``crps``, ``crps_pool<s>`` per scale, ``spectral_crps``, ``mass``,
        ``multiscale``, ``grad`` (0 when their weight is 0), ``spread`` (mean
        member standard deviation over valid cells, log1p space; logged, not
        optimised) and ``total``.

    Examples
    --------
    >>> cfg = LossConfig(objective="ensemble", lambda_mass=0.0, crps_scales=[2])
    >>> y = torch.ones(1, 1, 2, 2)
    >>> total, terms = ensemble_loss(torch.ones(1, 3, 2, 2), y, y.bool(), cfg, tail_threshold=9.0)
    >>> float(total), float(terms["crps"]), float(terms["crps_pool2"])
    (0.0, 0.0, 0.0)
    """
    if members.ndim != 4 or members.shape[1] < 2:
        raise ValueError(f"members must be (B, M ≥ 2, H, W), got {tuple(members.shape)}")
    x = as_float(members)
    y = as_float(y_log)
    valid = mask.bool().expand(y.shape)
    alpha = cfg.crps_alpha
    crps = almost_fair_crps(x, y, valid, alpha=alpha)
    mean_mm = torch.expm1(x).mean(dim=1, keepdim=True)
    true_mm = torch.expm1(y)
    recon_kw = recon_weights(cfg, tail_threshold, wet_threshold)
    pooled: dict[int, torch.Tensor] = {}

    def pooled_term(scale: int) -> torch.Tensor:
        if not pooled:
            pooled.update(pooled_crps(x, y, valid, scales=cfg.crps_scales, alpha=alpha))
        return pooled[scale]

    table: list[Term] = [
        (f"crps_pool{s}", cfg.lambda_pooled, lambda s=s: pooled_term(s)) for s in cfg.crps_scales
    ]
    table += [
        (
            "spectral_crps",
            cfg.lambda_spectral_crps,
            lambda: spectral_crps(x, y, valid, alpha=alpha),
        ),
        ("mass", cfg.lambda_mass, lambda: mass_conservation(mean_mm, true_mm, valid)),
        (
            "multiscale",
            cfg.lambda_multiscale,
            lambda: multiscale_reconstruction(
                mean_mm, true_mm, valid, weights=cfg.multiscale_weights, **recon_kw
            ),
        ),
        (
            "grad",
            cfg.lambda_grad,
            lambda: gradient_loss(mean_mm, true_mm, valid, variant=cfg.grad_variant),
        ),
    ]
    total, terms = weighted_sum(table, base=("crps", crps), zero=zero_like(crps))
    with torch.no_grad():
        std = x.std(dim=1, keepdim=True)
        terms["spread"] = (std * valid).sum() / valid.sum().clamp_min(1)
    return total, terms
