"""Verification throughput in GB/s against memcpy, and pysteps and ``scores`` on the same job.

The job is that of ``downpour verify`` on one decade of a 156 × 132 grid:
prediction and truth float32 ``(days, 156, 132)``, a contiguous land mask
(about 60% land), thresholds P95 and P99 of the wet truth values of the first
year plus 10 and 20 mm/day, FSS scales 1, 3, 9 and 27. The fields are
synthetic and deterministic (:func:`synthetic_fields`): about 40% wet cells
with gamma-distributed rain, the prediction the truth plus Gaussian noise,
clipped at 0.

:func:`bench_verification` reports

- ``memcpy_gbps``: :func:`downpour.bench.machine.memcpy_bandwidth` measured in
  the same run (bytes *read* per second by ``np.copyto`` of a 512 MB float32
  array; a copy also writes as many);
- ``ours``: :func:`downpour.metrics.verification.verify_arrays` (every score,
  no bootstrap, no GPD fit), best of ``repeats``; GB/s counts the bytes of
  prediction plus truth; peak memory two ways (tracemalloc peak of the
  allocations made by the call, inputs excluded, and the resident-set growth);
- ``pysteps`` and ``scores`` (when installed): the same scores computed with
  those packages (CSI, POD, FAR and frequency bias per threshold, MAE, RMSE,
  Pearson correlation, FSS per threshold and scale), timed on the first
  ``subset_days`` days and extrapolated linearly to ``days``
  (``extrapolated_from_days``), with the speed-up of ours and the largest
  absolute difference from our numbers on the same days.

Conventions matched in the comparison: events are ``value > threshold``
(pysteps' FSS uses ``>=``, so it gets the next float32 above our cut);
categorical and continuous scores see NaN outside the mask (pysteps counts
NaN cells as correct negatives, which changes none of the compared scores).
Neither package's FSS has a mask: both get the fields with 0 outside the
land, and are compared with our FSS of those fields without a mask; ``scores``'
zero-padded FSS also slides windows centred one row below and one column
right of the grid, so its reference is our FSS of the fields padded by one
zero row and column (see ``tests/metrics/test_verification.py``).
"""

from __future__ import annotations

import importlib.util
import time
import tracemalloc
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from downpour.bench.machine import PeakMemory, best_time, memcpy_bandwidth
from downpour.metrics.day_stats import threshold_for
from downpour.metrics.verification import verify_arrays

__all__ = ["bench_verification", "synthetic_fields"]

SHAPE = (156, 132)
SCALES = (1, 3, 9, 27)
_CATEGORICAL = ("csi", "pod", "far", "frequency_bias")
_CONTINUOUS = ("mae", "rmse", "correlation")


def synthetic_fields(
    days: int, seed: int = 0, shape: tuple[int, int] = SHAPE
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, float]]:
    """Deterministic rain fields, land mask and thresholds of the benchmark.

    Parameters
    ----------
    days
        Number of days.
    seed
        Seed of :func:`numpy.random.default_rng`.
    shape
        Grid ``(y, x)``.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray, dict)
        Prediction and truth float32 ``(days, y, x)`` (mm/day), the boolean
        land mask ``(y, x)`` (blocks of 12 × 12 cells, about 60% land) and
        ``{"P95", "P99", "10mm", "20mm"}`` thresholds (P95 and P99 of the wet,
        > 0.1, land values of the truth's first 365 days).
    """
    rng = np.random.default_rng(seed)
    ny, nx = shape
    blocks = rng.random((-(-ny // 12), -(-nx // 12)))
    mask = np.kron(blocks, np.ones((12, 12)))[:ny, :nx] > np.quantile(blocks, 0.4)
    size = (days, ny, nx)
    truth = rng.standard_gamma(0.7, size, dtype=np.float32)
    truth *= np.float32(6.0)
    truth *= rng.random(size, dtype=np.float32) < 0.4
    pred = rng.standard_normal(size, dtype=np.float32)
    pred *= np.float32(3.0)
    pred += truth
    np.maximum(pred, np.float32(0.0), out=pred)
    year = truth[: min(days, 365)][:, mask]
    wet = year[year > 0.1]
    thresholds = {
        "P95": float(np.quantile(wet, 0.95)) if wet.size else 10.0,
        "P99": float(np.quantile(wet, 0.99)) if wet.size else 20.0,
        "10mm": 10.0,
        "20mm": 20.0,
    }
    return pred, truth, mask, thresholds


def _flat_scores(res: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """``{score: {key: value}}`` of a result of ``verify_arrays`` for the compared scores."""
    out: dict[str, dict[str, float]] = {k: {} for k in (*_CATEGORICAL, *_CONTINUOUS, "fss")}
    for name, cat in res["categorical"].items():
        for k in _CATEGORICAL:
            out[k][name] = cat[k]
    for k in _CONTINUOUS:
        out[k][""] = res["continuous"][k]
    for name, by_scale in res["fss"].items():
        for s, v in by_scale.items():
            out["fss"][f"{name}/{s}"] = v
    return out


def _max_abs_diff(
    theirs: Mapping[str, Mapping[str, float]], ours: Mapping[str, Mapping[str, float]]
) -> dict[str, float]:
    """Largest ``|theirs − ours|`` per score over its keys (NaN in both counts as equal)."""
    out = {}
    for score, values in theirs.items():
        diffs = [
            0.0 if np.isnan(v) and np.isnan(ours[score][k]) else abs(v - ours[score][k])
            for k, v in values.items()
        ]
        out[score] = float(max(diffs)) if diffs else float("nan")
    return out


def _zero_outside(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask, x, x.dtype.type(0))


def _pysteps_scores(
    pred: np.ndarray, truth: np.ndarray, mask: np.ndarray, thresholds: Mapping[str, float]
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Compute the compared scores with pysteps; also return the seconds of each part."""
    from pysteps.verification import det_cat_fct, det_cont_fct
    from pysteps.verification.spatialscores import fss_accum, fss_compute, fss_init

    out: dict[str, dict[str, float]] = {k: {} for k in (*_CATEGORICAL, *_CONTINUOUS, "fss")}
    seconds = {}
    start = time.perf_counter()
    pn, tn = np.where(mask, pred, np.nan), np.where(mask, truth, np.nan)
    for name, thr in thresholds.items():
        cat = det_cat_fct(pn, tn, threshold_for(thr, pred.dtype), ["CSI", "POD", "FAR", "BIAS"])
        for k, theirs in zip(_CATEGORICAL, ("CSI", "POD", "FAR", "BIAS"), strict=True):
            out[k][name] = float(cat[theirs])
    seconds["categorical"] = time.perf_counter() - start
    start = time.perf_counter()
    cont = det_cont_fct(pn, tn, ["MAE", "RMSE", "corr_p"])
    for k, theirs in zip(_CONTINUOUS, ("MAE", "RMSE", "corr_p"), strict=True):
        out[k][""] = float(cont[theirs])
    seconds["continuous"] = time.perf_counter() - start
    start = time.perf_counter()
    p0, t0 = _zero_outside(pred, mask), _zero_outside(truth, mask)
    for name, thr in thresholds.items():
        at_least = np.nextafter(threshold_for(thr, pred.dtype), np.float32(np.inf))  # '>=' as '>'
        for s in SCALES:  # pysteps' FSS takes one 2-D field pair per call: pool the days
            obj = fss_init(at_least, s)
            for day in range(pred.shape[0]):
                fss_accum(obj, p0[day], t0[day])
            out["fss"][f"{name}/{s}"] = float(fss_compute(obj))
    seconds["fss"] = time.perf_counter() - start
    return out, seconds


def _scores_scores(
    pred: np.ndarray, truth: np.ndarray, mask: np.ndarray, thresholds: Mapping[str, float]
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Compute the compared scores with ``scores``; also return the seconds of each part."""
    import xarray as xr
    from scores import categorical, continuous
    from scores.spatial import fss_2d

    dims = ("time", "y", "x")
    seconds = {}
    t0 = time.perf_counter()
    fp = xr.DataArray(np.where(mask, pred, np.nan), dims=dims)
    ob = xr.DataArray(np.where(mask, truth, np.nan), dims=dims)
    out: dict[str, dict[str, float]] = {k: {} for k in (*_CATEGORICAL, *_CONTINUOUS, "fss")}
    for name, thr in thresholds.items():
        cut = threshold_for(thr, pred.dtype)
        events = [(x > cut).where(~np.isnan(x)) for x in (fp, ob)]
        table = categorical.BinaryContingencyManager(*events).transform()
        out["csi"][name] = float(table.critical_success_index())
        out["pod"][name] = float(table.probability_of_detection())
        out["far"][name] = float(table.false_alarm_ratio())
        out["frequency_bias"][name] = float(table.frequency_bias())
    seconds["categorical"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out["mae"][""] = float(continuous.mae(fp, ob))
    out["rmse"][""] = float(continuous.rmse(fp, ob))
    out["correlation"][""] = float(xr.corr(fp, ob))
    seconds["continuous"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    f0 = xr.DataArray(_zero_outside(pred, mask), dims=dims)
    o0 = xr.DataArray(_zero_outside(truth, mask), dims=dims)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for name, thr in thresholds.items():
            for s in SCALES:
                out["fss"][f"{name}/{s}"] = float(
                    fss_2d(
                        f0,
                        o0,
                        event_threshold=threshold_for(thr, pred.dtype),
                        window_size=(s, s),
                        spatial_dims=("y", "x"),
                        zero_padding=True,
                        threshold_operator=np.greater,
                        reduce_dims=["time"],
                    )  # fmt: skip
                )
    seconds["fss"] = time.perf_counter() - t0
    return out, seconds


def _ours_reference(
    pred: np.ndarray, truth: np.ndarray, mask: np.ndarray, thresholds: Mapping[str, float], pad: int
) -> dict[str, dict[str, float]]:
    """Our scores with the package's conventions (FSS without mask, optionally padded)."""
    ours = _flat_scores(verify_arrays(pred, truth, mask, thresholds, scales=SCALES,
                                      tail_fit=False))  # fmt: skip
    p0, t0 = _zero_outside(pred, mask), _zero_outside(truth, mask)
    if pad:
        widths = ((0, 0), (0, pad), (0, pad))
        p0, t0 = np.pad(p0, widths), np.pad(t0, widths)
    ours["fss"] = _flat_scores(verify_arrays(p0, t0, None, thresholds, scales=SCALES,
                                             tail_fit=False))["fss"]  # fmt: skip
    return ours


def _compare(
    package: str,
    run: Callable[..., tuple[dict[str, dict[str, float]], dict[str, float]]],
    fields: tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, float]],
    subset_days: int,
    days: int,
    ours_seconds: float,
    pad: int,
) -> dict[str, Any]:
    """Time ``run`` on the first ``subset_days`` days, extrapolate, compare with ours."""
    if importlib.util.find_spec(package) is None:
        return {"available": False, "reason": f"{package} is not installed"}
    pred, truth, mask, thresholds = fields
    p, t = pred[:subset_days], truth[:subset_days]
    run(p[:1], t[:1], mask, thresholds)  # warm-up: imports, first calls
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        theirs, parts = run(p, t, mask, thresholds)
        measured = time.perf_counter() - t0
    seconds = measured * days / p.shape[0]
    ours = _ours_reference(p, t, mask, thresholds, pad)
    return {
        "available": True,
        "seconds": seconds,
        "gbps": 2 * pred[:1].nbytes * days / seconds / 1e9,
        "speedup": seconds / ours_seconds,
        "timed_days": int(p.shape[0]),
        "measured_seconds": measured,
        "extrapolated": p.shape[0] != days,
        "parts_seconds": parts,
        "peak_mb": mem.delta_mb,
        "memory_note": f"resident-set growth while timing the {p.shape[0]} days",
        "max_abs_diff": _max_abs_diff(theirs, ours),
    }


def bench_verification(
    days: int = 3650,
    repeats: int = 1,
    seed: int = 0,
    *,
    subset_days: int = 365,
    memcpy_mb: int = 512,
) -> dict[str, Any]:
    """Throughput of verification against memcpy bandwidth, pysteps and ``scores``.

    Parameters
    ----------
    days
        Days of the generated fields ``(days, 156, 132)`` (3650: a decade).
    repeats
        Timed repeats of our verification (the best is reported).
    seed
        Seed of the generated fields.
    subset_days
        Days on which pysteps and ``scores`` are timed (then extrapolated to
        ``days``) and compared with our numbers.
    memcpy_mb
        Size of the array copied to measure memory bandwidth.

    Returns
    -------
    dict
        JSON-ready: ``name``, ``days``, ``shape``, ``input_gb``, ``thresholds``,
        ``scales``, ``memcpy_gbps`` (with ``memcpy_note``), ``ours``
        (``seconds``, ``gbps``, ``fraction_of_memcpy``, ``peak_mb``,
        ``rss_growth_mb``, ``memory_note``), and ``pysteps`` and ``scores``
        (``seconds``, ``gbps``, ``speedup`` = their seconds / ours,
        ``timed_days``, ``measured_seconds``, ``extrapolated``,
        ``parts_seconds``, ``peak_mb`` (resident-set growth over the timed
        days), ``max_abs_diff`` per score; or ``available: False`` with a
        ``reason``).

    Examples
    --------
    >>> out = bench_verification(days=4, subset_days=4, memcpy_mb=8)  # doctest: +SKIP
    >>> out["ours"]["gbps"] > 0  # doctest: +SKIP
    True
    """
    fields = synthetic_fields(days, seed)
    pred, truth, mask, thresholds = fields
    input_gb = (pred.nbytes + truth.nbytes) / 1e9
    memcpy = memcpy_bandwidth(memcpy_mb)

    def ours() -> dict[str, Any]:
        return verify_arrays(pred, truth, mask, thresholds, scales=SCALES, n_boot=0,
                             tail_fit=False)  # fmt: skip

    with PeakMemory() as mem:
        seconds = best_time(ours, repeats)
    tracemalloc.start()
    ours()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    gbps = input_gb / seconds
    subset = min(subset_days, days)
    return {
        "name": "verification",
        "days": days,
        "shape": list(pred.shape),
        "input_gb": input_gb,
        "land_fraction": float(mask.mean()),
        "thresholds": thresholds,
        "scales": list(SCALES),
        "memcpy_gbps": memcpy,
        "memcpy_note": f"np.copyto of a {memcpy_mb} MB float32 array, best of 5; bytes read "
        "per second (a copy also writes as many)",
        "ours": {
            "seconds": seconds,
            "gbps": gbps,
            "fraction_of_memcpy": gbps / memcpy,
            "peak_mb": peak / 2**20,
            "rss_growth_mb": mem.delta_mb,
            "memory_note": "peak_mb: tracemalloc peak of the allocations of one verify_arrays "
            "call (inputs excluded); rss_growth_mb: resident-set growth over the timed calls",
        },
        "pysteps": _compare("pysteps", _pysteps_scores, fields, subset, days, seconds, pad=0),
        "scores": _compare("scores", _scores_scores, fields, subset, days, seconds, pad=1),
    }
