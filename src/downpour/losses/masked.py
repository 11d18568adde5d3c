"""Masked means and pooling shared by the loss terms.

Conventions
-----------
- ``mask`` is a boolean ``(B, 1, H, W)`` or ``(1, 1, H, W)`` tensor of valid
  cells. A spatial mean is a *masked mean*: per item ``Σ(v·mask) / Σ mask``,
  then the mean over the items of the batch that have at least one valid
  cell (an item with none contributes nothing, instead of diluting the batch
  with a zero). A batch with no valid cell at all gives 0.
- Inputs are promoted to float32 (float64 stays float64) before any
  arithmetic (:func:`as_float`), so the terms are safe under bf16 autocast.

Examples
--------
>>> v = torch.tensor([[[[1.0, 3.0]]], [[[5.0, 7.0]]]])
>>> m = torch.tensor([[[[True, True]]], [[[False, False]]]])
>>> float(masked_mean(v, m))  # the second item has no valid cell
2.0
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "as_float",
    "as_mask",
    "batch_mean",
    "check_same_shape",
    "item_mean",
    "masked_mean",
    "masked_pool",
    "zero_like",
]


def as_float(t: torch.Tensor) -> torch.Tensor:
    """Promote a half-precision tensor to float32 (float32/float64 unchanged)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def as_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
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


def check_same_shape(a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    """Raise ``ValueError`` naming ``names`` when ``a`` and ``b`` differ in shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{names} must have the same shape, got {tuple(a.shape)}, {tuple(b.shape)}"
        )


def item_mean(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item masked mean ``(B,)`` and whether the item has any valid cell ``(B,)``."""
    m = mask.expand_as(values)
    dims = tuple(range(1, values.ndim))
    num = torch.where(m, values, torch.zeros((), dtype=values.dtype, device=values.device))
    count = m.sum(dim=dims).to(values.dtype)
    return num.sum(dim=dims) / count.clamp_min(1.0), count > 0


def batch_mean(per_item: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``per_item`` over the items flagged ``valid`` (0 when none is)."""
    v = valid.to(per_item.dtype)
    return (per_item * v).sum() / v.sum().clamp_min(1.0)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean over cells, averaged over the items that have valid cells."""
    return batch_mean(*item_mean(values, mask))


def zero_like(like: torch.Tensor) -> torch.Tensor:
    """Return a scalar 0 of ``like``'s device, in float32 or wider."""
    return torch.zeros((), dtype=torch.promote_types(like.dtype, torch.float32), device=like.device)


def masked_pool(
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
