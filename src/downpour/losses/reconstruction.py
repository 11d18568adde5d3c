"""Reconstruction terms: one field against the truth, in physical units (mm/day).

Fields are ``(B, 1, H, W)`` tensors in physical units; ``mask`` marks valid
cells (:mod:`downpour.losses.masked` for the masked-mean convention). Every
term is finite with finite gradients for all-dry batches and for items
without valid cells, and vectorised (no Python loop over samples or pixels).

Examples
--------
>>> pred = torch.tensor([[[[1.0, 3.0], [0.0, 5.0]]]])
>>> true = torch.tensor([[[[2.0, 3.0], [0.0, 9.0]]]])
>>> mask = torch.tensor([[[[True, True], [True, False]]]])
>>> round(float(mass_conservation(pred, true, mask)), 4)  # |4/3 - 5/3|
0.3333
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from downpour.losses.masked import (
    as_float,
    as_mask,
    batch_mean,
    check_same_shape,
    item_mean,
    masked_mean,
    masked_pool,
    zero_like,
)

__all__ = [
    "GRAD_VARIANTS",
    "extreme_focal",
    "gradient_loss",
    "hurdle_loss",
    "mass_conservation",
    "multiscale_reconstruction",
    "weighted_reconstruction",
]


#: Variants of :func:`gradient_loss`.
GRAD_VARIANTS = ("signed", "magnitude")


_BCE_EPS = 1e-6


def _intensity_weights(
    true: torch.Tensor,
    *,
    scale: float,
    w_min: float,
    w_max: float,
    tail_threshold: float,
    tail_boost: float,
    dry_weight: float,
    wet_threshold: float,
) -> torch.Tensor:
    """Per-cell weights of :func:`weighted_reconstruction` (no gradient)."""
    w = (true / scale).clamp(w_min, w_max)
    w = torch.where(true > tail_threshold, w * tail_boost, w)
    w = torch.where(true < wet_threshold, w * dry_weight, w)
    return w.detach()


def weighted_reconstruction(
    pred: torch.Tensor,
    true: torch.Tensor,
    mask: torch.Tensor,
    *,
    scale: float,
    w_min: float,
    w_max: float,
    tail_threshold: float,
    tail_boost: float,
    dry_weight: float = 1.0,
    wet_threshold: float = 0.1,
) -> torch.Tensor:
    """Intensity-weighted MAE in mm/day, with tail boost and dry-pixel weighting.

    ``w = clip(true / scale, w_min, w_max)``, multiplied by ``tail_boost``
    where ``true > tail_threshold`` and by ``dry_weight`` where
    ``true < wet_threshold``; ``loss = masked_mean(w · |pred − true|)``. The
    weights depend on the truth only and carry no gradient.

    Parameters
    ----------
    pred, true
        Prediction and target, ``(B, 1, H, W)``, mm/day.
    mask
        Valid cells, bool, ``(B, 1, H, W)`` or ``(1, 1, H, W)``.
    scale, w_min, w_max
        Intensity weighting: ``clip(true / scale, w_min, w_max)``.
    tail_threshold, tail_boost
        Cells above the threshold (the training P99, mm/day) weigh ``tail_boost`` times more.
    dry_weight, wet_threshold
        Cells whose truth is below ``wet_threshold`` (dry) weigh ``dry_weight`` times more
        (> 1 punishes drizzle on dry cells).

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    check_same_shape(pred, true, "pred and true")
    mask = as_mask(mask, pred)
    pred, true = as_float(pred), as_float(true)
    w = _intensity_weights(
        true,
        scale=scale,
        w_min=w_min,
        w_max=w_max,
        tail_threshold=tail_threshold,
        tail_boost=tail_boost,
        dry_weight=dry_weight,
        wet_threshold=wet_threshold,
    )
    return masked_mean(w * (pred - true).abs(), mask)


def mass_conservation(pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Domain-mean mass difference in mm/day.

    ``loss = mean_b |mean_land(pred_b) − mean_land(true_b)|``.

    An absolute difference of land means, not a ratio such as
    ``Σpred / Σtrue − 1`` (the *mass bias* metric of docs/metrics.md#sample-quality): on a dry
    or nearly dry day the ratio's denominator is ~0, so the term and its
    gradient explode exactly on the days that carry no information about
    mass. The difference stays in mm/day, is bounded by the fields
    themselves, and weighs wet days more, which is where mass matters.

    Parameters
    ----------
    pred, true
        ``(B, 1, H, W)``, mm/day.
    mask
        Valid cells, ``(B, 1, H, W)`` or ``(1, 1, H, W)``.

    Returns
    -------
    torch.Tensor
        Scalar loss (mm/day); items without valid cells are left out.
    """
    check_same_shape(pred, true, "pred and true")
    mask = as_mask(mask, pred)
    mean_p, valid = item_mean(as_float(pred), mask)
    mean_t, _ = item_mean(as_float(true), mask)
    return batch_mean((mean_p - mean_t).abs(), valid)


def multiscale_reconstruction(
    pred: torch.Tensor,
    true: torch.Tensor,
    mask: torch.Tensor,
    *,
    weights: Sequence[float] = (1.0, 0.3, 0.1),
    **recon_kwargs: float,
) -> torch.Tensor:
    """Weighted reconstruction at full, 1/2, 1/4 … resolution.

    ``loss = Σ_k weights[k] · weighted_reconstruction(pool_{2^k}(pred),
    pool_{2^k}(true), pool_{2^k}(mask))``: level ``k`` averages the valid
    fine cells of each ``2^k × 2^k`` block (:func:`masked_pool`; a coarse
    cell is valid if any fine cell is; odd sizes keep the partial last block).
    The weights are not normalised, so with ``(1, 0.3, 0.1)`` the
    full-resolution term counts once. The intensity weights are recomputed
    from the pooled truth, so fewer coarse cells exceed the tail threshold.

    Parameters
    ----------
    pred, true
        ``(B, 1, H, W)``, mm/day.
    mask
        Valid cells, ``(B, 1, H, W)`` or ``(1, 1, H, W)``.
    weights
        One weight per level, finest first.
    **recon_kwargs
        Keyword arguments of :func:`weighted_reconstruction`.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    check_same_shape(pred, true, "pred and true")
    mask = as_mask(mask, pred)
    pred, true = as_float(pred), as_float(true)
    total = zero_like(pred)
    for level, weight in enumerate(weights):  # a few levels, not samples or pixels
        if weight == 0:
            continue
        factor = 2**level
        p, m_coarse = masked_pool(pred, mask, factor)
        t, _ = masked_pool(true, mask, factor)
        total = total + weight * weighted_reconstruction(p, t, m_coarse, **recon_kwargs)
    return total


def gradient_loss(
    pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor, *, variant: str = "signed"
) -> torch.Tensor:
    """L1 between spatial finite differences of prediction and truth.

    With ``∂_x f = f[..., :, 1:] − f[..., :, :-1]`` (and ``∂_y`` likewise)::

        signed:    Σ_dir masked_mean |∂ pred − ∂ true|
        magnitude: Σ_dir masked_mean | |∂ pred| − |∂ true| |

    summed over the two directions (as in the design notes). A difference
    counts only if both of its cells are valid. ``"signed"`` also penalises an
    edge in the right place with the wrong sign (rain rising where it should
    fall); ``"magnitude"`` (the design notes' version) only asks for edges as
    sharp as the truth's.

    Parameters
    ----------
    pred, true
        ``(B, 1, H, W)``, mm/day.
    mask
        Valid cells, ``(B, 1, H, W)`` or ``(1, 1, H, W)``.
    variant
        ``"signed"`` or ``"magnitude"``.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    if variant not in GRAD_VARIANTS:
        raise ValueError(f"unknown gradient-loss variant {variant!r}; valid: {GRAD_VARIANTS}")
    check_same_shape(pred, true, "pred and true")
    mask = as_mask(mask, pred)
    pred, true = as_float(pred), as_float(true)
    total = zero_like(pred)
    for dim in (-1, -2):  # the two directions
        n = pred.shape[dim]
        if n < 2:
            continue
        dp = pred.narrow(dim, 1, n - 1) - pred.narrow(dim, 0, n - 1)
        dt = true.narrow(dim, 1, n - 1) - true.narrow(dim, 0, n - 1)
        pair = mask.narrow(dim, 1, n - 1) & mask.narrow(dim, 0, n - 1)
        err = (dp - dt).abs() if variant == "signed" else (dp.abs() - dt.abs()).abs()
        total = total + masked_mean(err, pair)
    return total


def extreme_focal(
    pred: torch.Tensor,
    true: torch.Tensor,
    mask: torch.Tensor,
    *,
    threshold: float,
    gamma: float = 2.0,
    boost: float = 10.0,
) -> torch.Tensor:
    """Focal-weighted MAE that concentrates on badly predicted extremes.

    ``e = |pred − true|``; ``weight = 1 + boost · (1 − exp(−e))^γ`` on cells
    where ``true ≥ threshold`` (the P99) and 1 elsewhere;
    ``loss = masked_mean(weight · e)``. The focal factor is part of the graph
    (as in Lin et al.'s focal loss); its base is floored at 1e-12 so that
    ``γ < 1`` has a finite gradient at ``e = 0``.

    Parameters
    ----------
    pred, true
        ``(B, 1, H, W)``, mm/day.
    mask
        Valid cells, ``(B, 1, H, W)`` or ``(1, 1, H, W)``.
    threshold
        Extreme threshold, mm/day (inclusive).
    gamma, boost
        Focusing exponent and extra weight of a large error on an extreme.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    check_same_shape(pred, true, "pred and true")
    mask = as_mask(mask, pred)
    pred, true = as_float(pred), as_float(true)
    e = (pred - true).abs()
    focal = (-torch.expm1(-e)).clamp_min(1e-12).pow(gamma)
    weight = torch.where(true >= threshold, 1.0 + boost * focal, torch.ones_like(e))
    return masked_mean(weight * e, mask)


def hurdle_loss(
    p_wet: torch.Tensor,
    intensity: torch.Tensor,
    true: torch.Tensor,
    mask: torch.Tensor,
    *,
    wet_threshold: float = 0.1,
    scale: float,
    w_min: float,
    w_max: float,
    tail_threshold: float,
    tail_boost: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rain/no-rain hurdle: occurrence BCE plus the intensity error on wet cells.

    ``bce = masked_mean(−[o log p + (1 − o) log(1 − p)])`` with
    ``o = (true ≥ wet_threshold)`` and ``p = clamp(p_wet, 1e-6, 1 − 1e-6)``,
    over valid cells (written out rather than calling
    ``F.binary_cross_entropy``, which CUDA autocast refuses; same values);
    ``intensity_term = weighted_reconstruction(intensity, true, mask ∧ o)``,
    i.e. only wet valid cells train the intensity (items without wet cells
    are left out); ``total = bce + intensity_term``.

    Parameters
    ----------
    p_wet
        Probability of rain, ``(B, 1, H, W)`` in (0, 1).
    intensity
        Rain amount if wet, ``(B, 1, H, W)``, mm/day.
    true
        Target, ``(B, 1, H, W)``, mm/day.
    mask
        Valid cells, ``(B, 1, H, W)`` or ``(1, 1, H, W)``.
    wet_threshold
        A cell is wet when ``true ≥ wet_threshold`` (mm/day).
    scale, w_min, w_max, tail_threshold, tail_boost
        Intensity weighting as in :func:`weighted_reconstruction`.

    Returns
    -------
    total, bce, intensity_term
        Scalars.
    """
    check_same_shape(p_wet, true, "p_wet and true")
    check_same_shape(intensity, true, "intensity and true")
    mask = as_mask(mask, true)
    p = as_float(p_wet).clamp(_BCE_EPS, 1.0 - _BCE_EPS)
    true = as_float(true)
    wet = true >= wet_threshold
    bce_cell = -torch.where(wet, p.log(), torch.log1p(-p))
    bce = masked_mean(bce_cell, mask)
    inten = weighted_reconstruction(
        intensity,
        true,
        mask & wet,
        scale=scale,
        w_min=w_min,
        w_max=w_max,
        tail_threshold=tail_threshold,
        tail_boost=tail_boost,
        wet_threshold=wet_threshold,
    )
    return bce + inten, bce, inten
