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

Long archives can be verified in pieces: ``verify_run(period=(start, end),
save_state=DIR)`` scores only the days of the split in that date range and
saves one accumulator per model (``DIR/<model>.npz``) with a manifest
(``DIR/manifest.json``, naming the run, store and checkpoints with their
SHA-256) instead of scoring; only the period's days are read and predicted.
:func:`merge_states` merges the pieces of several such folders (refusing a
day present twice, or pieces of another run, store or checkpoint) and writes
the same result as one pass over all their days, bootstrap intervals included.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from downpour.report import figures as plots
from downpour.downscaling.dataset import _as_str
from downpour.downscaling.store import open_store, resolve_store_path, store_attr_json
from downpour.core.errors import DownpourError
from downpour.metrics.verification import (
    DEFAULT_SCALES,
    VerificationAccumulator,
    paired_difference,
)
from downpour.core.files import atomic_dir, atomic_write_text

__all__ = [
    "HEADLINE",
    "accumulate_models",
    "find_srdrn_checkpoints",
    "merge_states",
    "parse_period",
    "save_states",
    "score_models",
    "select_period",
    "significance_lines",
    "truth_of",
    "verification_table",
    "verify_models",
    "verify_run",
]

#: Manifest of a folder of saved accumulators (``verify --save-state``).
MANIFEST = "manifest.json"
_MANIFEST_KIND = "downpour verification state"

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
        As in :class:`~downpour.metrics.verification.VerificationAccumulator`.
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


def parse_period(period: str | Sequence[Any]) -> tuple[np.datetime64, np.datetime64]:
    """First and last day of an inclusive date range ``"START:END"`` (or a pair of dates).

    The text form is that of ``downpour sample --period``
    (:meth:`downpour.config.SamplingConfig.parse_period`): each end ``YYYY``,
    ``YYYY-MM`` or ``YYYY-MM-DD``; a year or month end is its last day.

    Examples
    --------
    >>> parse_period("2002-01:2002-06")
    (np.datetime64('2002-01-01'), np.datetime64('2002-06-30'))
    """
    from downpour.config import SamplingConfig

    try:
        if isinstance(period, str):
            start, end = (np.datetime64(d, "D") for d in SamplingConfig.parse_period(period))
        else:
            first, last = period
            start, end = np.datetime64(str(first), "D"), np.datetime64(str(last), "D")
    except (ValueError, TypeError) as e:
        raise DownpourError(f"--period: {e}") from None
    if end < start:
        raise DownpourError(f"--period: the period starts after it ends ({start} > {end})")
    return start, end


def select_period(da: xr.DataArray, period: str | Sequence[Any], what: str) -> xr.DataArray:
    """Days of ``da`` (dim ``time``) in an inclusive date range; an error when there is none.

    Parameters
    ----------
    da
        ``(time, ...)`` array.
    period
        ``"START:END"`` (dates, both included) or a ``(start, end)`` pair.
    what
        Names the days in the error message, e.g. ``"test days of RUN/data/store.zarr"``.
    """
    start, end = parse_period(period)
    days = np.asarray(da["time"].values).astype("datetime64[D]")
    keep = (days >= start) & (days <= end)
    if not keep.any():
        span = f"{days.min()} to {days.max()}" if days.size else "no days"
        raise DownpourError(
            f"period {start}:{end} holds none of the {days.size} {what} (they cover {span}); "
            "choose dates inside that range"
        )
    return da.isel(time=np.flatnonzero(keep))


def _file_name(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", model) + ".npz"


def save_states(
    accs: Mapping[str, VerificationAccumulator], directory: str | Path, meta: Mapping[str, Any]
) -> dict[str, Any]:
    """Save one accumulator per model and a ``manifest.json`` into ``directory``.

    The folder is written whole (:func:`~downpour.core.files.atomic_dir`): a
    failure midway leaves a previous folder of the same name as it was, never
    a mix of old and new files.

    Parameters
    ----------
    accs
        ``{model: accumulator}`` of the same days.
    directory
        Output folder; a previous state folder there is replaced as a whole.
    meta
        JSON-ready facts for the manifest (run, store, split, units, thresholds, ...).

    Returns
    -------
    dict
        The manifest: ``meta`` plus ``models`` (``{model: file}``), ``days``
        (first and last day), ``n_days``, ``scales`` and ``kind``/``version``.

    Raises
    ------
    DownpourError
        When ``directory`` exists but is not an empty folder or a state folder
        (replacing it would delete other files), or model names collide as file names.
    """
    directory = _state_dir(directory)
    files = {name: _file_name(name) for name in accs}
    if len(set(files.values())) != len(files):
        raise DownpourError(f"model names {list(files)} collide as file names; rename a model")
    first = next(iter(accs.values()))
    times = first.times.astype("datetime64[D]")
    manifest = {
        "kind": _MANIFEST_KIND,
        "version": 1,
        **meta,
        "scales": list(first.scales),
        "n_days": first.n_days,
        "days": [str(times.min()), str(times.max())] if times.size else [],
        "models": files,
    }
    with atomic_dir(directory) as tmp:
        for name, acc in accs.items():
            acc.save(tmp / files[name])
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _state_dir(directory: str | Path) -> Path:
    """``directory`` if it is new, empty or a state folder (which save_states replaces whole)."""
    directory = Path(directory)
    if directory.exists() and not (
        (directory / MANIFEST).is_file() or (directory.is_dir() and not any(directory.iterdir()))
    ):
        raise DownpourError(
            f"--save-state {directory}: exists and is not a verification state folder; "
            "it would be replaced as a whole: give a new or empty folder"
        )
    return directory


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.is_file():
        raise DownpourError(
            f"{directory}: no {MANIFEST}; write verification states with "
            "`downpour verify RUN --period START:END --save-state DIR`"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("kind") != _MANIFEST_KIND:
        raise DownpourError(f"{path}: not a verification state manifest")
    return manifest


def _sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


#: Manifest keys that say what was verified; pieces differing in one of them never merge.
_SOURCE_KEYS = ("run", "store", "checkpoints", "checkpoint_sha256")


def _check_same_source(
    ref_dir: Path, ref: Mapping[str, Any], d: Path, m: Mapping[str, Any]
) -> None:
    """Refuse two pieces verified against another run, store or checkpoint (file contents)."""
    for key in _SOURCE_KEYS:
        a, b = ref.get(key), m.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict) and set(a) == set(b):
            name = next(k for k in a if a[k] != b[k])
            what = f"{key}[{name!r}]: {b[name]!r} in {d} but {a[name]!r} in {ref_dir}"
        else:
            what = f"{key}: {b!r} in {d} but {a!r} in {ref_dir}"
        hint = ""
        if key == "checkpoint_sha256":
            hint = " (the checkpoint was retrained or replaced between the pieces)"
        raise DownpourError(
            f"verify-merge: the pieces {ref_dir} and {d} differ in {what}{hint}; "
            "verify all pieces against the same run, store and checkpoints "
            "(re-run `downpour verify --period … --save-state` for the stale pieces)"
        )


def _result_meta(
    result: dict[str, Any],
    *,
    split: str,
    store: str,
    units: str,
    thresholds: Mapping[str, float],
    checkpoints: Mapping[str, str],
) -> dict[str, Any]:
    """Add the run facts, significance lines and headline block to a scored result."""
    result.update(
        split=split,
        store=store,
        units=units,
        thresholds=dict(thresholds),
        checkpoints=dict(checkpoints),
        significance=significance_lines(result),
        headline={
            f"{label} {name}": _interval(res, section, thr, score)
            for name, res in result["models"].items()
            for label, section, thr, score in HEADLINE
            if thr is None or thr in res["categorical"]
        },
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
    if not directories:
        raise DownpourError("verify-merge: give at least one state folder")
    dirs = [Path(d) for d in directories]
    manifests = [_read_manifest(d) for d in dirs]
    ref = manifests[0]
    for d, m in zip(dirs[1:], manifests[1:], strict=True):
        _check_same_source(dirs[0], ref, d, m)
        for key in ("split", "units", "thresholds", "scales"):
            if m.get(key) != ref.get(key):
                raise DownpourError(
                    f"{d}: {key} {m.get(key)!r} differs from {ref.get(key)!r} in {dirs[0]}; "
                    "merge pieces of the same verification only"
                )
        if set(m["models"]) != set(ref["models"]):
            raise DownpourError(
                f"{d} holds models {sorted(m['models'])} but {dirs[0]} holds "
                f"{sorted(ref['models'])}; verify the same models in every piece"
            )
    accs: dict[str, VerificationAccumulator] = {}
    for name in ref["models"]:
        for d, m in zip(dirs, manifests, strict=True):
            acc = VerificationAccumulator.load(d / m["models"][name])
            try:
                accs[name] = accs[name].merge(acc) if name in accs else acc
            except DownpourError as e:
                raise DownpourError(f"{d}: cannot merge {name!r} into the other pieces: {e}") from e
    first = next(iter(accs.values()))
    times = first.times.astype("datetime64[D]")
    echo(f"merged {len(dirs)} pieces: {first.n_days} days from {times.min()} to {times.max()}")
    result = score_models(accs, pairs=_default_pairs(list(accs)), n_boot=n_boot, seed=seed)
    result = _result_meta(
        result, split=ref["split"], store=ref.get("store", ""), units=ref["units"],
        thresholds=ref["thresholds"], checkpoints=ref.get("checkpoints", {}),
    )  # fmt: skip
    result.update(period=[str(times.min()), str(times.max())], parts=[str(d) for d in dirs])
    atomic_write_text(Path(out), json.dumps(result, indent=2) + "\n")
    return result


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
    period: str | Sequence[Any] | None = None,
    save_state: str | Path | None = None,
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
    period
        Only the days of the split in this inclusive date range,
        ``"START:END"`` or ``(start, end)``; the result records it as ``period``.
    save_state
        Instead of scoring, save the accumulators and a manifest into this
        folder (see :func:`save_states`; a previous state folder there is
        replaced whole) for :func:`merge_states`; no ``verify.json`` and no
        figures are written then. The manifest records the absolute run,
        store and checkpoint paths and each checkpoint's SHA-256.
    echo
        Progress messages.

    Returns
    -------
    dict
        What ``verify.json`` holds (or, with ``save_state``, the manifest).
    """
    from downpour.downscaling.train_srdrn import predict_baseline, predict_srdrn

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
    if save_state is not None:
        _state_dir(save_state)  # before any prediction
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
    accs = accumulate_models(preds, truth, mask, thresholds, scales=scales)
    meta = {"split": split, "store": str(store), "units": units, "thresholds": thresholds,
            "checkpoints": {k: str(v) for k, v in ckpts.items()}}  # fmt: skip
    if save_state is not None:
        source = {  # absolute paths and checkpoint contents: merge_states compares them
            "store": str(store.resolve()),
            "checkpoints": {k: str(Path(v).resolve()) for k, v in ckpts.items()},
            "checkpoint_sha256": {k: _sha256(v) for k, v in ckpts.items()},
        }
        manifest = save_states(
            accs,
            save_state,
            {"run": str(run.resolve()), **meta, **source, "period": _period_json(period)},
        )
        echo(f"saved {manifest['n_days']} days of {len(accs)} models to {save_state}")
        return manifest
    result = score_models(accs, pairs=_default_pairs(list(preds)), n_boot=n_boot, seed=seed)
    result = _result_meta(result, **meta)
    if period is not None:
        days = np.asarray(truth["time"].values).astype("datetime64[D]")
        result["period"] = [str(days.min()), str(days.max())]
    atomic_write_text(run / "metrics" / "verify.json", json.dumps(result, indent=2) + "\n")
    if figures:
        plots.save(
            plots.plot_verification_maps(truth, preds, mask, units=units),
            run / "figures" / "verify_maps.png",
        )
        plots.save(plots.plot_scores(result), run / "figures" / "verify_scores.png")
    return result


def _period_json(period: str | Sequence[Any] | None) -> list[str] | None:
    return None if period is None else [str(d) for d in parse_period(period)]


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
