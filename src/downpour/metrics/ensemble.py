"""Ensemble verification: CRPS and rank histogram (docs/metrics.md#downscaling-verification).

Shapes: ``obs`` is any array ``(...)``, e.g. ``(days, y, x)``; ``ens`` has
the same shape with one extra member axis at ``member_axis`` (default 1, the
``(event, member, y, x)`` layout of downpour's samples). ``mask`` is a boolean
array broadcastable to ``obs`` (e.g. ``(y, x)``), True = valid; a point is
also excluded when the observation or any member is not finite.

CRPS estimators for K members ``x_1..x_K`` and observation ``y``:

- ``"ecdf"`` (standard, the CRPS of the ensemble's empirical CDF):
  ``(1/K) Σ|x_i − y| − (1/(2K²)) ΣΣ|x_i − x_j|``
  (scoringrules' ``estimator="nrg"``, also its ``"qd"`` and ``"int"``);
- ``"fair"`` (unbiased for the underlying distribution):
  ``(1/K) Σ|x_i − y| − (1/(2K(K−1))) ΣΣ|x_i − x_j|``
  (scoringrules' ``estimator="fair"``, also its ``"pwm"``; needs K ≥ 2).

The double sum is computed from the sorted members,
``ΣΣ|x_i − x_j| = 2 Σ_i (2i − K − 1) x_(i)``: O(K log K) per point.

Rank histogram: the rank of ``y`` among the members is the number of members
below it plus a uniform random integer in ``[0, ties]`` (ties = members equal
to it, e.g. dry members on a dry day), drawn from a seeded generator, so
ranks run over ``0..K`` and a calibrated ensemble gives a flat histogram.

Examples
--------
>>> ens = np.array([[0.0, 2.0]])        # one point, two members
>>> crps_ensemble(np.array([1.0]), ens, member_axis=1).tolist()  # 1 − 2/(2·4)
[0.5]
>>> crps_ensemble(np.array([1.0]), ens, member_axis=1, estimator="fair").tolist()  # 1 − 2/4
[0.0]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from downpour.core.errors import DownpourError

__all__ = ["CRPS_ESTIMATORS", "crps_ensemble", "mean_crps", "rank_histogram"]

#: Names accepted by ``estimator``.
CRPS_ESTIMATORS = ("ecdf", "fair")


def _prepare(
    obs: Any, ens: Any, member_axis: int, mask: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(obs, members (..., K), valid)`` with invalid points zero-filled."""

    def arr(x: Any) -> np.ndarray:
        x = x.detach().cpu().double() if hasattr(x, "detach") else x
        return np.asarray(x, dtype=np.float64)

    y, e = arr(obs), arr(ens)
    if e.ndim != y.ndim + 1:
        raise DownpourError(
            f"ensemble: members must have one axis more than the observations, got "
            f"{e.shape} and {y.shape}"
        )
    e = np.moveaxis(e, member_axis, -1)
    if e.shape[:-1] != y.shape or e.shape[-1] < 1:
        raise DownpourError(
            f"ensemble: members {e.shape[:-1]} (member axis {member_axis} moved last) do not "
            f"match observations {y.shape}"
        )
    valid = np.isfinite(y) & np.isfinite(e).all(axis=-1)
    if mask is not None:
        valid &= np.broadcast_to(np.asarray(mask, dtype=bool), y.shape)
    return np.where(valid, y, 0.0), np.where(valid[..., None], e, 0.0), valid


def crps_ensemble(
    obs: Any,
    ens: Any,
    *,
    member_axis: int = 1,
    estimator: str = "ecdf",
    mask: Any = None,
) -> np.ndarray:
    """CRPS of an ensemble at every point.

    Parameters
    ----------
    obs
        Observations ``(...)``.
    ens
        Members: ``obs``'s shape with the member axis (size K) at ``member_axis``.
    member_axis
        Position of the member axis in ``ens``.
    estimator
        ``"ecdf"`` (standard) or ``"fair"``.
    mask
        Boolean, broadcastable to ``obs``, True = valid.

    Returns
    -------
    numpy.ndarray
        Float64 ``obs.shape``; NaN at invalid points.
    """
    if estimator not in CRPS_ESTIMATORS:
        raise DownpourError(
            f"crps: unknown estimator {estimator!r}; valid: {', '.join(CRPS_ESTIMATORS)}"
        )
    y, e, valid = _prepare(obs, ens, member_axis, mask)
    k = e.shape[-1]
    if estimator == "fair" and k < 2:
        raise DownpourError("crps: the fair estimator needs at least 2 members")
    skill = np.abs(e - y[..., None]).mean(axis=-1)
    coef = 2.0 * np.arange(1, k + 1) - k - 1.0
    half_pairs = np.sort(e, axis=-1) @ coef  # = ½ ΣΣ|x_i − x_j|
    spread = half_pairs / (k * k if estimator == "ecdf" else k * (k - 1))
    return np.where(valid, skill - spread, np.nan)


def mean_crps(
    obs: Any,
    ens: Any,
    *,
    member_axis: int = 1,
    estimator: str = "ecdf",
    mask: Any = None,
) -> float:
    """Mean CRPS over the valid points (arguments as :func:`crps_ensemble`).

    Raises
    ------
    DownpourError
        When no point is valid.
    """
    c = crps_ensemble(obs, ens, member_axis=member_axis, estimator=estimator, mask=mask)
    ok = np.isfinite(c)
    if not ok.any():
        raise DownpourError("crps: no valid point (all masked or NaN)")
    return float(c[ok].mean())


def rank_histogram(
    obs: Any,
    ens: Any,
    *,
    member_axis: int = 1,
    mask: Any = None,
    seed: int = 0,
) -> np.ndarray:
    """Count the observation's ranks among the members, ties broken at random.

    Parameters
    ----------
    obs, ens, member_axis, mask
        As in :func:`crps_ensemble`.
    seed
        Seed of the generator that breaks ties.

    Returns
    -------
    numpy.ndarray
        Int64 ``(K + 1,)``: count of valid points with rank ``0..K``
        (divide by the sum for relative frequencies).
    """
    y, e, valid = _prepare(obs, ens, member_axis, mask)
    k = e.shape[-1]
    below = (e < y[..., None]).sum(axis=-1)
    ties = (e == y[..., None]).sum(axis=-1)
    rng = np.random.default_rng(seed)
    ranks = below + rng.integers(0, ties + 1)
    return np.bincount(ranks[valid].ravel(), minlength=k + 1).astype(np.int64)
