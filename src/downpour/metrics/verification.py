"""Streaming deterministic verification of precipitation fields.

Definitions: docs/metrics.md#downscaling-verification.

Conventions
-----------
- Fields are ``(days, y, x)`` arrays (numpy, torch or xarray; a 2-D field is
  one day). Float32 stays float32 (no float64 copy of a batch; events are
  decided exactly as in float64, see
  :func:`downpour.metrics.day_stats.threshold_for`); other types become float64.
  Sums are accumulated in float64.
- An **event** is ``value > threshold`` (strict) everywhere: contingency
  tables, FSS indicator fields, MAE_tail (truth > tail threshold).
- A cell is **valid** when the mask is True (land) *and* truth and prediction
  are both finite. Invalid cells are excluded from every score; ``mask`` is a
  boolean array broadcastable to ``(y, x)`` (0/1 numbers are accepted).
- Contingency counts per threshold and day: hits ``a`` (pred and truth
  events), false alarms ``b`` (pred only), misses ``c`` (truth only), correct
  negatives ``d``. Scores: CSI ``a/(a+b+c)``; POD ``H = a/(a+c)``; ``far`` is
  the false-alarm **ratio** ``b/(a+b)``; ``pofd`` is the false-alarm **rate**
  ``F = b/(b+d)`` (probability of false detection, F); SEDI from H
  and F clipped to ``[1e-6, 1 - 1e-6]``; ``frequency_bias = (a+b)/(a+c)``.
  An undefined ratio (0/0) is NaN.
- Continuous scores pool every valid cell of every day: Pearson correlation,
  MAE, RMSE, MAE_tail (MAE over valid cells where truth > ``tail_threshold``,
  by default the ``"P95"`` threshold), and the P99 bias: the 0.99 quantile of
  all pooled valid prediction values (dry cells included) minus that of the
  truth, from a streaming log-binned histogram
  (:class:`downpour.metrics.extremes.QuantileHistogram`, relative precision 2e-3).
- FSS as pysteps (Roberts & Lean 2008, pooled over days): indicator fields
  (event and valid, i.e. invalid cells are 0) are smoothed with
  ``scipy.ndimage.uniform_filter(size=(1, s, s), mode="constant", cval=0)``
  (zero padding at the domain edge; odd or even ``s`` as pysteps), and
  ``FSS = 1 − Σ(Pf−Po)² / (ΣPf² + ΣPo²)`` with the sums over valid cells only.
  With every cell valid this is exactly pysteps' ``fss`` for ``>`` events.
  The sums are computed from exact integer window counts
  (:mod:`downpour.metrics.fss`), not with a floating-point filter.
- Streaming: :class:`~downpour.metrics.accumulator.VerificationAccumulator`
  keeps per-day sufficient statistics (O(days × thresholds × scales),
  computed by :func:`downpour.metrics.day_stats.day_stats`) and two fixed
  histograms; merging concatenates days (refusing a time stamp present in
  both) and orders them by time when every day has one, so partial
  accumulators merged in any order equal one pass over the period: counts and
  histograms exactly, scores to rounding, bootstrap intervals exactly (they
  resample day positions). ``VerificationAccumulator.state`` /
  ``from_state`` turn a state into numpy arrays and back (exactly), so the
  pieces of a long archive can be verified in separate jobs, kept and merged.
  Every score is a function of day-weighted sums of the per-day statistics
  (:mod:`downpour.metrics.pooled`), which is what the bootstrap resamples
  (:mod:`downpour.metrics.bootstrap`): CSI, POD, FAR, POFD, SEDI, frequency
  bias, correlation, MAE, RMSE, MAE_tail and FSS get 95% intervals; the P99
  bias and the GPD tail fit do not.
- The correlation combines per-day centred co-moments with Chan's parallel
  formula (no ``Σp² − n·p̄²`` cancellation).

Modules: :mod:`downpour.metrics.inputs` (fields, masks, time stamps),
:mod:`downpour.metrics.contingency` (contingency counts, categorical scores,
FSS sums), :mod:`downpour.metrics.pooled` (scores of day-weighted sums),
:mod:`downpour.metrics.accumulator` (the streaming accumulator) and this one:
:func:`verify_arrays`, :func:`verify_dataset` and :func:`paired_difference`.

Examples
--------
>>> pred = np.array([[[0.0, 8.0], [12.0, 2.0]]])
>>> res = verify_arrays(pred, pred, None, {"5mm": 5.0}, scales=(1,), tail_fit=False)
>>> res["categorical"]["5mm"]["csi"], res["continuous"]["mae"]
(1.0, 0.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import xarray as xr

from downpour.core.errors import DownpourError
from downpour.metrics.accumulator import DEFAULT_SCALES, VerificationAccumulator
from downpour.metrics.bootstrap import BootstrapResult, bootstrap_days
from downpour.metrics.inputs import as_days, valid_cells
from downpour.metrics.pooled import score_tree, weighted_scores

__all__ = ["paired_difference", "verify_arrays", "verify_dataset"]


def paired_difference(
    a: VerificationAccumulator,
    b: VerificationAccumulator,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Score differences ``a − b`` of two predictions of the same days, with paired intervals.

    Both accumulators must hold the same days in the same order (the same
    truth); each bootstrap resample draws one set of days for both, so the
    interval of the difference accounts for their correlation. A difference
    whose interval excludes 0 is significant at ``level``.

    Returns
    -------
    dict
        ``categorical[name][score]``, ``continuous[score]`` and
        ``fss[name][scale]``, each ``{"estimate", "low", "high", "significant"}``.
    """
    pa, pb = a._checked(), b._checked()
    if a.n_days != b.n_days or not np.array_equal(a.times.astype("int64"), b.times.astype("int64")):
        raise DownpourError(
            "paired_difference: the two predictions must cover the same days in the same order "
            f"({a.n_days} vs {b.n_days} days)"
        )
    if list(a.thresholds) != list(b.thresholds) or a.scales != b.scales:
        raise DownpourError("paired_difference: thresholds and scales must be the same")
    differ = np.flatnonzero(pa["n"] != pb["n"])
    if differ.size:
        k = int(differ[0])
        stamp = a.times[k] if a.times.size else np.datetime64("NaT")
        day = f"day {k}" if np.isnat(stamp) else str(np.datetime_as_string(stamp, unit="D"))
        raise DownpourError(
            f"paired_difference: the two predictions were scored on different cells on "
            f"{differ.size} day(s), the first {day} ({int(pa['n'][k])} vs {int(pb['n'][k])} "
            f"valid cells; NaN or infinite predictions inside the mask: "
            f"{int(pa['n_bad_pred'][k])} vs {int(pb['n_bad_pred'][k])}); compare models only "
            "on the cells both predict"
        )

    def diff(w: np.ndarray) -> dict[str, np.ndarray]:
        sa, sb = weighted_scores(pa, w), weighted_scores(pb, w)
        return {k: sa[k] - sb[k] for k in sa}

    boot = bootstrap_days(diff, a.n_days, n_boot=n_boot, seed=seed, level=level)
    assert isinstance(boot, dict)

    def leaf(r: BootstrapResult, *idx: int) -> dict[str, Any]:
        out = r.at(*idx)
        return {**out, "significant": bool(out["low"] > 0 or out["high"] < 0)}

    return {
        **score_tree(boot, list(a.thresholds), a.scales, leaf),
        "n_boot": n_boot,
        "seed": seed,
        "level": level,
    }


# ------------------------------------------------------------------ entry points


def _finish(
    acc: VerificationAccumulator, n_boot: int, seed: int, level: float, tail_fit: bool
) -> dict[str, Any]:
    if n_boot > 0:
        return acc.compute_with_intervals(n_boot, seed, level=level, tail_fit=tail_fit)
    return acc.compute(tail_fit=tail_fit)


def verify_arrays(
    pred: Any,
    truth: Any,
    mask: Any,
    thresholds: Mapping[str, float],
    *,
    scales: Iterable[int] = DEFAULT_SCALES,
    tail_threshold: float | None = None,
    batch_days: int = 64,
    n_boot: int = 0,
    seed: int = 0,
    level: float = 0.95,
    tail_fit: bool = True,
) -> dict[str, Any]:
    """Verify in-memory fields ``(days, y, x)``, in batches of ``batch_days``.

    Parameters
    ----------
    pred, truth
        Fields ``(days, y, x)`` (numpy, torch or xarray), same shape.
    mask
        Boolean ``(y, x)``, True = valid; ``None`` = every cell.
    thresholds, scales, tail_threshold
        As in :class:`~downpour.metrics.accumulator.VerificationAccumulator`.
    batch_days
        Days per batch (bounds the temporaries of the FSS filters).
    n_boot
        Bootstrap resamples; 0 gives no intervals.
    seed, level
        Bootstrap seed and confidence level.
    tail_fit
        Include the GPD tail comparison.

    Returns
    -------
    dict
        :meth:`~downpour.metrics.accumulator.VerificationAccumulator.compute` (or
        ``compute_with_intervals``).
    """
    p, t = as_days(pred, "prediction"), as_days(truth, "truth")
    if p.shape != t.shape:
        valid_cells(p, t, None)  # raises the shape error
    acc = VerificationAccumulator(
        thresholds, scales=scales, tail_threshold=tail_threshold, mask=mask
    )
    for i in range(0, p.shape[0], max(1, batch_days)):
        acc.update(p[i : i + batch_days], t[i : i + batch_days])
    return _finish(acc, n_boot, seed, level, tail_fit)


def _name(da: xr.DataArray, default: str) -> str:
    return str(da.name) if da.name is not None else default


def _check_pair(pred: xr.DataArray, truth: xr.DataArray, time_dim: str) -> xr.DataArray:
    """Check dims, grid and time axis; return ``pred`` in ``truth``'s dim order."""
    pn, tn = _name(pred, "prediction"), _name(truth, "truth")
    for da, nm in ((pred, pn), (truth, tn)):
        if da.ndim != 3 or time_dim not in da.dims:
            raise DownpourError(
                f"verification: '{nm}' must have dims ({time_dim}, y, x), got {da.dims}"
            )
    if set(pred.dims) != set(truth.dims):
        raise DownpourError(
            f"verification: prediction '{pn}' dims {pred.dims} differ from truth '{tn}' dims "
            f"{truth.dims}"
        )
    pred = pred.transpose(*truth.dims)
    grid_p = {d: pred.sizes[d] for d in pred.dims if d != time_dim}
    grid_t = {d: truth.sizes[d] for d in truth.dims if d != time_dim}
    if grid_p != grid_t:
        raise DownpourError(
            f"verification: prediction '{pn}' grid {grid_p} differs from truth '{tn}' grid {grid_t}"
        )
    for dim in truth.dims:
        if dim == time_dim or dim not in pred.coords or dim not in truth.coords:
            continue
        a, b = pred[dim].values, truth[dim].values
        if a.shape != b.shape or not np.allclose(a, b):
            raise DownpourError(
                f"verification: prediction '{pn}' and truth '{tn}' have different '{dim}' "
                "coordinates; put both on the same grid first"
            )
    tp, tt = pred[time_dim].values, truth[time_dim].values
    if tp.shape != tt.shape or not np.array_equal(tp, tt):
        if tp.shape != tt.shape:
            detail = f"{tp.size} vs {tt.size} time steps"
        else:
            i = int(np.argmax(tp != tt))
            detail = f"first difference at position {i}: {tp[i]} vs {tt[i]}"
        raise DownpourError(
            f"verification: the time coordinates of prediction '{pn}' and truth '{tn}' differ "
            f"({detail}); select the same days in both, e.g. truth.sel({time_dim}=pred.{time_dim})"
        )
    return pred


def verify_dataset(
    pred: xr.DataArray,
    truth: xr.DataArray,
    mask: Any,
    thresholds: Mapping[str, float],
    *,
    batch_days: int = 64,
    scales: Iterable[int] = DEFAULT_SCALES,
    tail_threshold: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    tail_fit: bool = True,
    time_dim: str = "time",
) -> dict[str, Any]:
    """Verify two DataArrays ``(time, y, x)``, streaming ``batch_days`` at a time.

    Only one batch of each array is loaded at a time (a dask-backed array is
    computed batch by batch), so a multi-year test set never sits in memory.

    Parameters
    ----------
    pred, truth
        DataArrays with dims ``(time_dim, y, x)`` in any order and identical
        time coordinates; spatial coordinates, where both have them, must agree.
    mask
        Boolean (or 0/1) ``(y, x)`` array or DataArray, True = valid; ``None`` = all.
    thresholds, scales, tail_threshold
        As in :class:`~downpour.metrics.accumulator.VerificationAccumulator`.
    batch_days
        Days loaded per batch.
    n_boot, seed, level
        Bootstrap intervals over days (``n_boot=0``: none).
    tail_fit
        Include the GPD tail comparison.
    time_dim
        Name of the time dimension.

    Returns
    -------
    dict
        As :func:`verify_arrays`, plus ``"period"``: first and last time stamp.

    Raises
    ------
    DownpourError
        For mismatched dims, grids or time coordinates (naming both arrays),
        a mask without valid cell, or no valid data.
    """
    pred = _check_pair(pred, truth, time_dim)
    if isinstance(mask, xr.DataArray):
        space = [d for d in truth.dims if d != time_dim]
        if set(mask.dims) != set(space):
            raise DownpourError(
                f"verification: mask dims {mask.dims} do not match the grid dims {tuple(space)} "
                f"of truth '{_name(truth, 'truth')}'"
            )
        mask = mask.transpose(*space).values
    truth = truth.transpose(time_dim, ...)
    pred = pred.transpose(time_dim, ...)
    acc = VerificationAccumulator(
        thresholds, scales=scales, tail_threshold=tail_threshold, mask=mask
    )
    times = truth[time_dim].values
    step = max(1, batch_days)
    for i in range(0, times.size, step):
        sl = {time_dim: slice(i, i + step)}
        acc.update(pred.isel(sl).values, truth.isel(sl).values, time=times[i : i + step])
    out = _finish(acc, n_boot, seed, level, tail_fit)
    out["period"] = [str(times[0]), str(times[-1])] if times.size else []
    return out
