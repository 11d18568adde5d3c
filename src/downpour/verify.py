"""``downpour verify``: every downscaler of a run against the real test days.

:func:`verify_run` predicts the test split of the run's store with each
trained SRDRN variant (``RUN/checkpoints/srdrn*/best.ckpt``) and each
baseline (bicubic, BCSD), and scores all of them on the same days with the
streaming accumulator of :mod:`downpour.metrics.verification` (DESIGN.md
§8.2): CSI, POD, FAR, POFD and SEDI at the training P95 and P99 of wet
values and at fixed thresholds (10 and 20 mm/day by default), correlation,
MAE, RMSE, MAE_tail, FSS at 1, 3, 9 and 27 pixels, P99 bias and the GPD
tails of the daily domain maxima, each headline number with a bootstrap 95%
interval over days.

Differences between models (augmented − real-only, each SRDRN − bicubic)
get *paired* bootstrap intervals (the same resampled days for both), so a
difference is called significant only when its interval excludes zero.

Results go to ``RUN/metrics/verify.json`` (with a ``headline`` block that
``downpour compare`` reads) and ``RUN/figures/verify_*.png``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from downpour import plots
from downpour.data.dataset import _as_str
from downpour.data.store import open_store, resolve_store_path, store_attr_json
from downpour.errors import DownpourError
from downpour.metrics.verification import (
    DEFAULT_SCALES,
    VerificationAccumulator,
    paired_difference,
)
from downpour.utils import atomic_write_text

__all__ = [
    "HEADLINE",
    "find_srdrn_checkpoints",
    "significance_lines",
    "truth_of",
    "verification_table",
    "verify_models",
    "verify_run",
]

#: (label, section, threshold or None, score) of the headline scores.
HEADLINE: list[tuple[str, str, str | None, str]] = [
    ("CSI P95", "categorical", "P95", "csi"),
    ("CSI P99", "categorical", "P99", "csi"),
    ("SEDI P95", "categorical", "P95", "sedi"),
    ("SEDI P99", "categorical", "P99", "sedi"),
    ("POD P95", "categorical", "P95", "pod"),
    ("FAR P95", "categorical", "P95", "far"),
    ("correlation", "continuous", None, "correlation"),
    ("MAE", "continuous", None, "mae"),
    ("RMSE", "continuous", None, "rmse"),
    ("MAE_tail", "continuous", None, "mae_tail"),
]


def truth_of(store: str | Path, split: str = "test") -> tuple[xr.DataArray, np.ndarray]:
    """Real fields of a split, NaN outside the mask, and the mask.

    Returns
    -------
    (xarray.DataArray, numpy.ndarray)
        Truth ``(time, y, x)`` in the store's units (lazily indexed), mask ``(y, x)``.
    """
    ds = open_store(store)
    split_v = _as_str(np.asarray(ds["split"].values))
    real = ~np.asarray(ds["is_synthetic"].values).astype(bool)
    rows = np.flatnonzero((split_v == split) & real)
    if rows.size == 0:
        raise DownpourError(f"{resolve_store_path(store)}: the {split!r} split has no real days")
    mask = np.asarray(ds["mask"].values, dtype=bool)
    truth = ds["target"].isel(time=rows).where(xr.DataArray(mask, dims=("y", "x")))
    return truth, mask


def verify_models(
    predictions: Mapping[str, xr.DataArray],
    truth: xr.DataArray,
    mask: np.ndarray,
    thresholds: Mapping[str, float],
    *,
    pairs: Sequence[tuple[str, str]] = (),
    scales: Iterable[int] = DEFAULT_SCALES,
    tail_threshold: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    batch_days: int = 64,
) -> dict[str, Any]:
    """Score several predictions of the same days, streaming over time.

    Parameters
    ----------
    predictions
        ``{name: (time, y, x)}`` with the truth's time coordinate.
    truth
        ``(time, y, x)``; loaded ``batch_days`` at a time.
    mask
        Valid cells ``(y, x)``.
    thresholds
        Event thresholds by name.
    pairs
        ``(a, b)`` model pairs whose differences ``a − b`` get paired intervals.
    scales, tail_threshold, n_boot, seed
        As in :class:`~downpour.metrics.verification.VerificationAccumulator`.
    batch_days
        Days loaded per batch.

    Returns
    -------
    dict
        ``models[name]`` (scores with intervals) and ``differences["a − b"]``.
    """
    times = np.asarray(truth["time"].values)
    accs = {}
    for name, pred in predictions.items():
        pt = np.asarray(pred["time"].values)
        if pt.shape != times.shape or (pt != times).any():
            raise DownpourError(
                f"verification: prediction {name!r} covers other days than the truth "
                f"({pt.size} vs {times.size} days); predict the same split of the same store"
            )
        accs[name] = VerificationAccumulator(
            thresholds, scales=scales, tail_threshold=tail_threshold, mask=mask
        )
    for i in range(0, times.size, batch_days):
        sl = slice(i, i + batch_days)
        t = np.asarray(truth.isel(time=sl).values)
        for name, pred in predictions.items():
            accs[name].update(np.asarray(pred.isel(time=sl).values), t, time=times[sl])
    models = {n: a.compute_with_intervals(n_boot, seed) for n, a in accs.items()}
    diffs = {
        f"{a} − {b}": paired_difference(accs[a], accs[b], n_boot=n_boot, seed=seed)
        for a, b in pairs
        if a in accs and b in accs
    }
    return {"models": models, "differences": diffs}


def _interval(result: dict[str, Any], section: str, thr: str | None, score: str) -> list[float]:
    iv = result["intervals"][section]
    leaf = iv[thr][score] if thr is not None else iv[score]
    return [leaf["estimate"], leaf["low"], leaf["high"]]


def find_srdrn_checkpoints(run: str | Path) -> dict[str, Path]:
    """Return ``{kind: RUN/checkpoints/<kind>/best.ckpt}`` of each SRDRN variant (else last)."""
    out = {}
    for d in sorted((Path(run) / "checkpoints").glob("srdrn*")):
        for name in ("best.ckpt", "last.ckpt"):
            if (d / name).is_file():
                out[d.name] = d / name
                break
    return out


def _default_pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    pairs = []
    if "srdrn_augmented" in names and "srdrn_real" in names:
        pairs.append(("srdrn_augmented", "srdrn_real"))
    for n in names:
        if n.startswith("srdrn") and "bicubic" in names:
            pairs.append((n, "bicubic"))
    return pairs


def significance_lines(result: dict[str, Any]) -> list[str]:
    """Plain statements of which headline differences are significant and which are not."""
    lines = []
    for pair, d in result["differences"].items():
        for label, section, thr, score in HEADLINE[:4] + [HEADLINE[6]]:
            if thr is not None and thr not in d[section]:
                continue
            leaf = d[section][thr][score] if thr is not None else d[section][score]
            est, low, high = leaf["estimate"], leaf["low"], leaf["high"]
            if not np.isfinite(est):
                lines.append(f"{pair}, {label}: undefined (no events)")
                continue
            verdict = (
                "significant" if leaf["significant"] else "not significant (interval includes 0)"
            )
            lines.append(f"{pair}, {label}: {est:+.3f} [{low:+.3f}, {high:+.3f}], {verdict}")
    return lines


def verify_run(
    run: str | Path,
    *,
    checkpoints: Mapping[str, str | Path] | None = None,
    baselines: Sequence[str] = ("bicubic", "bcsd"),
    store: str | Path | None = None,
    split: str = "test",
    fixed: Sequence[float] = (10.0, 20.0),
    scales: Iterable[int] = DEFAULT_SCALES,
    n_boot: int = 1000,
    seed: int = 0,
    figures: bool = True,
    echo: Any = print,
) -> dict[str, Any]:
    """Verify the run's SRDRN variants and baselines on the real days of a split.

    Parameters
    ----------
    run
        Run directory (``metrics/verify.json`` and ``figures/`` are written there).
    checkpoints
        ``{name: checkpoint}``; default: :func:`find_srdrn_checkpoints`.
    baselines
        Baselines fitted on the training days (``bicubic``, ``bcsd``).
    store
        The real store (default ``RUN/data/store.zarr``); never an augmented one.
    split
        Days to verify (``test``).
    fixed
        Fixed thresholds in the store's units, besides P95 and P99.
    scales, n_boot, seed
        FSS scales, bootstrap resamples and seed.
    figures
        Draw ``verify_maps.png`` and ``verify_scores.png``.
    echo
        Progress messages.

    Returns
    -------
    dict
        What ``verify.json`` holds.
    """
    from downpour.training.fit_srdrn import predict_baseline, predict_srdrn

    run = Path(run)
    store = resolve_store_path(store or run / "data" / "store.zarr")
    ds = open_store(store)
    if bool(np.asarray(ds["is_synthetic"].values).any()):
        raise DownpourError(
            f"{store} holds synthetic days; verify against the real store (RUN/data/store.zarr)"
        )
    units = str(ds.attrs.get("units", "mm/day"))
    thr_all = store_attr_json(ds, "thresholds")
    thresholds = {"P95": float(thr_all["P95"]), "P99": float(thr_all["P99"])}
    unit_tag = "mm" if units == "mm/day" else units.replace("/", "")
    thresholds.update({f"{v:g}{unit_tag}": float(v) for v in fixed})
    ckpts = dict(checkpoints) if checkpoints is not None else find_srdrn_checkpoints(run)
    if not ckpts and not baselines:
        raise DownpourError(f"{run}: nothing to verify (no SRDRN checkpoint, no baseline)")
    truth, mask = truth_of(store, split)
    preds: dict[str, xr.DataArray] = {}
    for name, ck in ckpts.items():
        echo(f"predicting {truth.sizes['time']} {split} days with {name} ({ck})")
        preds[name] = predict_srdrn(ck, store, split=split)
    for name in baselines:
        echo(f"predicting {truth.sizes['time']} {split} days with the {name} baseline")
        preds[name] = predict_baseline(name, store, split=split)
    result = verify_models(
        preds, truth, mask, thresholds, pairs=_default_pairs(list(preds)), scales=scales,
        n_boot=n_boot, seed=seed,
    )  # fmt: skip
    result.update(
        split=split,
        store=str(store),
        units=units,
        thresholds=thresholds,
        checkpoints={k: str(v) for k, v in ckpts.items()},
        significance=significance_lines(result),
        headline={
            f"{label} {name}": _interval(res, section, thr, score)
            for name, res in result["models"].items()
            for label, section, thr, score in HEADLINE
            if thr is None or thr in res["categorical"]
        },
    )
    atomic_write_text(run / "metrics" / "verify.json", json.dumps(result, indent=2) + "\n")
    if figures:
        plots.save(
            plots.plot_verification_maps(truth, preds, mask, units=units),
            run / "figures" / "verify_maps.png",
        )
        plots.save(plots.plot_scores(result), run / "figures" / "verify_scores.png")
    return result


def verification_table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Rows ``score × model`` of the headline scores, each ``estimate [low, high]``."""
    names = list(result["models"])
    rows = []
    for label, section, thr, score in HEADLINE:
        if thr is not None and thr not in result["models"][names[0]]["categorical"]:
            continue
        row = [label]
        for n in names:
            est, low, high = _interval(result["models"][n], section, thr, score)
            row.append(f"{est:.3f} [{low:.3f}, {high:.3f}]" if np.isfinite(est) else "n/a")
        rows.append(row)
    return names, rows
