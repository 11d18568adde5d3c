"""Fractions skill score as a loss: soft exceedance fractions in neighbourhoods.

The FSS (Roberts and Lean 2008) compares the fraction of cells above a
threshold in each ``s × s`` neighbourhood of forecast and observation::

    FSS = 1 − Σ (F − O)² / (Σ F² + Σ O²)

As a loss (Lagerquist et al. 2021 trained convection nowcasts on it), the
hard exceedance ``x > t`` becomes the sigmoid ``σ((x − t) / τ)``, and the
loss is ``1 − FSS`` averaged over thresholds and scales. Unlike an absolute
or squared error, it does not reward fading a forecast whose rain is
uncertain in place: a forecast without rain scores the worst possible 1,
and one whose rain is displaced by less than the scale is barely punished.
Neighbourhoods are means over ``s × s`` windows with zero padding at the edge
(as pysteps' FSS); masked cells count as no event in both fields.

Examples
--------
>>> x = torch.zeros(1, 1, 8, 8)
>>> x[0, 0, 3:5, 3:5] = 5.0
>>> valid = torch.ones_like(x, dtype=torch.bool)
>>> float(fss_loss(x, x, valid, [1.0], [1, 3]))
0.0
>>> round(float(fss_loss(torch.zeros_like(x), x, valid, [1.0], [3])), 3)  # faded: the worst
1.0
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["fss_loss"]


def fss_loss(
    pred: torch.Tensor,
    true: torch.Tensor,
    mask: torch.Tensor,
    thresholds: Sequence[float],
    scales: Sequence[int],
    *,
    sharpness: float = 0.1,
) -> torch.Tensor:
    """Return ``1 − FSS`` of soft exceedances, averaged over thresholds, scales and fields.

    Parameters
    ----------
    pred, true
        ``(B, K, H, W)`` in any space where the thresholds are given (e.g.
        the nowcaster's transformed rain).
    mask
        Valid cells, bool, broadcastable to ``pred``; invalid cells are no event.
    thresholds
        Event thresholds (``x > t``), in the space of ``pred``.
    scales
        Odd neighbourhood sizes in cells.
    sharpness
        ``τ`` of the sigmoid, in the units of ``pred``; at ``τ → 0`` the hard FSS.

    Returns
    -------
    torch.Tensor
        Scalar in [0, 1]: the mean over ``B × K`` fields, thresholds and
        scales; a field with no event in either is left out (its FSS is
        undefined), and the loss is 0 when every field is.
    """
    if sharpness <= 0:
        raise ValueError(f"fss_loss: sharpness must be > 0, got {sharpness}")
    if any(s < 1 or s % 2 == 0 for s in scales):
        raise ValueError(f"fss_loss: scales must be odd and ≥ 1, got {list(scales)}")
    b, k, h, w = pred.shape
    m = mask.expand_as(pred).to(pred.dtype)
    p = pred.reshape(b * k, 1, h, w)
    t = true.reshape(b * k, 1, h, w)
    m = m.reshape(b * k, 1, h, w)
    losses = []
    for thr in thresholds:
        ep = torch.sigmoid((p - thr) / sharpness) * m
        et = torch.sigmoid((t - thr) / sharpness) * m
        for s in scales:
            if s > 1:
                fp = F.avg_pool2d(ep, s, stride=1, padding=s // 2, count_include_pad=True)
                ft = F.avg_pool2d(et, s, stride=1, padding=s // 2, count_include_pad=True)
            else:
                fp, ft = ep, et
            num = (fp - ft).square().flatten(1).sum(1)
            den = (fp.square() + ft.square()).flatten(1).sum(1)
            defined = den > 1e-6
            losses.append(torch.where(defined, num / den.clamp_min(1e-6), torch.zeros_like(num)))
            losses.append(defined.to(num.dtype))
    values = torch.stack(losses[0::2])  # (T·S, B·K)
    defined = torch.stack(losses[1::2])
    n = defined.sum()
    return values.sum() / n if n > 0 else values.sum() * 0.0
