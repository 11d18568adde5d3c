"""Scores pooled over days from per-day sufficient statistics, for any day weights.

Every bootstrappable verification score is a function of day-weighted sums of
the per-day statistics of :func:`downpour.metrics.day_stats.day_stats`
(:data:`~downpour.metrics.day_stats.DAY_KEYS`, ``counts`` and ``fss``).
:func:`weighted_scores` evaluates them for a batch of weight vectors at once:
all-ones weights give the estimate, resampling counts a bootstrap replicate
(:mod:`downpour.metrics.bootstrap`). The correlation combines per-day centred
co-moments with Chan's parallel formula (no ``Σp² − n·p̄²`` cancellation).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from downpour.metrics.contingency import categorical_scores

__all__ = ["CATEGORICAL", "CONTINUOUS", "score_tree", "weighted_scores"]

#: Categorical scores per threshold (keys of :func:`weighted_scores`).
CATEGORICAL = ("csi", "pod", "far", "pofd", "sedi", "frequency_bias")
#: Continuous scores (keys of :func:`weighted_scores`).
CONTINUOUS = ("correlation", "mae", "rmse", "mae_tail")


def _correlation(pd: Mapping[str, np.ndarray], w: np.ndarray) -> np.ndarray:
    """Pooled Pearson correlation for day weights ``w`` (B, days): Chan's formula."""
    nd = pd["n"].astype(np.float64)
    n = w @ nd
    mean_p, mean_t = (w @ pd["sum_p"]) / n, (w @ pd["sum_t"]) / n
    day_p, day_t = pd["sum_p"] / np.maximum(nd, 1.0), pd["sum_t"] / np.maximum(nd, 1.0)
    wn = w * nd
    dp, dt = day_p[None, :] - mean_p[:, None], day_t[None, :] - mean_t[:, None]
    cpp = w @ pd["m_pp"] + (wn * dp * dp).sum(1)
    ctt = w @ pd["m_tt"] + (wn * dt * dt).sum(1)
    cpt = w @ pd["m_pt"] + (wn * dp * dt).sum(1)
    denom = cpp * ctt
    r = cpt / np.sqrt(np.where(denom > 0, denom, np.nan))
    return np.clip(r, -1.0, 1.0)


def weighted_scores(pd: Mapping[str, np.ndarray], w: np.ndarray) -> dict[str, np.ndarray]:
    """Every bootstrappable score for day weights ``w`` (B, days): arrays ``(B, ...)``.

    Parameters
    ----------
    pd
        Per-day statistics, each ``(days, ...)``.
    w
        Day weights ``(B, days)``.

    Returns
    -------
    dict
        :data:`CATEGORICAL` scores ``(B, thresholds)``, :data:`CONTINUOUS`
        scores ``(B,)`` and ``fss`` ``(B, thresholds, scales)``.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        counts = np.tensordot(w, pd["counts"].astype(np.float64), axes=(1, 0))
        out = categorical_scores(*np.moveaxis(counts, -1, 0))  # each (B, T)
        n = w @ pd["n"].astype(np.float64)
        out["mae"] = (w @ pd["sum_abs"]) / n
        out["rmse"] = np.sqrt((w @ pd["sum_sq"]) / n)
        out["mae_tail"] = (w @ pd["sum_abs_tail"]) / (w @ pd["n_tail"].astype(np.float64))
        out["correlation"] = _correlation(pd, w)
        f = np.tensordot(w, pd["fss"], axes=(1, 0))  # (B, T, S, 3)
        out["fss"] = 1.0 - f[..., 0] / (f[..., 1] + f[..., 2])
    return out


def score_tree(
    boot: Mapping[str, Any],
    thresholds: Sequence[str],
    scales: Sequence[int],
    leaf: Callable[..., dict[str, Any]],
) -> dict[str, Any]:
    """Arrange bootstrap results of :func:`weighted_scores` as the nested result dict.

    Parameters
    ----------
    boot
        ``{score: BootstrapResult}`` as returned by ``bootstrap_days`` over
        :func:`weighted_scores`.
    thresholds, scales
        Names of the thresholds and the FSS scales, in the order of the arrays.
    leaf
        ``leaf(result, *index)`` → the dict stored for one score.

    Returns
    -------
    dict
        ``categorical[threshold][score]``, ``continuous[score]``, ``fss[threshold][scale]``.
    """
    return {
        "categorical": {
            name: {k: leaf(boot[k], i) for k in CATEGORICAL} for i, name in enumerate(thresholds)
        },
        "continuous": {k: leaf(boot[k]) for k in CONTINUOUS},
        "fss": {
            name: {s: leaf(boot["fss"], i, j) for j, s in enumerate(scales)}
            for i, name in enumerate(thresholds)
        },
    }
