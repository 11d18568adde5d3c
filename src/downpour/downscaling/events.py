"""Which days a sampling run draws (:func:`select_days`) and how each event is seeded.

Each (event, checkpoint) draws its noise from its own generator, seeded by
``(sampling.seed, event date, checkpoint position)`` (:func:`event_generator`),
so an event's members do not depend on which other days are sampled, on the
batch size or on how a long period is split into shards.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import torch

from downpour.core.errors import DownpourError
from downpour.downscaling.dataset import PrecipDataset

__all__ = ["event_generator", "select_days"]


def _split_label(dataset: PrecipDataset) -> str:
    return "+".join(dataset.split) if isinstance(dataset.split, (list, tuple)) else dataset.split


def select_days(
    dataset: PrecipDataset,
    days: str | Sequence[dt.date],
    period: tuple[dt.date, dt.date] | None = None,
) -> np.ndarray:
    """Positions (in ``dataset``, in time order) of the days to sample.

    Parameters
    ----------
    dataset
        The split's dataset.
    days
        ``"heavy_only"``, ``"all"`` or a list of dates.
    period
        Keep only the days in this inclusive date range (``sampling.period``).

    Returns
    -------
    numpy.ndarray
        ``int64`` positions, shape ``(n_events,)``, ``n_events ≥ 1``.

    Raises
    ------
    DownpourError
        No heavy day in the split, a listed date outside the split, or no
        selected day in ``period``.
    """
    split = _split_label(dataset)
    times = dataset.times.astype("datetime64[D]")
    if days == "all":
        idx = np.arange(len(dataset))
    elif days == "heavy_only":
        idx = np.flatnonzero(dataset.is_heavy)
        if idx.size == 0:
            raise DownpourError(
                f"no heavy day in split {split} of {dataset.store_path}; "
                "use sampling.days=all, or lower data.heavy.quantile and prepare again"
            )
    else:
        want = np.array([np.datetime64(d, "D") for d in days])
        missing = want[~np.isin(want, times)]
        if missing.size:
            raise DownpourError(
                f"sampling.days: {', '.join(str(d) for d in missing[:5])} not in split "
                f"{split} of {dataset.store_path}"
            )
        idx = np.flatnonzero(np.isin(times, want))
    if period is None:
        return idx
    lo, hi = np.datetime64(period[0], "D"), np.datetime64(period[1], "D")
    kept = idx[(times[idx] >= lo) & (times[idx] <= hi)]
    if kept.size == 0:
        chosen = {"all": "days", "heavy_only": "heavy days"}.get(str(days), "listed days")
        span = f"{times[idx].min()} to {times[idx].max()}" if idx.size else "none"
        raise DownpourError(
            f"sampling.period {period[0]}:{period[1]} holds none of the {idx.size} selected "
            f"{chosen} of split {split} in {dataset.store_path} (they run from {span}); "
            "choose a period inside that range, or another split or sampling.days"
        )
    return kept


def event_generator(
    seed: int, day: np.datetime64 | dt.date, checkpoint: int = 0, device: str | torch.device = "cpu"
) -> torch.Generator:
    """Return the generator of one event's members, seeded by ``(seed, day, checkpoint)``.

    Parameters
    ----------
    seed
        ``sampling.seed``.
    day
        The event's date.
    checkpoint
        Position of the checkpoint in the list sampled from.
    device
        Device of the generator (the network's).

    Examples
    --------
    >>> a = event_generator(0, np.datetime64("2001-01-05"))
    >>> b = event_generator(0, np.datetime64("2001-01-05"))
    >>> bool(torch.equal(torch.randn(3, generator=a), torch.randn(3, generator=b)))
    True
    """
    n_day = int(np.datetime64(day, "D").astype(np.int64))
    entropy = [int(seed) % 2**64, n_day % 2**64, int(checkpoint)]
    hi, lo = np.random.SeedSequence(entropy).generate_state(2, np.uint32)
    return torch.Generator(device=device).manual_seed((int(hi) << 31) ^ int(lo))
