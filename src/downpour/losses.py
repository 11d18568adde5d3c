"""Every loss term of the cVAE (and the nowcaster's spectral term), one function each.

Conventions shared by every term
--------------------------------
- Fields are ``(B, 1, H, W)`` tensors in **physical units** (mm/day): callers
  convert the network's log1p-space output with :func:`torch.expm1`
  (:func:`cvae_loss` does this itself).
- ``mask`` is a boolean ``(B, 1, H, W)`` or ``(1, 1, H, W)`` tensor of valid
  (land) cells. A spatial mean is a *masked mean*: per item
  ``Σ(v·mask) / Σ mask``, then the mean over the items of the batch that have
  at least one valid cell (an item with none contributes nothing, instead of
  diluting the batch with a zero). A batch with no valid cell at all gives 0.
- Inputs are promoted to float32 (float64 stays float64) before any
  arithmetic, so the terms are safe under bf16 autocast; every term is finite
  with finite gradients for all-dry batches and for items without valid cells.
- Vectorised: no Python loop over samples or pixels.

The weights of the terms live in :class:`downpour.config.LossConfig`;
:func:`cvae_loss` combines them and returns every term for logging.

Examples
--------
>>> pred = torch.tensor([[[[1.0, 3.0], [0.0, 5.0]]]])
>>> true = torch.tensor([[[[2.0, 3.0], [0.0, 9.0]]]])
>>> mask = torch.tensor([[[[True, True], [True, False]]]])
>>> round(float(mass_conservation(pred, true, mask)), 4)  # |4/3 - 5/3|
0.3333
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from downpour.config import LossConfig
from downpour.models.outputs import CVAEOutput

__all__ = [
    "GRAD_VARIANTS",
    "cvae_loss",
    "extreme_focal",
    "gradient_loss",
    "hurdle_loss",
    "kl_divergence",
    "mass_conservation",
    "multiscale_reconstruction",
    "nowcast_loss",
    "sparsity",
    "spectral_loss",
    "weighted_reconstruction",
]

#: Variants of :func:`gradient_loss`.
GRAD_VARIANTS = ("signed", "magnitude")

_BCE_EPS = 1e-6
_SPECTRAL_EPS = 1e-6


# ----------------------------------------------------------------------- helpers


def _fp(t: torch.Tensor) -> torch.Tensor:
    """Promote a half-precision tensor to float32 (float32/float64 unchanged)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _as_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Return ``mask`` as bool, checked to broadcast against ``like`` (B, 1, H, W)."""
    if mask.ndim != 4 or like.ndim != 4:
        raise ValueError(
            f"fields and mask must be 4-D (B, 1, H, W), got {tuple(like.shape)} "
            f"and mask {tuple(mask.shape)}"
        )
    if mask.shape[0] not in (1, like.shape[0]) or tuple(mask.shape[1:]) != tuple(like.shape[1:]):
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not match fields of shape "
            f"{tuple(like.shape)}; expected (B, 1, H, W) or (1, 1, H, W)"
        )
    return mask.to(device=like.device, dtype=torch.bool)


def _same_shape(a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{names} must have the same shape, got {tuple(a.shape)}, {tuple(b.shape)}"
        )


def _item_mean(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item masked mean ``(B,)`` and whether the item has any valid cell ``(B,)``."""
    m = mask.expand_as(values)
    dims = tuple(range(1, values.ndim))
    num = torch.where(m, values, torch.zeros((), dtype=values.dtype, device=values.device))
    count = m.sum(dim=dims).to(values.dtype)
    return num.sum(dim=dims) / count.clamp_min(1.0), count > 0


def _batch_mean(per_item: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``per_item`` over the items flagged ``valid`` (0 when none is)."""
    v = valid.to(per_item.dtype)
    return (per_item * v).sum() / v.sum().clamp_min(1.0)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean over cells, averaged over the items that have valid cells."""
    return _batch_mean(*_item_mean(values, mask))


def _zero(like: torch.Tensor) -> torch.Tensor:
    return torch.zeros((), dtype=torch.promote_types(like.dtype, torch.float32), device=like.device)


def _masked_pool(
    x: torch.Tensor, mask: torch.Tensor, factor: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Average the valid cells of each ``factor × factor`` block (ceil mode).

    A coarse cell is valid when any of its fine cells is; its value is the mean
    of those valid cells (0 for an invalid coarse cell). Odd sizes keep the
    partial last block (``ceil_mode``); the partial block's divisor cancels
    because values and mask are pooled alike.
    """
    if factor == 1:
        return x, mask
    m = mask.to(x.dtype)
    num = F.avg_pool2d(x * m, factor, ceil_mode=True)
    den = F.avg_pool2d(m, factor, ceil_mode=True)
    valid = den > 0
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    coarse = torch.where(valid, num / den.clamp_min(1e-12), zero)
    return coarse, valid


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


# ------------------------------------------------------------------------- terms


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
    _same_shape(pred, true, "pred and true")
    mask = _as_mask(mask, pred)
    pred, true = _fp(pred), _fp(true)
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
    return _masked_mean(w * (pred - true).abs(), mask)


def mass_conservation(pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Domain-mean mass difference in mm/day.

    ``loss = mean_b |mean_land(pred_b) − mean_land(true_b)|``.

    An absolute difference of land means, not a ratio such as
    ``Σpred / Σtrue − 1`` (the *mass bias* metric of DESIGN §8.1): on a dry
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
    _same_shape(pred, true, "pred and true")
    mask = _as_mask(mask, pred)
    mean_p, valid = _item_mean(_fp(pred), mask)
    mean_t, _ = _item_mean(_fp(true), mask)
    return _batch_mean((mean_p - mean_t).abs(), valid)


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
    _same_shape(mu, logvar, "mu and logvar")
    mu, logvar = _fp(mu), _fp(logvar)
    pmu = torch.zeros_like(mu) if prior_mu is None else _fp(prior_mu)
    plv = torch.zeros_like(logvar) if prior_logvar is None else _fp(prior_logvar)
    _same_shape(mu, pmu, "mu and prior_mu")
    _same_shape(logvar, plv, "logvar and prior_logvar")
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
    mask = _as_mask(mask, pred)
    soft = torch.sigmoid((_fp(pred) - wet_threshold) / temperature)
    wet, valid = _item_mean(soft, mask)
    return _batch_mean((wet - target_wet).abs(), valid)


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
    fine cells of each ``2^k × 2^k`` block (:func:`_masked_pool`; a coarse
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
    _same_shape(pred, true, "pred and true")
    mask = _as_mask(mask, pred)
    pred, true = _fp(pred), _fp(true)
    total = _zero(pred)
    for level, weight in enumerate(weights):  # a few levels, not samples or pixels
        if weight == 0:
            continue
        factor = 2**level
        p, m_coarse = _masked_pool(pred, mask, factor)
        t, _ = _masked_pool(true, mask, factor)
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
    _same_shape(pred, true, "pred and true")
    mask = _as_mask(mask, pred)
    pred, true = _fp(pred), _fp(true)
    total = _zero(pred)
    for dim in (-1, -2):  # the two directions
        n = pred.shape[dim]
        if n < 2:
            continue
        dp = pred.narrow(dim, 1, n - 1) - pred.narrow(dim, 0, n - 1)
        dt = true.narrow(dim, 1, n - 1) - true.narrow(dim, 0, n - 1)
        pair = mask.narrow(dim, 1, n - 1) & mask.narrow(dim, 0, n - 1)
        err = (dp - dt).abs() if variant == "signed" else (dp.abs() - dt.abs()).abs()
        total = total + _masked_mean(err, pair)
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
    _same_shape(pred, true, "pred and true")
    mask = _as_mask(mask, pred)
    pred, true = _fp(pred), _fp(true)
    e = (pred - true).abs()
    focal = (-torch.expm1(-e)).clamp_min(1e-12).pow(gamma)
    weight = torch.where(true >= threshold, 1.0 + boost * focal, torch.ones_like(e))
    return _masked_mean(weight * e, mask)


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
    _same_shape(p_wet, true, "p_wet and true")
    _same_shape(intensity, true, "intensity and true")
    mask = _as_mask(mask, true)
    p = _fp(p_wet).clamp(_BCE_EPS, 1.0 - _BCE_EPS)
    true = _fp(true)
    wet = true >= wet_threshold
    bce_cell = -torch.where(wet, p.log(), torch.log1p(-p))
    bce = _masked_mean(bce_cell, mask)
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


def spectral_loss(pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L1 between log Fourier amplitudes of the masked fields.

    ``A(f) = |rfft2(where(mask, f, 0))|`` over the last two dims;
    ``loss = mean_b mean_freq |log(A(pred) + 1e-6) − log(A(true) + 1e-6)|``.
    The log compares the shape of the spectrum (how energy is spread over
    scales) rather than being dominated by the mean (the zero frequency).

    Parameters
    ----------
    pred, true
        ``(B, C, H, W)`` (``C = 1`` for the cVAE; any for the nowcaster), mm/day.
    mask
        Valid cells, broadcastable ``(B, C, H, W)`` or ``(1, C, H, W)``.

    Returns
    -------
    torch.Tensor
        Scalar loss; items without valid cells are left out.
    """
    _same_shape(pred, true, "pred and true")
    mask = _as_mask(mask, pred)
    pred, true = _fp(pred), _fp(true)
    zero = _zero(pred)
    amp_p = torch.fft.rfft2(torch.where(mask, pred, zero)).abs()
    amp_t = torch.fft.rfft2(torch.where(mask, true, zero)).abs()
    diff = (torch.log(amp_p + _SPECTRAL_EPS) - torch.log(amp_t + _SPECTRAL_EPS)).abs()
    valid = mask.expand_as(pred).flatten(1).any(dim=1)
    return _batch_mean(diff.flatten(1).mean(dim=1), valid)


# ------------------------------------------------------------------------- total


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
    pred = torch.expm1(_fp(out.y_hat))
    true = torch.expm1(_fp(y_log))
    recon_kw: dict[str, float] = {
        "scale": cfg.scale,
        "w_min": cfg.w_min,
        "w_max": cfg.w_max,
        "tail_threshold": tail_threshold,
        "tail_boost": cfg.tail_boost,
        "dry_weight": cfg.dry_weight,
        "wet_threshold": wet_threshold,
    }
    zero = _zero(pred)
    kl, kl_raw = kl_divergence(
        out.mu, out.logvar, out.prior_mu, out.prior_logvar, free_bits=cfg.free_bits
    )
    weighted: list[tuple[str, float, Callable[[], torch.Tensor]]] = [
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
    total = weighted_reconstruction(pred, true, mask, **recon_kw)
    terms: dict[str, torch.Tensor] = {"recon": total}
    for name, weight, compute in weighted:
        terms[name] = compute() if weight != 0 else zero
        if weight != 0:
            total = total + weight * terms[name]
    terms["kl"], terms["kl_raw"] = kl, kl_raw  # reported even when beta == 0
    if head == "hurdle":
        if out.p_wet is None or out.intensity is None:
            raise ValueError("head 'hurdle' needs out.p_wet and out.intensity")
        terms["hurdle"] = terms["bce"] = terms["intensity"] = zero
        if cfg.lambda_hurdle != 0:
            terms["hurdle"], terms["bce"], terms["intensity"] = hurdle_loss(
                out.p_wet,
                torch.expm1(_fp(out.intensity)),
                true,
                mask,
                wet_threshold=wet_threshold,
                scale=cfg.scale,
                w_min=cfg.w_min,
                w_max=cfg.w_max,
                tail_threshold=tail_threshold,
                tail_boost=cfg.tail_boost,
            )
            total = total + cfg.lambda_hurdle * terms["hurdle"]
    terms["total"] = total
    return total, terms


# ---------------------------------------------------------------------- nowcast


def nowcast_loss(
    pred: torch.Tensor,
    true: torch.Tensor,
    mask: torch.Tensor,
    *,
    w_l1: float = 0.4,
    w_spectral: float = 0.3,
    w_mse: float = 0.2,
    w_grad: float = 0.1,
    spectral: str = "amplitude",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Return the nowcast loss ``w_l1·L1 + w_spectral·spectral + w_mse·MSE + w_grad·gradient``.

    ``L1 = masked_mean |pred − true|``, ``MSE = masked_mean (pred − true)²``,
    ``gradient`` is the signed :func:`gradient_loss` and ``spectral`` compares
    Fourier amplitudes of the masked fields (no-data as 0), per item and step:

    - ``"amplitude"`` (default): ``mean_freq |A(pred) − A(true)|`` with
      ``A = |rfft2(·, norm="ortho")|``. Amplitudes ignore the phase, so a sharp
      cell in a slightly wrong place is not punished for being sharp, while a
      blurred forecast (high-frequency amplitude lost) is;
    - ``"log"``: :func:`spectral_loss` (L1 of log amplitudes). Its gradient
      ``1 / (A + 1e-6)`` is huge at the near-empty high frequencies of smooth
      rain fields; on the embedded radar it swamped the other terms and the
      network did not move away from persistence.

    The nowcaster applies the loss in its transformed space (log1p or dBR,
    :func:`downpour.data.radar.rain_transform`), where heavy rain does not
    swamp the squared error. A term whose weight is 0 is not computed and is
    reported as 0.

    Parameters
    ----------
    pred, true
        ``(B, K, H, W)``: ``K`` forecast steps (1 for one-step training).
    mask
        Valid cells, bool, ``(B, 1, H, W)``, ``(1, 1, H, W)`` or ``(B, K, H, W)``.
    w_l1, w_spectral, w_mse, w_grad
        Weights (``nowcast.w_*``; DESIGN §6: 0.4, 0.3, 0.2, 0.1).
    spectral
        ``"amplitude"`` or ``"log"`` (``nowcast.spectral``).

    Returns
    -------
    total
        Scalar loss to back-propagate.
    terms
        Unweighted ``l1, spectral, mse, grad`` and ``total`` (not detached).

    Examples
    --------
    >>> pred, true = torch.tensor([[[[1.0, 3.0]]]]), torch.tensor([[[[2.0, 3.0]]]])
    >>> mask = torch.ones(1, 1, 1, 2, dtype=torch.bool)
    >>> _, terms = nowcast_loss(pred, true, mask)
    >>> [round(float(terms[k]), 4) for k in ("l1", "mse", "grad", "spectral")]
    [0.5, 0.5, 1.0, 0.7071]
    """
    if spectral not in ("amplitude", "log"):
        raise ValueError(f"unknown spectral term {spectral!r}; valid: 'amplitude', 'log'")
    _same_shape(pred, true, "pred and true")
    if mask.ndim == 4 and pred.ndim == 4 and mask.shape[1] == 1:
        mask = mask.expand(mask.shape[0], *pred.shape[1:])  # one mask for every step
    mask = _as_mask(mask, pred)
    pred, true = _fp(pred), _fp(true)
    err = pred - true
    zero = _zero(pred)

    def amplitude() -> torch.Tensor:
        m = mask.expand_as(pred)
        amp_p = torch.fft.rfft2(torch.where(m, pred, zero), norm="ortho").abs()
        amp_t = torch.fft.rfft2(torch.where(m, true, zero), norm="ortho").abs()
        per_item = (amp_p - amp_t).abs().flatten(1).mean(dim=1)
        return _batch_mean(per_item, m.flatten(1).any(dim=1))

    parts: list[tuple[str, float, Callable[[], torch.Tensor]]] = [
        ("l1", w_l1, lambda: _masked_mean(err.abs(), mask)),
        (
            "spectral",
            w_spectral,
            amplitude if spectral == "amplitude" else lambda: spectral_loss(pred, true, mask),
        ),
        ("mse", w_mse, lambda: _masked_mean(err.square(), mask)),
        ("grad", w_grad, lambda: gradient_loss(pred, true, mask, variant="signed")),
    ]
    total = zero
    terms: dict[str, torch.Tensor] = {}
    for name, weight, compute in parts:
        terms[name] = compute() if weight != 0 else zero
        if weight != 0:
            total = total + weight * terms[name]
    terms["total"] = total
    return total, terms
