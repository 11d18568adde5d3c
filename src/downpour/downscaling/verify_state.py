"""Save and load a :class:`~downpour.metrics.verification.VerificationAccumulator` (``.npz``).

A state file holds everything the accumulator knows, so that the pieces of a
long archive can be verified in separate jobs, saved, and merged later
(:meth:`VerificationAccumulator.merge`); a round trip is exact. Arrays:

- ``version`` (:data:`STATE_VERSION`), ``threshold_names``,
  ``threshold_values``, ``scales``, ``tail_threshold``;
- ``mask`` (boolean ``(y, x)``; shape ``(0, 0)`` for none), ``times``
  (datetime64[ns] ``(days,)``, NaT where a day had no time stamp);
- ``day_<key>`` for every per-day statistic (``(days, ...)``, see
  :data:`downpour.metrics.day_stats.DAY_KEYS`, plus ``day_counts`` and ``day_fss``);
- ``hist_pred_*`` and ``hist_truth_*``: the two quantile histograms
  (:meth:`downpour.metrics.extremes.QuantileHistogram.state`).

Files are written with ``numpy.savez_compressed`` and read with
``allow_pickle=False``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from downpour.core.errors import DownpourError
from downpour.metrics.day_stats import DAY_KEYS
from downpour.metrics.extremes import QuantileHistogram
from downpour.metrics.verification import VerificationAccumulator

__all__ = ["STATE_VERSION", "load_state", "save_state"]

#: Version of the ``.npz`` layout.
STATE_VERSION = 1


def save_state(acc: VerificationAccumulator, path: str | Path) -> Path:
    """Write an accumulator to an ``.npz`` file through a temporary file and a rename.

    Parameters
    ----------
    acc
        The accumulator.
    path
        Output file, e.g. ``state/bicubic.npz``; parent folders are created.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {
        "version": np.array(STATE_VERSION),
        "threshold_names": np.array(list(acc.thresholds), dtype=str),
        "threshold_values": np.array(list(acc.thresholds.values()), dtype=np.float64),
        "scales": np.array(acc.scales, dtype=np.int64),
        "tail_threshold": np.array(acc.tail_threshold, dtype=np.float64),
        "mask": acc.mask if acc.mask is not None else np.zeros((0, 0), dtype=bool),
        "times": acc.times,
    }
    arrays.update({f"day_{k}": v for k, v in acc.per_day.items()})
    for name, hist in (("pred", acc.hist_pred), ("truth", acc.hist_truth)):
        arrays.update({f"hist_{name}_{k}": v for k, v in hist.state().items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_state(path: str | Path) -> VerificationAccumulator:
    """Read an accumulator written by :func:`save_state`.

    Raises
    ------
    DownpourError
        When the file is missing, is not such a state, or was written by
        another layout version.
    """
    path = Path(path)
    if not path.is_file():
        raise DownpourError(f"{path}: no such verification state (write one with save())")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise DownpourError(f"{path}: not a verification state .npz ({e})") from e
    version = int(arrays["version"]) if "version" in arrays else None
    if version != STATE_VERSION:
        raise DownpourError(
            f"{path}: verification state version {version}, this version reads "
            f"{STATE_VERSION}; recompute the state with this version of downpour"
        )
    keys = [*DAY_KEYS, "counts", "fss"]
    header = [
        "threshold_names",
        "threshold_values",
        "scales",
        "tail_threshold",
        "mask",
        "times",
        "hist_pred_counts",
        "hist_truth_counts",
    ]
    missing = [k for k in (*header, *(f"day_{k}" for k in keys)) if k not in arrays]
    if missing:
        raise DownpourError(f"{path}: verification state lacks {missing}")
    mask = arrays["mask"]
    acc = VerificationAccumulator(
        dict(zip(arrays["threshold_names"].tolist(), arrays["threshold_values"], strict=True)),
        scales=arrays["scales"].tolist(),
        tail_threshold=float(arrays["tail_threshold"]),
        mask=mask if mask.size else None,
    )
    times = arrays["times"].astype("datetime64[ns]")
    nt, ns = len(acc.thresholds), len(acc.scales)
    shapes = {k: (times.size,) for k in DAY_KEYS}
    shapes.update(counts=(times.size, nt, 4), fss=(times.size, nt, ns, 3))
    per_day = {}
    for k in keys:
        v = arrays[f"day_{k}"]
        if v.shape != shapes[k]:
            raise DownpourError(
                f"{path}: per-day '{k}' has shape {v.shape}, expected {shapes[k]} "
                f"({times.size} days); the file is damaged"
            )
        per_day[k] = v
    hists = [
        QuantileHistogram.from_state(
            {k: arrays.get(f"hist_{name}_{k}") for k in ("counts", "range", "layout")},
            where=f"{path} (hist_{name})",
        )
        for name in ("pred", "truth")
    ]
    acc._restore(per_day, times, *hists)
    return acc
