"""The cVAE objective: the weighted sum of its terms (:func:`cvae_loss`)."""

from __future__ import annotations

import torch

from downpour.config import LossConfig
from downpour.losses.combine import Term, weighted_sum
from downpour.losses.latent import kl_divergence, sparsity
from downpour.losses.masked import (
    as_float,
    zero_like,
)
from downpour.losses.reconstruction import (
    extreme_focal,
    gradient_loss,
    hurdle_loss,
    mass_conservation,
    multiscale_reconstruction,
    weighted_reconstruction,
)
from downpour.losses.spectral import spectral_loss
from downpour.models.outputs import CVAEOutput

__all__ = ["cvae_loss", "recon_weights"]


def recon_weights(cfg: LossConfig, tail_threshold: float, wet_threshold: float) -> dict[str, float]:
    """Return the keyword arguments of the intensity-weighted terms (recon, multi-scale)."""
    return {
        "scale": cfg.scale,
        "w_min": cfg.w_min,
        "w_max": cfg.w_max,
        "tail_threshold": tail_threshold,
        "tail_boost": cfg.tail_boost,
        "dry_weight": cfg.dry_weight,
        "wet_threshold": wet_threshold,
    }


def cvae_loss(
    out: CVAEOutput,
    y_log: torch.Tensor,
    mask: torch.Tensor,
    cfg: LossConfig,
    *,
    beta: float,
    tail_threshold: float,
    wet_threshold: float = 0.1,
    head: str,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of the cVAE loss terms, and every term for logging.

    With ``ŷ = expm1(out.y_hat)`` and ``y = expm1(y_log)`` in mm/day::

        total = recon(ŷ, y)
              + λ_mass · mass(ŷ, y)
              + β · kl_free_bits(q ‖ p)
              + λ_sparse · sparse(ŷ)
              + λ_multiscale · multiscale(ŷ, y)
              + λ_grad · grad(ŷ, y)
              + λ_focal · focal(ŷ, y)
              + λ_spectral · spectral(ŷ, y)
              + λ_hurdle · hurdle(p_wet, expm1(intensity), y)     [head == "hurdle"]

    The λ's and term parameters come from ``cfg`` (``recon`` and
    ``multiscale`` use ``scale``, ``w_min``, ``w_max``, ``tail_boost``,
    ``dry_weight``; ``kl`` uses ``free_bits`` against
    ``out.prior_mu``/``out.prior_logvar``, which are zeros for the standard
    prior). A term whose weight is 0 is not computed and is reported as 0,
    except the KL, which is always computed (it costs ``B × d_z`` operations)
    so that ``kl_raw`` is logged during the KL warm-up, when ``β = 0``.

    Parameters
    ----------
    out
        Model output; ``y_hat`` (and ``intensity``) in log1p space.
    y_log
        Target, ``(B, 1, H, W)``, log1p space (as in the batch).
    mask
        Valid cells, ``(B, 1, H, W)`` or ``(1, 1, H, W)``.
    cfg
        Loss weights and parameters.
    beta
        KL weight of this step (from :func:`downpour.training.schedules.kl_weight`).
    tail_threshold
        Training P99 in mm/day: tail boost of ``recon``/``multiscale``/``hurdle``
        and threshold of ``focal``.
    wet_threshold
        Wet/dry threshold, mm/day (``cfg.data.wet_threshold``).
    head
        Output head of the model: ``"relu"``, ``"softplus"`` or ``"hurdle"``.

    Returns
    -------
    total
        Scalar loss to back-propagate.
    terms
        Unweighted terms ``recon, mass, kl, kl_raw, sparse, multiscale, grad,
        focal, spectral`` (plus ``hurdle, bce, intensity`` for the hurdle
        head) and ``total``; not detached (detach to log).
    """
    if head not in ("relu", "softplus", "hurdle"):
        raise ValueError(f"unknown output head {head!r}; valid: hurdle, relu, softplus")
    pred = torch.expm1(as_float(out.y_hat))
    true = torch.expm1(as_float(y_log))
    recon_kw = recon_weights(cfg, tail_threshold, wet_threshold)
    zero = zero_like(pred)
    kl, kl_raw = kl_divergence(
        out.mu, out.logvar, out.prior_mu, out.prior_logvar, free_bits=cfg.free_bits
    )
    weighted: list[Term] = [
        ("mass", cfg.lambda_mass, lambda: mass_conservation(pred, true, mask)),
        ("kl", beta, lambda: kl),
        (
            "sparse",
            cfg.lambda_sparse,
            lambda: sparsity(
                pred,
                mask,
                target_wet=cfg.target_wet,
                wet_threshold=wet_threshold,
                temperature=cfg.sparse_temperature,
            ),
        ),
        (
            "multiscale",
            cfg.lambda_multiscale,
            lambda: multiscale_reconstruction(
                pred, true, mask, weights=cfg.multiscale_weights, **recon_kw
            ),
        ),
        (
            "grad",
            cfg.lambda_grad,
            lambda: gradient_loss(pred, true, mask, variant=cfg.grad_variant),
        ),
        (
            "focal",
            cfg.lambda_focal,
            lambda: extreme_focal(
                pred,
                true,
                mask,
                threshold=tail_threshold,
                gamma=cfg.focal_gamma,
                boost=cfg.focal_boost,
            ),
        ),
        ("spectral", cfg.lambda_spectral, lambda: spectral_loss(pred, true, mask)),
    ]
    parts: dict[str, torch.Tensor] = {}
    if head == "hurdle":
        if out.p_wet is None or out.intensity is None:
            raise ValueError("head 'hurdle' needs out.p_wet and out.intensity")
        p_wet, intensity = out.p_wet, out.intensity

        def hurdle() -> torch.Tensor:
            total, parts["bce"], parts["intensity"] = hurdle_loss(
                p_wet,
                torch.expm1(as_float(intensity)),
                true,
                mask,
                wet_threshold=wet_threshold,
                scale=cfg.scale,
                w_min=cfg.w_min,
                w_max=cfg.w_max,
                tail_threshold=tail_threshold,
                tail_boost=cfg.tail_boost,
            )
            return total

        weighted.append(("hurdle", cfg.lambda_hurdle, hurdle))
    recon = weighted_reconstruction(pred, true, mask, **recon_kw)
    total, terms = weighted_sum(weighted, base=("recon", recon), zero=zero)
    terms["kl"], terms["kl_raw"] = kl, kl_raw  # reported even when beta == 0
    if head == "hurdle":
        terms["bce"] = parts.get("bce", zero)
        terms["intensity"] = parts.get("intensity", zero)
    return total, terms
