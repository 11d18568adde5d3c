"""Exceedance probabilities ``P(y > t)`` from a few predicted quantiles.

Definitions: docs/metrics.md#probabilistic-verification.

A quantile forecast gives values ``q_1 ≤ … ≤ q_Q`` at levels
``0 < τ_1 < … < τ_Q < 1`` (e.g. the heads of a multi-quantile SRDRN at 0.5,
0.95, 0.99, 0.999). :func:`exceedance_probability` completes them into a
distribution and returns ``P(y > t) = 1 − F(t)``:

- **Rearrangement.** The quantiles are sorted first (crossing heads are
  swapped, Chernozhukov et al. 2010), so ``F`` is a distribution function.
- **Between knots** ``q_j ≤ t < q_{j+1}``: the quantile function is linear in
  τ, so ``F(t) = τ_j + (τ_{j+1} − τ_j)(t − q_j)/(q_{j+1} − q_j)``.
  ``F`` is right-continuous: when several knots are equal (e.g. the lower
  heads all 0 on a dry cell), ``F`` jumps there to the largest of their
  levels. Hence ``P(y > q_j) = 1 − τ_j`` **exactly** at every knot (the
  largest level of a run of equal knots; for the top knot see below).
- **Below the lowest knot** ``t < q_1``: linear from the lower bound of the
  support ``L = min(lower, q_1)`` (``lower`` = 0 for precipitation) to
  ``(q_1, τ_1)``: ``F(t) = τ_1 (t − L)/(q_1 − L)``, and ``F = 0`` below ``L``.
  This puts no point mass at ``L`` unless ``q_1 = L``, where ``F(L) = τ_1``:
  the mass of zeros is then the largest level whose quantile is 0, the least
  the heads allow (a dry lowest head says only that ``P(y = 0) ≥ τ_1``).
- **Above the highest knot** ``t ≥ q_Q``: an exponential tail through the two
  highest knots, ``P(y > t) = (1 − τ_Q) exp(−(t − q_Q)/β)`` with
  ``β = (q_Q − q_{Q−1}) / ln((1 − τ_{Q−1})/(1 − τ_Q))``, which also passes
  through ``(q_{Q−1}, 1 − τ_{Q−1})``; it is exact for an exponential upper
  tail. When the two highest knots are equal (``β = 0``) the tail's mass
  sits on ``q_Q``: ``P(y > t) = 0`` for ``t ≥ q_Q`` (an all-dry forecast
  gives ``P(y > 0) = 0``); this is the one knot where the value is not
  ``1 − τ_Q``.

The result lies in ``[0, 1]``, is continuous in ``t`` except at equal knots,
and is non-increasing in ``t``. It is NaN where any quantile or the threshold
is not finite.

Examples
--------
Quantiles of the unit exponential: exact at the knots and in the tail.

>>> taus = np.array([0.5, 0.9, 0.99])
>>> q = -np.log1p(-taus)
>>> exceedance_probability(q, taus, q).round(6).tolist()
[0.5, 0.1, 0.01]
>>> bool(np.isclose(exceedance_probability(q, taus, 6.0), np.exp(-6.0), rtol=1e-12))
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from downpour.core.errors import DownpourError

__all__ = ["check_taus", "exceedance_probability"]


def check_taus(taus: Sequence[float] | np.ndarray, *, at_least: int = 1) -> np.ndarray:
    """Quantile levels as float64 ``(Q,)``: finite, strictly increasing, inside ``(0, 1)``.

    Raises
    ------
    DownpourError
        For fewer than ``at_least`` levels, or levels that break the rules.
    """
    t = np.asarray(taus, dtype=np.float64).ravel()
    if t.size < at_least:
        raise DownpourError(f"quantile levels: need at least {at_least}, got {t.tolist()}")
    if not (np.all(np.isfinite(t)) and np.all(t > 0.0) and np.all(t < 1.0)):
        raise DownpourError(f"quantile levels must lie strictly inside (0, 1), got {t.tolist()}")
    if np.any(np.diff(t) <= 0.0):
        raise DownpourError(f"quantile levels must be strictly increasing, got {t.tolist()}")
    return t


def exceedance_probability(
    quantiles: Any,
    taus: Sequence[float] | np.ndarray,
    threshold: Any,
    *,
    axis: int = -1,
    lower: float = 0.0,
) -> np.ndarray:
    """``P(y > threshold)`` from quantiles at levels ``taus`` (rules in the module docstring).

    Parameters
    ----------
    quantiles
        Quantile values with the quantile axis (size Q ≥ 2) at ``axis``, e.g.
        ``(days, y, x, Q)``; any order along that axis (they are sorted).
    taus
        The Q levels, strictly increasing inside ``(0, 1)``.
    threshold
        A number, or an array broadcastable against ``quantiles`` without its
        quantile axis.
    axis
        Position of the quantile axis.
    lower
        Lower bound of the support (0 for precipitation), finite.

    Returns
    -------
    numpy.ndarray
        Float64, the broadcast shape of ``quantiles`` without the quantile axis
        and ``threshold``; in ``[0, 1]``; NaN where a quantile or the threshold
        is not finite.

    Raises
    ------
    DownpourError
        For fewer than two levels, levels that do not match the quantile axis,
        or a non-finite ``lower``.
    """
    tau = check_taus(taus, at_least=2)
    q = np.moveaxis(np.asarray(quantiles, dtype=np.float64), axis, 0)  # levels first
    if q.shape[0] != tau.size:
        raise DownpourError(
            f"exceedance_probability: {q.shape[0]} quantiles along axis {axis} but "
            f"{tau.size} levels {tau.tolist()}"
        )
    if not np.isfinite(lower):
        raise DownpourError(f"exceedance_probability: lower must be finite, got {lower}")
    bad_q = ~np.isfinite(q).all(axis=0)
    if bad_q.any():
        q = np.where(bad_q, 0.0, q)
    if np.any(q[1:] < q[:-1]):  # rearrange crossing heads (usually already sorted)
        q = np.sort(q, axis=0)
    t = np.asarray(threshold, dtype=np.float64)
    bad = bad_q | ~np.isfinite(t)
    t = np.where(bad, 0.0, t)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # below the lowest knot: linear from (L, 0) to (q_1, τ_1)
        low = np.minimum(lower, q[0])
        span = q[0] - low
        f_low = tau[0] * np.clip(np.where(span > 0, (t - low) / span, 0.0), 0.0, 1.0)
        p = np.where(t < q[0], 1.0 - f_low, np.nan)
        # between knots j and j + 1 (q_j ≤ t < q_{j+1}: one j per cell, none on a tie)
        for j in range(tau.size - 1):
            inside = (q[j] <= t) & (t < q[j + 1])
            f = tau[j] + (tau[j + 1] - tau[j]) * (t - q[j]) / (q[j + 1] - q[j])
            p = np.where(inside, 1.0 - f, p)
        # above the highest knot: exponential through the two highest knots
        beta = (q[-1] - q[-2]) / np.log((1.0 - tau[-2]) / (1.0 - tau[-1]))
        top = np.where(beta > 0, (1.0 - tau[-1]) * np.exp(-(t - q[-1]) / beta), 0.0)
        p = np.where(t >= q[-1], top, p)
    return np.where(bad, np.nan, np.clip(p, 0.0, 1.0))
