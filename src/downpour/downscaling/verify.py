"""``downpour verify``: every downscaler of a run against the real test days.

:func:`verify_run` predicts the test split of the run's store with each
trained SRDRN variant (``RUN/checkpoints/srdrn*/last.ckpt``, :data:`CHECKPOINT_RULE`) and each
baseline (bicubic, BCSD), and scores all of them on the same days with the
streaming accumulator of :mod:`downpour.metrics.verification`
(docs/metrics.md#downscaling-verification): CSI, POD, FAR, POFD and SEDI at
the training P95 and P99 of wet values and at fixed thresholds (10 and 20
mm/day by default), correlation, MAE, RMSE, MAE_tail, FSS at 1, 3, 9 and 27
pixels, P99 bias and the GPD tails of the daily domain maxima, each headline
number with a bootstrap 95% interval over days.

When the run holds a trained cVAE, its prior-mode ensemble (K members per
day, ``members``) is scored as a probabilistic downscaler beside them
(:mod:`downpour.downscaling.verify_generator`, the ``generator`` block: CRPS,
CRPS − MAE against every deterministic model, spread–skill, rank histogram,
Brier/BSS/reliability at P95 and P99, every member pooled as a deterministic
forecast); ``generator=False`` skips it.

Differences between models (augmented − real-only, each SRDRN − bicubic)
get *paired* bootstrap intervals (the same resampled days for both), so a
difference is called significant only when its interval excludes zero.

Results go to ``RUN/metrics/verify.json`` (with a ``headline`` block that
``downpour compare`` reads) and ``RUN/figures/verify_*.png``.

Long archives can be verified in pieces: ``verify_run(period=(start, end),
save_state=DIR)`` scores only the days of the split in that date range and
saves one accumulator per model (``DIR/<model>.npz``) with a manifest
(``DIR/manifest.json``, naming the run, store and checkpoints with their
SHA-256) instead of scoring; only the period's days are read and predicted
(the folders are written and read by :mod:`downpour.downscaling.verify_state`).
:func:`merge_states` merges the pieces of several such folders (refusing a
day present twice, or pieces of another run, store or checkpoint) and writes
the same result as one pass over all their days, bootstrap intervals included.
The tables printed from a result are those of :mod:`downpour.report.tables`.

This module is long because it is the one place that turns a run into scores:
predicting every model, accumulating, scoring with intervals, pairing models and
writing the result; the state files are :mod:`downpour.downscaling.verify_state`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from downpour.core.errors import DownpourError
from downpour.core.files import atomic_write_text
from downpour.core.periods import parse_period, select_period
from downpour.core.rundir import RunDir
from downpour.downscaling.store import labels, open_store, resolve_store_path, store_attr_json
from downpour.downscaling.verify_generator import (
    DEFAULT_MEMBERS,
    GENERATOR,
    load_generator,
    score_generator,
    verify_generator_days,
)
from downpour.downscaling.verify_probabilistic import (
    EVENTS,
    accumulate_probabilistic,
    score_probabilistic,
    split_heads,
    training_climatology,
)
from downpour.downscaling.verify_state import (
    check_state_dir,
    file_sha256,
    merge_generator_pieces,
    merge_pieces,
    merge_probabilistic_pieces,
    save_states,
)
from downpour.metrics.accumulator import DEFAULT_SCALES, VerificationAccumulator
from downpour.metrics.verification import paired_difference
from downpour.report import ensemble_figures as ens_plots
from downpour.report import figures as plots
from downpour.report import probabilistic as prob_plots
from downpour.report.tables import HEADLINE, generator_headline, score_interval, significance_lines

__all__ = [
    "accumulate_models",
    "CHECKPOINT_RULE",
    "find_srdrn_checkpoints",
    "merge_states",
    "score_models",
    "truth_of",
    "verify_models",
    "verify_run",
]


def truth_of(store: str | Path, split: str = "test") -> tuple[xr.DataArray, np.ndarray]:
    """Real fields of a split, NaN outside the mask, and the mask.

    Returns
    -------
    (xarray.DataArray, numpy.ndarray)
        Truth ``(time, y, x)`` in the store's units (lazily indexed), mask ``(y, x)``.
    """
    ds = open_store(store)
    split_v = labels(np.asarray(ds["split"].values))
    real = ~np.asarray(ds["is_synthetic"].values).astype(bool)
    rows = np.flatnonzero((split_v == split) & real)
    if rows.size == 0:
        raise DownpourError(f"{resolve_store_path(store)}: the {split!r} split has no real days")
    mask = np.asarray(ds["mask"].values, dtype=bool)
    truth = ds["target"].isel(time=rows).where(xr.DataArray(mask, dims=("y", "x")))
    return truth, mask


def accumulate_models(
    predictions: Mapping[str, xr.DataArray],
    truth: xr.DataArray,
    mask: np.ndarray | None,
    thresholds: Mapping[str, float],
    *,
    scales: Iterable[int] = DEFAULT_SCALES,
    tail_threshold: float | None = None,
    batch_days: int = 64,
) -> dict[str, VerificationAccumulator]:
    """Accumulate several predictions of the same days, streaming over time.

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
    scales, tail_threshold
        As in :class:`~downpour.metrics.accumulator.VerificationAccumulator`.
    batch_days
        Days loaded per batch.

    Returns
    -------
    dict
        ``{name: VerificationAccumulator}`` holding the days with their time stamps.
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
    return accs


def score_models(
    accs: Mapping[str, VerificationAccumulator],
    *,
    pairs: Sequence[tuple[str, str]] = (),
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Scores with bootstrap intervals of each accumulator and paired differences.

    Parameters
    ----------
    accs
        ``{name: accumulator}`` of the same days (see :func:`accumulate_models`).
    pairs
        ``(a, b)`` model pairs whose differences ``a − b`` get paired intervals.
    n_boot, seed
        Bootstrap resamples (of days) and seed.

    Returns
    -------
    dict
        ``models[name]`` (scores with intervals) and ``differences["a − b"]``.
    """
    models = {n: a.compute_with_intervals(n_boot, seed) for n, a in accs.items()}
    diffs = {
        f"{a} − {b}": paired_difference(accs[a], accs[b], n_boot=n_boot, seed=seed)
        for a, b in pairs
        if a in accs and b in accs
    }
    return {"models": models, "differences": diffs}


def verify_models(
    predictions: Mapping[str, xr.DataArray],
    truth: xr.DataArray,
    mask: np.ndarray | None,
    thresholds: Mapping[str, float],
    *,
    pairs: Sequence[tuple[str, str]] = (),
    scales: Iterable[int] = DEFAULT_SCALES,
    tail_threshold: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    batch_days: int = 64,
) -> dict[str, Any]:
    """Score several predictions of the same days: :func:`accumulate_models`, :func:`score_models`.

    Returns
    -------
    dict
        ``models[name]`` (scores with intervals) and ``differences["a − b"]``.
    """
    accs = accumulate_models(
        predictions, truth, mask, thresholds, scales=scales, tail_threshold=tail_threshold,
        batch_days=batch_days,
    )  # fmt: skip
    return score_models(accs, pairs=pairs, n_boot=n_boot, seed=seed)


def _result_meta(
    result: dict[str, Any],
    *,
    split: str,
    store: str,
    units: str,
    thresholds: Mapping[str, float],
    checkpoints: Mapping[str, str],
    checkpoint_rule: str = "",
) -> dict[str, Any]:
    """Add the run facts, significance lines and headline block to a scored result."""
    result.update(
        split=split,
        store=store,
        units=units,
        thresholds=dict(thresholds),
        checkpoints=dict(checkpoints),
        checkpoint_rule=checkpoint_rule,
        significance=significance_lines(result),
        headline={
            f"{label} {name}": score_interval(res, section, thr, score)
            for name, res in result["models"].items()
            for label, section, thr, score in HEADLINE
            if thr is None or thr in res["categorical"]
        }
        | generator_headline(result),
    )
    return result


def merge_states(
    directories: Sequence[str | Path],
    out: str | Path,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    echo: Any = print,
) -> dict[str, Any]:
    """Merge the saved accumulators of several pieces and score them as one period.

    Parameters
    ----------
    directories
        Folders written by ``verify_run(..., save_state=DIR)`` (any order).
    out
        The result JSON, e.g. ``RUN/metrics/verify.json``.
    n_boot, seed
        Bootstrap resamples (of days) and seed.
    echo
        Progress messages.

    Returns
    -------
    dict
        What :func:`verify_run` returns for the union of the pieces' days, plus
        ``period`` (first and last day) and ``parts`` (the folders).

    Raises
    ------
    DownpourError
        When a folder has no manifest, the pieces disagree on run, store,
        checkpoints (paths or contents), split, units, thresholds, scales or
        models, or a day is in two pieces.
    """
    ref, accs = merge_pieces(directories)
    dirs = [Path(d) for d in directories]
    first = next(iter(accs.values()))
    times = first.times.astype("datetime64[D]")
    echo(f"merged {len(dirs)} pieces: {first.n_days} days from {times.min()} to {times.max()}")
    result = score_models(accs, pairs=_default_pairs(list(accs)), n_boot=n_boot, seed=seed)
    gen = merge_generator_pieces(directories)
    if gen:
        result[GENERATOR] = score_generator(gen["ensemble"], gen["members"], accs, ref[GENERATOR],
                                            n_boot=n_boot, seed=seed, echo=echo)  # fmt: skip
    result = _result_meta(
        result, split=ref["split"], store=ref.get("store", ""), units=ref["units"],
        thresholds=ref["thresholds"], checkpoints=ref.get("checkpoints", {}),
        checkpoint_rule=ref.get("checkpoint_rule", ""),
    )  # fmt: skip
    extra = merge_probabilistic_pieces(directories)
    if extra:
        result["probabilistic"] = score_probabilistic(
            extra["quantile"], extra["probability"], events=ref["events"],
            climatology=ref["climatology"], n_boot=n_boot, seed=seed,
        )  # fmt: skip
    result.update(period=[str(times.min()), str(times.max())], parts=[str(d) for d in dirs])
    atomic_write_text(Path(out), json.dumps(result, indent=2) + "\n")
    return result


#: How ``verify`` and the main job choose each SRDRN variant's checkpoint: one rule for both.
CHECKPOINT_RULE = (
    "final weights (last.ckpt) of each SRDRN variant: the variants are compared at the same "
    "seed and number of optimiser steps, and picking each one's best validation epoch would "
    "add a selection step of its own"
)


def find_srdrn_checkpoints(run: str | Path) -> dict[str, Path]:
    """Return ``{kind: RUN/checkpoints/<kind>/last.ckpt}`` per SRDRN variant (the rule).

    Variants are the folders ``srdrn*`` and then ``qsrdrn*`` (quantile SRDRN),
    each family with its ``*_real`` variant first and the others by name; a variant
    without ``last.ckpt`` (an interrupted run) is left out.
    """
    run = RunDir(run)
    kinds = sorted(
        d.name for pattern in ("srdrn*", "qsrdrn*") for d in run.checkpoints_dir.glob(pattern)
    )
    kinds.sort(key=lambda k: (k.startswith("q"), not k.endswith("_real"), k))
    return {k: run.checkpoint(k, "last") for k in kinds if run.checkpoint(k, "last").is_file()}


def _default_pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    """Augmented − real-only, each quantile median − its deterministic twin, each SRDRN − bicubic.

    Examples
    --------
    >>> _default_pairs(["srdrn_real", "qsrdrn_real", "qsrdrn_real q0.99", "bicubic"])
    [('qsrdrn_real', 'srdrn_real'), ('srdrn_real', 'bicubic'), ('qsrdrn_real', 'bicubic')]
    """
    pairs = []
    for family in ("srdrn", "qsrdrn"):
        if f"{family}_augmented" in names and f"{family}_real" in names:
            pairs.append((f"{family}_augmented", f"{family}_real"))
    for suffix in ("real", "augmented"):
        if f"qsrdrn_{suffix}" in names and f"srdrn_{suffix}" in names:
            pairs.append((f"qsrdrn_{suffix}", f"srdrn_{suffix}"))
    models = [n for n in names if n.startswith(("srdrn", "qsrdrn")) and " " not in n]
    pairs += [(n, "bicubic") for n in models if "bicubic" in names]
    return pairs


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
    period: str | Sequence[Any] | None = None,
    save_state: str | Path | None = None,
    generator: bool | str | Path = True,
    members: int = DEFAULT_MEMBERS,
    echo: Any = print,
) -> dict[str, Any]:
    """Verify the run's SRDRN variants, baselines and generator on the real days of a split.

    Parameters
    ----------
    run
        Run directory (``metrics/verify.json`` and ``figures/`` are written there).
    checkpoints
        ``{name: checkpoint}``; default: :func:`find_srdrn_checkpoints` (the
        rule :data:`CHECKPOINT_RULE`, printed and stored as ``checkpoint_rule``).
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
    period
        Only the days of the split in this inclusive date range,
        ``"START:END"`` or ``(start, end)``; the result records it as ``period``.
    save_state
        Instead of scoring, save the accumulators and a manifest into this
        folder (see :func:`~downpour.downscaling.verify_state.save_states`; a
        previous state folder there is replaced whole) for :func:`merge_states`;
        no ``verify.json`` and no figures are written then. The manifest records
        the absolute run, store and checkpoint paths and each checkpoint's SHA-256.
    generator
        True: score the run's cVAE (``RUN/checkpoints/cvae/best.ckpt``, else
        ``last.ckpt``; nothing when there is none) as a probabilistic downscaler,
        the ``generator`` block (:mod:`downpour.downscaling.verify_generator`);
        False: skip it; a path: that cVAE checkpoint.
    members
        Prior-mode members per day of the generator's ensemble (at least 2; not
        the checkpoint's ``sampling.members``).
    echo
        Progress messages.

    Returns
    -------
    dict
        What ``verify.json`` holds (or, with ``save_state``, the manifest).
    """
    from downpour.downscaling.predict import predict_baseline, predict_srdrn

    run = Path(run)
    rundir = RunDir(run)
    store = resolve_store_path(store or rundir.store)
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
    rule = CHECKPOINT_RULE if checkpoints is None else "as given"
    if ckpts:
        echo(f"SRDRN checkpoints: {rule}")
    if not ckpts and not baselines:
        raise DownpourError(f"{run}: nothing to verify (no SRDRN checkpoint, no baseline)")
    if save_state is not None:
        check_state_dir(save_state)  # before any prediction
    gen_model = load_generator(run, generator, store, members)  # fails before any prediction
    truth, mask = truth_of(store, split)
    days = None
    if period is not None:  # only these days are read and predicted
        truth = select_period(truth, period, f"real {split} days of {store}")
        days = np.asarray(truth["time"].values)
    preds: dict[str, xr.DataArray] = {}
    for name, ck in ckpts.items():
        echo(f"predicting {truth.sizes['time']} {split} days with {name} ({ck})")
        preds[name] = predict_srdrn(ck, store, split=split, times=days)
    for name in baselines:
        echo(f"predicting {truth.sizes['time']} {split} days with the {name} baseline")
        preds[name] = predict_baseline(name, store, split=split, times=days)
    point, quantile_preds = split_heads(preds)  # every head scored as a field too
    accs = accumulate_models(point, truth, mask, thresholds, scales=scales)
    probabilistic: dict[str, Any] = {}
    events = {k: thresholds[k] for k in EVENTS}
    clim = training_climatology(store, events, mask) if quantile_preds or gen_model else {}
    if quantile_preds:
        names = ", ".join(quantile_preds)
        echo(f"accumulating the quantile heads and exceedance probabilities of {names}")
        deterministic = {n: p for n, p in point.items() if n in preds and n not in quantile_preds}
        qaccs, paccs = accumulate_probabilistic(quantile_preds, deterministic, truth, mask, events,
                                                clim)  # fmt: skip
        probabilistic = {"events": events, "climatology": clim, "quantile": qaccs,
                         "probability": paccs}  # fmt: skip
    gen = None
    if gen_model is not None:
        gen = verify_generator_days(gen_model, store, truth, mask, thresholds, events, clim,
                                    seed=seed, echo=echo)  # fmt: skip
        ckpts[GENERATOR] = gen_model.checkpoint
    meta = {
        "split": split,
        "store": str(store),
        "units": units,
        "thresholds": thresholds,
        "checkpoints": {k: str(v) for k, v in ckpts.items()},
        "checkpoint_rule": rule,
    }
    if save_state is not None:
        source = {  # absolute paths and checkpoint contents: merge_states compares them
            "store": str(store.resolve()),
            "checkpoints": {k: str(Path(v).resolve()) for k, v in ckpts.items()},
            "checkpoint_sha256": {k: file_sha256(v) for k, v in ckpts.items()},
        }
        extra = {k: probabilistic[k] for k in ("events", "climatology") if probabilistic}
        if gen is not None:
            extra[GENERATOR] = gen.facts
        manifest = save_states(
            accs,
            save_state,
            {"run": str(run.resolve()), **meta, **source, "period": _period_json(period), **extra},
            probabilistic={k: probabilistic[k] for k in ("quantile", "probability")}
            if probabilistic
            else None,
            generator={"ensemble": gen.ensemble, "members": gen.members} if gen else None,
        )
        echo(f"saved {manifest['n_days']} days of {len(accs)} models to {save_state}")
        return manifest
    result = score_models(accs, pairs=_default_pairs(list(point)), n_boot=n_boot, seed=seed)
    if gen is not None:
        result[GENERATOR] = score_generator(gen.ensemble, gen.members, accs, gen.facts,
                                            n_boot=n_boot, seed=seed, echo=echo)  # fmt: skip
    result = _result_meta(result, **meta)
    if probabilistic:
        result["probabilistic"] = score_probabilistic(
            probabilistic["quantile"], probabilistic["probability"],
            events=probabilistic["events"], climatology=probabilistic["climatology"],
            n_boot=n_boot, seed=seed,
        )  # fmt: skip
    for name, res in result["models"].items():
        ex = res.get("excluded", {})
        if any(ex.values()):
            echo(
                f"{name}: {ex['missing_truth']} cell-days without truth and "
                f"{ex['nonfinite_prediction']} NaN/infinite predictions inside the mask were "
                "left out of its scores (counted in verify.json under 'excluded')"
            )
    if period is not None:
        days = np.asarray(truth["time"].values).astype("datetime64[D]")
        result["period"] = [str(days.min()), str(days.max())]
    atomic_write_text(rundir.metrics("verify"), json.dumps(result, indent=2) + "\n")
    if figures:
        models = {n: point[n] for n in preds}  # the median head stands for a quantile model
        plots.save(
            plots.plot_verification_maps(truth, models, mask, units=units),
            rundir.figure("verify_maps"),
        )
        plots.save(plots.plot_scores(result), rundir.figure("verify_scores"))
        if "probabilistic" in result:
            plots.save(prob_plots.plot_quantile_reliability(result),
                       rundir.figure("verify_quantile_reliability"))  # fmt: skip
            plots.save(prob_plots.plot_reliability_diagrams(result),
                       rundir.figure("verify_reliability_diagrams"))  # fmt: skip
        if gen is not None:
            heavy = gen.heaviest.dataset(mask, {c: truth[c].values for c in ("lat", "lon")
                                                if c in truth.coords})  # fmt: skip
            for name, fig in ens_plots.generator_figures(result, heavy, units=units).items():
                plots.save(fig, rundir.figure(name))
    return result


def _period_json(period: str | Sequence[Any] | None) -> list[str] | None:
    return None if period is None else [str(d) for d in parse_period(period)]
