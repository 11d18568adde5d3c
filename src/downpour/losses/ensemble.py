"""Ensemble scores as training losses: the almost-fair CRPS per cell, on block means, on spectra.

Layout
------
- ``members`` is ``(B, M, H, W)``: ``M ≥ 2`` members for each of ``B``
  inputs, all members of one input in one batch row. Keep that row whole:
  under DDP a sampler or a reshape that spreads the ``B·M`` decoded fields
  over ranks scores members of different inputs against each other.
- ``truth`` is ``(B, H, W)`` or ``(B, 1, H, W)``.
- ``mask`` marks valid cells, bool ``(H, W)``, ``(B, H, W)``, ``(B, 1, H, W)``
  or ``(1, 1, H, W)``; ``None``: every cell is valid. Masked cells of members
  and truth are replaced by 0 before any arithmetic, so NaN there (e.g. sea
  cells) neither reaches the score nor the gradient.
- Inputs are promoted to float32 (float64 stays float64) and the score uses
  no matmul, so a bf16 autocast region does not lower its precision.

The almost-fair CRPS (Lang et al. 2024, AIFS-CRPS)
--------------------------------------------------
For members ``x_1..x_M`` and truth ``y`` at one cell, with
``ε = (1 − α)/M``::

    afCRPS_α = 1/(2M(M−1)) Σ_{i≠j} ( |x_i − y| + |x_j − y| − (1 − ε)|x_i − x_j| )
             = (1/M) Σ_i |x_i − y|  −  (1 − ε)/(2M(M−1)) Σ_i Σ_j |x_i − x_j|

It is the mixture ``afCRPS_α = α·fair + (1 − α)·ecdf`` of the fair and the
standard (ECDF) estimators

- ``fair = (1/M) Σ|x_i − y| − 1/(2M(M−1)) ΣΣ|x_i − x_j|``,
- ``ecdf = (1/M) Σ|x_i − y| − 1/(2M²) ΣΣ|x_i − x_j|``,

because ``α/(2M(M−1)) + (1 − α)/(2M²) = (M − 1 + α)/(2M²(M−1))
= (1 − ε)/(2M(M−1))``. So ``α = 1`` is the fair CRPS, ``α = 0`` the ECDF
one (the definitions of :mod:`downpour.metrics.ensemble`).

Properties (the tests check the score's sign, its zeros, the outermost
members' gradient, the bias and the expected Gaussian score at s = 0.5, 1, 1.5):

- By the triangle inequality every pair term is ≥ 0, so the score is ≥ 0;
  for ``α < 1`` it is 0 only when every member equals ``y``. The fair score
  is also 0 whenever ``y`` lies between the members of every pair (with
  ``M = 2``: any pair that brackets the truth), and the lowest member below
  ``y`` (or the highest above it) gets no gradient from it: its derivative is
  ``−1/M + (1 − ε)/M = −ε/M``, zero for ``α = 1``. That degeneracy is why
  AIFS trains with ``α`` slightly below 1.
- For members drawn independently from ``F``, the expected score is
  ``CRPS(F, y) + (1 − α)·E|X − X'|/(2M)``: the fair score is unbiased, the
  ECDF one rewards too little spread. For a Gaussian truth ``N(0, 1)`` and
  Gaussian members ``N(0, s²)`` the expected score is
  ``(√(2(1 + s²)) − (1 − ε)s)/√π``, minimal at ``s² = (1 − ε)²/(2 − (1 − ε)²)``:
  ``s = 1`` for ``α = 1``, ``s ≈ 0.975`` for ``α = 0.95, M = 4``, ``s ≈ 0.63``
  for the ECDF score with ``M = 4``.

Computation: with the members sorted at each cell, ``x_(1) ≤ … ≤ x_(M)``,
``ΣΣ|x_i − x_j| = 2 Σ_k (2k − M − 1) x_(k) = 2 Σ_{k<M} k(M − k)(x_(k+1) − x_(k))``;
the last form (non-negative gaps, no cancellation of large values, exactly 0
for equal members) is used: ``O(M log M)`` time per cell, vectorised over cells.
Memory: the sorted copy and its gaps (each about the size of ``members``)
and the sort's int64 indices, instead of the ``(B, M, M, H, W)`` pairwise
tensor. Gradients reach every member through the sort; at tied members (e.g.
several exactly-dry members) the (valid) subgradient follows the stable sort
order.

Examples
--------
>>> x = torch.tensor([0.0, 2.0]).reshape(1, 2, 1, 1)  # one cell, two members
>>> y = torch.ones(1, 1, 1)
>>> [round(float(almost_fair_crps(x, y, alpha=a)), 4) for a in (0.0, 0.95, 1.0)]
[0.5, 0.025, 0.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from downpour.losses.masked import as_float, batch_mean, masked_pool

__all__ = [
    "almost_fair_crps",
    "ensemble_mean",
    "pooled_crps",
    "spectral_crps",
]

#: Accepted values of ``reduction`` in :func:`almost_fair_crps`.
REDUCTIONS = ("mean", "none")


def _valid_cells(
    mask: torch.Tensor | None, b: int, h: int, w: int, device: torch.device
) -> torch.Tensor:
    """Return ``mask`` as bool ``(B, H, W)`` or ``(1, H, W)``, checked against the fields."""
    if mask is None:
        return torch.ones(1, h, w, dtype=torch.bool, device=device)
    m = mask
    if m.ndim == 2:
        m = m[None]
    elif m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim != 3 or m.shape[0] not in (1, b) or tuple(m.shape[1:]) != (h, w):
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not match fields of {b} items of "
            f"{h}×{w} cells; expected (H, W), (B, H, W), (B, 1, H, W) or (1, 1, H, W)"
        )
    return m.to(device=device, dtype=torch.bool)


def _prepare(
    members: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor | None, alpha: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check shapes; return ``(x (B, M, H, W), y (B, H, W), valid)`` zeroed where invalid."""
    if members.ndim != 4:
        raise ValueError(f"members must be (B, M, H, W), got shape {tuple(members.shape)}")
    b, m, h, w = members.shape
    if m < 2:
        raise ValueError(f"the ensemble scores need at least 2 members per input, got M = {m}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    y = truth[:, 0] if truth.ndim == 4 and truth.shape[1] == 1 else truth
    if tuple(y.shape) != (b, h, w):
        raise ValueError(
            f"truth of shape {tuple(truth.shape)} does not match members "
            f"{tuple(members.shape)}; expected (B, H, W) or (B, 1, H, W)"
        )
    valid = _valid_cells(mask, b, h, w, members.device)
    dtype = torch.promote_types(torch.promote_types(members.dtype, truth.dtype), torch.float32)
    zero = torch.zeros((), dtype=dtype, device=members.device)
    x = torch.where(valid[:, None], as_float(members).to(dtype), zero)
    y = torch.where(valid, as_float(y).to(dtype), zero)
    return x, y, valid


def _crps_per_point(x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """Almost-fair CRPS of members ``x`` ``(B, M, ...)`` against ``y`` ``(B, ...)``."""
    m = x.shape[1]
    eps = (1.0 - alpha) / m
    skill = (x - y.unsqueeze(1)).abs().mean(dim=1)
    ranked = torch.sort(x, dim=1, stable=True).values
    gaps = ranked[:, 1:] - ranked[:, :-1]  # ≥ 0
    k = torch.arange(1, m, dtype=x.dtype, device=x.device)
    coef = (k * (m - k)).reshape(1, m - 1, *([1] * (x.ndim - 2)))
    half_pairs = (coef * gaps).sum(dim=1)  # Σ_{i<j} |x_i − x_j| = ½ ΣΣ|x_i − x_j|
    return skill - (1.0 - eps) * half_pairs / (m * (m - 1))


def _masked_average(
    values: torch.Tensor, valid: torch.Tensor, weights: torch.Tensor | None
) -> torch.Tensor:
    """Weighted mean over the valid cells of each item, then over items that have any."""
    w = valid.to(values.dtype)
    if weights is not None:
        w = w * as_float(weights).to(device=values.device, dtype=values.dtype)
    w = w.expand_as(values)
    num = (w * values).sum(dim=(1, 2))
    den = w.sum(dim=(1, 2))
    has_cells = den > 0
    per_item = num / torch.where(has_cells, den, torch.ones_like(den))
    return batch_mean(per_item, has_cells)


def almost_fair_crps(
    members: torch.Tensor,
    truth: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    alpha: float = 0.95,
    weights: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Almost-fair CRPS of an ensemble against the truth, per cell (module docstring).

    Parameters
    ----------
    members
        ``(B, M, H, W)``, ``M ≥ 2`` members per input, all of one input in one row.
    truth
        ``(B, H, W)`` or ``(B, 1, H, W)``, same units as the members.
    mask
        Valid cells, bool ``(H, W)``, ``(B, H, W)``, ``(B, 1, H, W)`` or
        ``(1, 1, H, W)``; ``None``: all valid.
    alpha
        Fairness in ``[0, 1]``: 1 the fair CRPS, 0 the ECDF (standard) one.
    weights
        Optional non-negative cell weights (e.g. cell areas) broadcastable to
        ``(B, H, W)``; used by ``reduction="mean"`` only.
    reduction
        ``"mean"``: per input, the (weighted) mean over its valid cells, then
        the mean over the inputs that have a valid cell (of positive weight);
        0, still attached to the graph, when no input has one.
        ``"none"``: the per-cell map.

    Returns
    -------
    torch.Tensor
        A scalar, or ``(B, H, W)`` with 0 at masked cells; float32 or wider.

    Examples
    --------
    >>> members = torch.tensor([[[[0.0, 5.0]], [[2.0, 5.0]]]])  # (1, 2, 1, 2)
    >>> truth = torch.tensor([[[1.0, 9.0]]])                  # (1, 1, 2)
    >>> almost_fair_crps(members, truth, alpha=1.0, reduction="none")
    tensor([[[0., 4.]]])
    >>> float(almost_fair_crps(members, truth, torch.tensor([[True, False]]), alpha=1.0))
    0.0
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")
    x, y, valid = _prepare(members, truth, mask, alpha)
    score = _crps_per_point(x, y, alpha)
    if reduction == "none":
        return torch.where(valid, score, torch.zeros((), dtype=score.dtype, device=score.device))
    return _masked_average(score, valid, weights)


def pooled_crps(
    members: torch.Tensor,
    truth: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    scales: Sequence[int] = (4, 12),
    alpha: float = 0.95,
) -> dict[int, torch.Tensor]:
    """Almost-fair CRPS of block-averaged members against the block-averaged truth.

    At scale ``s`` every member and the truth are averaged over
    non-overlapping ``s × s`` blocks, over the valid cells only: a block's
    value is the mean of its valid cells, and a block without any valid cell
    is left out. When ``H`` or ``W`` is not a multiple of ``s`` the partial
    blocks at the bottom and right edges are kept (nothing dropped, nothing
    padded with values; :func:`downpour.losses.masked.masked_pool`, as in
    the multi-scale reconstruction term). Each kept block counts once in the
    mean, then the mean over inputs, as in :func:`almost_fair_crps`. So
    area totals and the placement of rain at scale ``s`` are scored, which
    the per-cell score cannot see.

    Parameters
    ----------
    members, truth, mask
        As in :func:`almost_fair_crps`.
    scales
        Block sizes in cells (1 is the per-cell score).
    alpha
        As in :func:`almost_fair_crps`.

    Returns
    -------
    dict[int, torch.Tensor]
        ``{scale: scalar score}`` in the order of ``scales``.

    Examples
    --------
    >>> members = torch.tensor([[[[0.0, 2.0]], [[4.0, 6.0]]]])  # (1, 2, 1, 2)
    >>> truth = torch.tensor([[[3.0, 3.0]]])
    >>> {s: float(v) for s, v in pooled_crps(members, truth, scales=(2,), alpha=0.0).items()}
    {2: 1.0}
    """
    x, y, valid = _prepare(members, truth, mask, alpha)
    out: dict[int, torch.Tensor] = {}
    for s in scales:  # a few scales, not cells
        if int(s) != s or s < 1:
            raise ValueError(f"pooled_crps: scales must be positive integers, got {s!r}")
        s = int(s)
        xp, vp = masked_pool(x, valid[:, None], s)
        yp, _ = masked_pool(y[:, None], valid[:, None], s)
        out[s] = _masked_average(_crps_per_point(xp, yp[:, 0], alpha), vp[:, 0], None)
    return out


def _radial_bins(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Flat indices of the FFT modes with radial wavenumber 1..L//2, their bin, and the bin count.

    The wavenumber of mode ``(ky, kx)`` is ``√((ky·L/H)² + (kx·L/W)²)`` in
    cycles per ``L = max(H, W)`` cells, rounded to an integer bin.
    """
    size = max(h, w)
    ky = torch.fft.fftfreq(h, device=device, dtype=torch.float64) * size
    kx = torch.fft.fftfreq(w, device=device, dtype=torch.float64) * size
    radius = torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2).round().long().flatten()
    keep = (radius >= 1) & (radius <= size // 2)
    return keep.nonzero().flatten(), radius[keep] - 1, size // 2


def _radial_amplitude(
    fields: torch.Tensor, index: torch.Tensor, bins: torch.Tensor, n_bins: int
) -> torch.Tensor:
    """Mean Fourier amplitude (orthonormal FFT) per radial bin: ``(..., H, W)`` -> ``(..., K)``."""
    amp = torch.fft.fft2(fields, norm="ortho").abs().flatten(-2)[..., index]
    total = torch.zeros(*amp.shape[:-1], n_bins, dtype=amp.dtype, device=amp.device)
    total = total.index_add(-1, bins, amp)
    count = torch.bincount(bins, minlength=n_bins).to(amp.dtype)
    return total / count


def spectral_crps(
    members: torch.Tensor,
    truth: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    alpha: float = 0.95,
    eps: float = 1e-3,
) -> torch.Tensor:
    """Almost-fair CRPS of the members' log radial amplitude spectra against the truth's.

    Masked cells of members and truth are set to 0, then each field's 2-D
    FFT (orthonormal, so amplitudes do not grow with the grid) gives
    amplitudes ``|F(ky, kx)|``, averaged over rings of radial wavenumber
    ``k = 1 .. L//2`` (``L = max(H, W)``, ``k`` in cycles per ``L`` cells;
    the mean, ``k = 0``, is left to the per-cell and pooled scores, and the
    corners beyond ``L//2`` are left out). The score is the almost-fair CRPS
    of ``log(A_k + eps)`` per ring, averaged over rings with equal weight
    (the log makes a factor-2 deficit count alike at every scale), then over
    inputs that have a valid cell. It is proper for the distribution of the
    spectrum, not for the field: it rewards members whose small-scale
    variability has the truth's amplitude, whatever its placement. The FFT
    treats the domain as periodic, and the masked-out cells leave their edge
    in the spectrum; truth and members share both, so they cancel on average.

    Parameters
    ----------
    members, truth, mask
        As in :func:`almost_fair_crps`; ``max(H, W) ≥ 2``.
    alpha
        As in :func:`almost_fair_crps`.
    eps
        Added to amplitudes before the log, in the fields' units; keeps
        all-dry fields finite (their log amplitude is ``log eps``).

    Returns
    -------
    torch.Tensor
        Scalar; 0 when every member equals the truth.

    Examples
    --------
    >>> truth = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> float(spectral_crps(torch.stack([truth, truth], dim=1), truth))
    0.0
    """
    x, y, valid = _prepare(members, truth, mask, alpha)
    h, w = x.shape[-2:]
    if max(h, w) < 2:
        raise ValueError(f"spectral_crps needs at least 2 cells along one axis, got {h}×{w}")
    index, bins, n_bins = _radial_bins(h, w, x.device)
    log_x = torch.log(_radial_amplitude(x, index, bins, n_bins) + eps)
    log_y = torch.log(_radial_amplitude(y, index, bins, n_bins) + eps)
    per_item = _crps_per_point(log_x, log_y, alpha).mean(dim=-1)
    has_cells = valid.flatten(1).any(dim=1).expand(per_item.shape[0])
    return batch_mean(per_item, has_cells)


def ensemble_mean(members: torch.Tensor, *, keepdim: bool = True) -> torch.Tensor:
    """Mean over the members of each input.

    For deterministic regularisers (mass, gradient, multi-scale L1, …) in an
    ensemble objective: they act on the ensemble mean only, so they do not
    pull every member towards the conditional median and erase the spread
    that the CRPS terms reward.

    Parameters
    ----------
    members
        ``(B, M, H, W)``.
    keepdim
        True: ``(B, 1, H, W)``, the layout of :mod:`downpour.losses.reconstruction`;
        False: ``(B, H, W)``.

    Returns
    -------
    torch.Tensor
        The mean, differentiable with respect to every member.

    Examples
    --------
    >>> ensemble_mean(torch.tensor([[[[1.0]], [[3.0]]]]))
    tensor([[[[2.]]]])
    """
    if members.ndim != 4:
        raise ValueError(f"members must be (B, M, H, W), got shape {tuple(members.shape)}")
    return members.mean(dim=1, keepdim=keepdim)
