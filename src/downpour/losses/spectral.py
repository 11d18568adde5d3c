"""The spectral term: L1 distance of log Fourier amplitudes of masked fields."""

from __future__ import annotations

import torch

from downpour.losses.masked import (
    as_float,
    as_mask,
    batch_mean,
    check_same_shape,
    zero_like,
)

__all__ = ["spectral_loss"]


_SPECTRAL_EPS = 1e-6


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
    check_same_shape(pred, true, "pred and true")
    mask = as_mask(mask, pred)
    pred, true = as_float(pred), as_float(true)
    zero = zero_like(pred)
    amp_p = torch.fft.rfft2(torch.where(mask, pred, zero)).abs()
    amp_t = torch.fft.rfft2(torch.where(mask, true, zero)).abs()
    diff = (torch.log(amp_p + _SPECTRAL_EPS) - torch.log(amp_t + _SPECTRAL_EPS)).abs()
    valid = mask.expand_as(pred).flatten(1).any(dim=1)
    return batch_mean(diff.flatten(1).mean(dim=1), valid)
