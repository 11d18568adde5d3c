"""``downpour augment``: real training days plus synthetic heavy events, in one store.

:func:`augment` reads the prepared store and one or more samples stores
written by ``downpour sample`` from *training* days, and writes a new store
with the same layout (:mod:`downpour.downscaling.store`) that SRDRN training reads
directly:

- the real days of the training and validation splits, unchanged (the test
  split is left out: test days never reach an augmented store);
- one extra day per selected synthetic member, in the ``train`` split, with
  ``is_synthetic`` True, ``source_time`` the real event it varies and
  ``member`` its member index (−1 for real days); ``time`` is the source
  event's date, so seasonality stays honest;
- ``target`` = the member Ŷ (0 outside the mask); ``predictors`` = the
  source event's X (``augment.predictors = "paired"``) or X re-derived from
  Ŷ by block-mean coarsening of the precipitation channels, the other
  channels kept from the source event (``"coarsened"``);
- ``heavy_stat`` and ``is_heavy`` recomputed from Ŷ with the store's
  statistic and threshold, so the stratified sampler sees what Ŷ is;
- the store's normalisation and thresholds unchanged (fitted on real
  training days only), and an ``augmentation`` attribute (JSON) recording
  the samples, checkpoints, mode, temperature, selection and counts.

Selection: events are ranked by their real heavy statistic (heaviest first)
and ``augment.top_events`` keeps the first N. Then ``augment.per_event``
members per event, or ``augment.ratio`` × the number of real training days
in total, handed out one member per event in rank order, round after round
(so the heaviest events get the extra member when the total does not divide
evenly); neither: every member. Which members of an event are used is a
seeded random choice.

Samples drawn from validation or test days (``for_evaluation_only``), or
whose days are not training days of the store, are refused, as are samples
holding NaN/inf inside the mask (``downpour evaluate`` refuses them too).

This module is long because everything that decides what may enter training
(selection, the refusals above, synthetic days) sits beside the one writer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from downpour.config import AugmentConfig, load_config
from downpour.core.errors import DownpourError
from downpour.core.rundir import RunDir
from downpour.data.coarsen import block_mean
from downpour.data.normalize import Normalization
from downpour.data.splits import domain_statistic
from downpour.downscaling.samples import open_samples
from downpour.downscaling.store import (
    StoreWriter,
    day_dataset,
    labels,
    open_store,
    resolve_store_path,
    store_attr_json,
)

__all__ = ["augment", "augment_run", "exclusive_amounts", "select_members"]

_BLOCK_DAYS = 256


def select_members(
    rank_stat: np.ndarray,
    members: int,
    cfg: AugmentConfig,
    n_real_train: int,
) -> np.ndarray:
    """Choose the synthetic (event, member) pairs.

    Parameters
    ----------
    rank_stat
        Heavy statistic of each event's real field, shape ``(E,)``.
    members
        Members per event K.
    cfg
        Selection settings (``per_event``, ``ratio``, ``top_events``, ``seed``).
    n_real_train
        Real training days (for ``ratio``).

    Returns
    -------
    numpy.ndarray
        Shape ``(M, 2)`` int: event and member index of each chosen sample,
        ordered by round, then event rank.
    """
    order = np.argsort(-np.asarray(rank_stat), kind="stable")
    if cfg.top_events is not None:
        order = order[: cfg.top_events]
    n_ev = order.size
    if cfg.per_event is not None:
        if cfg.per_event > members:
            raise DownpourError(
                f"augment.per_event={cfg.per_event} but the samples hold {members} members per "
                f"event; sample more (--set sampling.members={cfg.per_event}) or lower per_event"
            )
        total = cfg.per_event * n_ev
    elif cfg.ratio is not None:
        total = int(round(cfg.ratio * n_real_train))
        if total > members * n_ev:
            raise DownpourError(
                f"augment.ratio={cfg.ratio} asks for {total} synthetic days "
                f"({cfg.ratio} × {n_real_train} real training days) but {n_ev} events × "
                f"{members} members = {members * n_ev} are available; sample more members "
                f"(--set sampling.members={math.ceil(total / max(n_ev, 1))}) or lower the ratio"
            )
    else:
        total = members * n_ev
    rng = np.random.default_rng(cfg.seed)
    perm = rng.permuted(np.tile(np.arange(members), (n_ev, 1)), axis=1)  # (rank, round)
    rounds = np.arange(total) // max(n_ev, 1)
    ranks = np.arange(total) % max(n_ev, 1)
    return np.stack([order[ranks], perm[ranks, rounds]], axis=1).astype(np.int64)


def _check_for_training(ds: xr.Dataset, path: Path) -> None:
    if int(ds.attrs.get("for_evaluation_only", 0)) or ds.attrs.get("split", "train") != "train":
        raise DownpourError(
            f"{path}: these samples were drawn from {ds.attrs.get('split', '?')!r} days and are "
            "for evaluation only; augmentation may use samples of training days only "
            "(downpour sample --set sampling.split=train)"
        )


def _check_finite(ds: xr.Dataset, mask: np.ndarray, path: Path, chunk: int = 64) -> None:
    """Refuse NaN/inf inside the mask (as ``downpour evaluate`` does): not 0 mm of training."""
    bad = 0
    for start in range(0, ds.sizes["event"], chunk):
        block = np.asarray(ds["samples"].isel(event=slice(start, start + chunk)).values)
        bad += int((~np.isfinite(block[..., mask])).sum())
    if bad:
        raise DownpourError(
            f"{path}: 'samples' has {bad} NaN/inf values inside the mask; augmentation would "
            "train on them as 0 mm: re-sample from a checkpoint that trained without NaN"
        )


def _event_rows(store: xr.Dataset, times: np.ndarray, path: Path) -> np.ndarray:
    """Store rows of the samples' events; every one must be a real training day."""
    st = np.asarray(store["time"].values).astype("datetime64[ns]")
    split = labels(np.asarray(store["split"].values))
    real = ~np.asarray(store["is_synthetic"].values).astype(bool)
    key = np.where(real, st, np.datetime64("NaT"))
    sorter = np.argsort(key)
    t = times.astype("datetime64[ns]")
    pos = np.searchsorted(key, t, sorter=sorter).clip(0, st.size - 1)
    rows = sorter[pos]
    ok = key[rows] == t
    if not ok.all():
        bad = np.datetime_as_string(t[~ok][0], unit="D")
        raise DownpourError(
            f"{path}: {int((~ok).sum())} event days (first {bad}) are not in the store; "
            "augment with the store the samples were drawn from (--store)"
        )
    not_train = split[rows] != "train"
    if not_train.any():
        bad = np.datetime_as_string(t[not_train][0], unit="D")
        raise DownpourError(
            f"{path}: {int(not_train.sum())} event days (first {bad}) are not training days of "
            "the store; synthetic samples of validation or test days would leak them into training"
        )
    return rows


def _synthetic_block(
    store: xr.Dataset,
    samples: xr.Dataset,
    rows: np.ndarray,
    chosen: np.ndarray,
    cfg: AugmentConfig,
    norm: Normalization,
) -> dict[str, np.ndarray]:
    mask = np.asarray(store["mask"].values, dtype=bool)
    ev, mem = chosen[:, 0], chosen[:, 1]
    y = np.asarray(samples["samples"].values, dtype=np.float32)[ev, mem]
    y = np.where(mask, np.nan_to_num(y, nan=0.0), 0.0).astype(np.float32)
    if (y < 0).any():
        raise DownpourError("samples hold negative precipitation; re-sample with downpour sample")
    src_rows = rows[ev]
    x = np.asarray(store["predictors"].isel(time=src_rows).values, dtype=np.float32)
    if cfg.predictors == "coarsened":
        precip = np.flatnonzero(np.asarray(norm.x_log1p, dtype=bool))
        if precip.size == 0:
            raise DownpourError(
                "augment.predictors=coarsened needs a precipitation predictor channel, the store "
                f"has {list(norm.channels)} (none is precipitation); use predictors=paired"
            )
        f = int(store.attrs["scale_factor"])
        coarse = np.nan_to_num(block_mean(np.where(mask, y, np.nan), f), nan=0.0)
        x[:, precip] = coarse[:, None]
    stat = domain_statistic(y, mask, str(store.attrs.get("heavy_statistic", "mean")))
    times = np.asarray(store["time"].values)[src_rows]
    return {
        "time": times,
        "target": y,
        "predictors": x,
        "split": np.array(["train"] * len(chosen), dtype=object),
        "is_heavy": stat >= float(store.attrs["heavy_threshold"]),
        "heavy_stat": stat.astype(np.float32),
        "is_synthetic": np.ones(len(chosen), dtype=bool),
        "source_time": times,
        "member": mem.astype(np.int32),
    }


def _day_dataset(store: xr.Dataset, block: dict[str, np.ndarray]) -> xr.Dataset:
    """Per-day variables of one block in the store layout (``store.day_dataset``)."""
    return day_dataset(
        block["time"],
        target=block["target"],
        predictors=block["predictors"],
        split=block["split"],
        is_heavy=block["is_heavy"],
        heavy_stat=block["heavy_stat"],
        units=str(store.attrs["units"]),
        heavy_statistic=str(store.attrs.get("heavy_statistic", "mean")),
        is_synthetic=block["is_synthetic"],
        source_time=block["source_time"],
        member=block["member"],
    )


def _real_block(store: xr.Dataset, rows: np.ndarray) -> dict[str, np.ndarray]:
    part = store.isel(time=rows)
    return {
        "time": np.asarray(part["time"].values),
        "target": np.asarray(part["target"].values, dtype=np.float32),
        "predictors": np.asarray(part["predictors"].values, dtype=np.float32),
        "split": labels(np.asarray(part["split"].values)).astype(object),
        "is_heavy": np.asarray(part["is_heavy"].values, dtype=bool),
        "heavy_stat": np.asarray(part["heavy_stat"].values, dtype=np.float32),
        "is_synthetic": np.zeros(rows.size, dtype=bool),
        "source_time": np.asarray(part["time"].values),
        "member": np.full(rows.size, -1, dtype=np.int32),
    }


def augment(
    store: str | Path,
    samples: Sequence[str | Path],
    out: str | Path,
    cfg: AugmentConfig | None = None,
    *,
    echo: Any = print,
) -> dict[str, Any]:
    """Write the augmented training store.

    Parameters
    ----------
    store
        The prepared store (or its run directory) the samples were drawn from.
    samples
        Samples stores of training days (``RUN/samples/*_train.zarr``).
    out
        Output ``.zarr`` directory (written atomically).
    cfg
        Selection settings (default: :class:`AugmentConfig`()).
    echo
        Progress messages.

    Returns
    -------
    dict
        The ``augmentation`` provenance record, also stored as an attribute.
    """
    cfg = cfg or AugmentConfig()
    if not samples:
        raise DownpourError("augment needs at least one samples store (RUN/samples/*_train.zarr)")
    store_path = resolve_store_path(store)
    st = open_store(store_path)
    mask = np.asarray(st["mask"].values, dtype=bool)
    norm = Normalization.from_dict(store_attr_json(st, "normalization"))
    split = labels(np.asarray(st["split"].values))
    is_synth = np.asarray(st["is_synthetic"].values).astype(bool)
    real_rows = np.flatnonzero(np.isin(split, ("train", "val")) & ~is_synth)
    n_real_train = int(((split == "train") & ~is_synth).sum())
    blocks: list[dict[str, np.ndarray]] = []
    records: list[dict[str, Any]] = []
    for k, sp in enumerate(samples):
        path = Path(sp)
        ds = open_samples(path)
        _check_for_training(ds, path)
        if ds["samples"].shape[-2:] != mask.shape:
            raise DownpourError(
                f"{path}: samples grid {tuple(ds['samples'].shape[-2:])} differs from the store's "
                f"{mask.shape} ({store_path}); augment with the store the samples were drawn from"
            )
        _check_finite(ds, mask, path)
        rows = _event_rows(st, np.asarray(ds["time"].values), path)
        rank = np.asarray(st["heavy_stat"].values)[rows]
        update: dict[str, Any] = {"seed": cfg.seed + k}
        if cfg.ratio is not None:  # the total is shared equally by the stores
            update["ratio"] = cfg.ratio / len(samples)
        per_store = cfg.model_copy(update=update)
        chosen = select_members(rank, ds.sizes["member"], per_store, n_real_train)
        blocks.append(_synthetic_block(st, ds, rows, chosen, cfg, norm))
        records.append(
            {
                "samples": str(path),
                "checkpoints": json.loads(ds.attrs.get("checkpoints", "[]")),
                "mode": ds.attrs.get("mode"),
                "temperature": ds.attrs.get("temperature"),
                "pixel_threshold": ds.attrs.get("pixel_threshold"),
                "seed": ds.attrs.get("seed"),
                "events": int(np.unique(chosen[:, 0]).size),
                "synthetic_days": int(len(chosen)),
            }
        )
    n_synth = sum(len(b["time"]) for b in blocks)
    info = {
        "real_days": int(real_rows.size),
        "real_train_days": n_real_train,
        "synthetic_days": n_synth,
        "synthetic_heavy_days": int(sum(b["is_heavy"].sum() for b in blocks)),
        "ratio_realised": n_synth / max(n_real_train, 1),
        "selection": cfg.model_dump(mode="json"),
        "splits_kept": ["train", "val"],
        "source_store": str(store_path),
        "sources": records,
    }
    static = st[["static", "mask"]].load()
    static = static.assign_coords({k: v for k, v in st.coords.items() if "time" not in v.dims})
    attrs = {**st.attrs, "augmentation": json.dumps(info)}
    out = Path(out)
    with StoreWriter(out, static, attrs) as writer:
        for start in range(0, real_rows.size, _BLOCK_DAYS):
            writer.write(_day_dataset(st, _real_block(st, real_rows[start : start + _BLOCK_DAYS])))
        for block in blocks:
            writer.write(_day_dataset(st, block))
    echo(
        f"augmented store {out}: {info['real_days']} real days (train+val) + {n_synth} synthetic "
        f"training days ({info['synthetic_heavy_days']} heavy), "
        f"{info['ratio_realised']:.3f} per real training day"
    )
    return info


def exclusive_amounts(overrides: Sequence[str]) -> tuple[str, ...]:
    """Let ``--set augment.ratio=R`` replace the run's ``augment.per_event`` (and vice versa).

    The two amounts exclude each other; a config (e.g. the run's own) that
    sets one would make an override of the other an error, so the other is
    reset to null unless it is overridden too.

    Examples
    --------
    >>> exclusive_amounts(["augment.ratio=0.2"])
    ('augment.per_event=null', 'augment.ratio=0.2')
    >>> exclusive_amounts(["augment.ratio=0.2", "augment.per_event=null"])
    ('augment.ratio=0.2', 'augment.per_event=null')
    """
    out = tuple(overrides)
    keys = {o.split("=", 1)[0].strip() for o in out}
    for key, other in (
        ("augment.ratio", "augment.per_event"),
        ("augment.per_event", "augment.ratio"),
    ):
        if key in keys and other not in keys:
            out = (f"{other}=null", *out)
    return out


def augment_run(
    samples: Sequence[str | Path],
    *,
    store: str | Path | None = None,
    out: str | Path | None = None,
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    echo: Any = print,
) -> dict[str, Any]:
    """``downpour augment``: augment the run of the first samples store with its own config.

    Parameters
    ----------
    samples
        Samples stores of training days (``RUN/samples/*_train.zarr``).
    store
        The prepared store they were drawn from; default the run's.
    out
        The augmented store; default ``RUN/data/augmented.zarr``.
    config
        A config file or preset whose ``augment`` section is used; default
        the run's ``config.yaml`` (the built-in defaults without one).
    overrides
        ``section.key=value`` overrides; ``augment.ratio`` and
        ``augment.per_event`` replace each other (:func:`exclusive_amounts`).
    echo
        Progress messages.

    Returns
    -------
    dict
        The provenance record of :func:`augment`.
    """
    if not samples:
        raise DownpourError("augment needs at least one samples store (RUN/samples/*_train.zarr)")
    run = RunDir.of_samples(Path(samples[0]).resolve())
    if config is None and run.config.is_file():
        config = run.config
    cfg = load_config(config, exclusive_amounts(overrides))
    return augment(
        store or run.store,
        list(samples),
        out or run.augmented_store,
        cfg.augment,
        echo=echo,
    )
