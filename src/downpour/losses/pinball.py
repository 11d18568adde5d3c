"""The pinball (quantile) loss of a multi-quantile prediction, one term per head.

For a head of level τ predicting ``q`` and the truth ``y`` (both mm/day), the
loss of a cell is

    ρ_τ(y − q) = max(τ·(y − q), (τ − 1)·(y − q)),

which is minimised, over a constant ``q``, by the τ-quantile of ``y``: a
head is pulled up by τ where the truth lies above it and down by 1 − τ
where it lies below. Each head's term is the masked mean of
:mod:`downpour.losses.masked` (per item over its valid cells, then over the
items that have any), optionally with per-item weights; the total is the
**mean of the heads' terms** (each head weighs 1/Q, so adding a head does
not rescale the others' gradients in proportion to their number).

Examples
--------
>>> pred = torch.tensor([[[[1.0, 3.0]], [[2.0, 4.0]]]])  # (1, 2, 1, 2): heads τ = 0.5, 0.9
>>> truth = torch.tensor([[[[2.0, 0.0]]]])
>>> mask = torch.ones(1, 1, 1, 2, dtype=torch.bool)
>>> total, terms = pinball_loss(pred, truth, mask, [0.5, 0.9])
>>> {k: round(float(v), 4) for k, v in terms.items()}  # (0.5 + 1.5)/2 and (0 + 0.4)/2
{'pinball_0.5': 1.0, 'pinball_0.9': 0.2, 'total': 0.6}
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from downpour.losses.combine import weighted_sum
from downpour.losses.masked import as_float, as_mask, zero_like

__all__ = ["pinball_loss", "pinball_name"]


def pinball_name(tau: float) -> str:
    """Name of the term of the head of level ``tau``: ``"pinball_0.95"`` (shortest exact form).

    Examples
    --------
    >>> pinball_name(0.5), pinball_name(0.999)
    ('pinball_0.5', 'pinball_0.999')
    """
    return f"pinball_{float(tau)!r}"


def pinball_loss(
    pred: torch.Tensor,
    truth: torch.Tensor,
    mask: torch.Tensor,
    taus: Sequence[float],
    *,
    item_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Masked pinball loss of every quantile head, and their mean.

    Parameters
    ----------
    pred
        Predicted quantiles ``(B, Q, H, W)``, mm/day, head k at level ``taus[k]``.
    truth
        ``(B, 1, H, W)``, mm/day.
    mask
        Valid cells, bool, ``(B, 1, H, W)`` or ``(1, 1, H, W)``.
    taus
        The Q quantile levels, each in (0, 1).
    item_weights
        Non-negative weights of the items in each head's mean, ``(B,)`` (all
        heads) or ``(B, Q)`` (per head); no gradient flows through them.
        Default 1. Head k's term is ``Σ_b w_bk · m_bk / Σ_b w_bk`` over the
        items with valid cells, ``m_bk`` the item's masked mean; a head whose
        items all weigh 0 (or have no valid cell) has the term 0 and gets no
        gradient, so an item of weight 0 in a head changes nothing there.

    Returns
    -------
    total
        Scalar: the mean of the Q terms (float32 or wider).
    terms
        ``{pinball_name(τ): term}`` for every head, and ``"total"``.

    Raises
    ------
    ValueError
        Shapes that do not match, ``len(taus) != Q``, a τ outside (0, 1), or
        negative weights.
    """
    if pred.ndim != 4 or truth.ndim != 4 or truth.shape[1] != 1:
        raise ValueError(
            f"pred must be (B, Q, H, W) and truth (B, 1, H, W), got {tuple(pred.shape)} "
            f"and {tuple(truth.shape)}"
        )
    b, q = pred.shape[:2]
    if truth.shape[0] != b or truth.shape[2:] != pred.shape[2:]:
        raise ValueError(
            f"truth {tuple(truth.shape)} does not match pred {tuple(pred.shape)} (B, ·, H, W)"
        )
    taus = [float(t) for t in taus]
    if len(taus) != q or any(not 0.0 < t < 1.0 for t in taus):
        raise ValueError(f"need {q} quantile levels in (0, 1), one per head, got {taus}")
    mask = as_mask(mask, truth)
    pred, truth = as_float(pred), as_float(truth)
    dtype, dev = torch.promote_types(pred.dtype, truth.dtype), pred.device

    tau = torch.tensor(taus, dtype=dtype, device=dev).view(1, q, 1, 1)
    d = truth - pred  # (B, Q, H, W)
    rho = torch.maximum(tau * d, (tau - 1.0) * d)
    m = mask.expand(b, 1, *truth.shape[2:])
    zero = torch.zeros((), dtype=dtype, device=dev)
    per_item = torch.where(m, rho, zero).sum(dim=(2, 3))  # (B, Q)
    count = m.sum(dim=(2, 3)).to(dtype)  # (B, 1)
    per_item = per_item / count.clamp_min(1.0)

    w = torch.ones(b, q, dtype=dtype, device=dev)
    if item_weights is not None:
        iw = item_weights.detach().to(device=dev, dtype=dtype)
        if iw.shape not in ((b,), (b, q)):
            raise ValueError(
                f"item_weights must be ({b},) or ({b}, {q}), got {tuple(item_weights.shape)}"
            )
        if bool((iw < 0).any()) or not bool(torch.isfinite(iw).all()):
            raise ValueError("item_weights must be finite and ≥ 0")
        w = w * (iw[:, None] if iw.ndim == 1 else iw)
    w = w * (count > 0).to(dtype)  # items without a valid cell take no part
    den = w.sum(dim=0)
    head = (w * per_item).sum(dim=0) / torch.where(den > 0, den, torch.ones_like(den))  # (Q,)

    table = [(pinball_name(t), 1.0 / q, lambda k=k: head[k]) for k, t in enumerate(taus)]
    return weighted_sum(table, zero=zero_like(pred))
