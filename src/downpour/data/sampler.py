"""Stratified batches: a guaranteed share of heavy-rain days in every batch.

Heavy days (``is_heavy``, docs/data.md) are a few percent of the data, so a
plain shuffled batch of 16 often holds none and the network rarely sees the
tail. :class:`StratifiedBatchSampler` fills at least
``ceil(min_heavy_fraction · len(batch))`` slots of every batch with heavy days
and the remaining slots with non-heavy days.

How slots are filled
--------------------
- An epoch has ``ceil(n / batch_size)`` batches (``floor`` with ``drop_last``),
  the last one shorter when ``n`` is not a multiple of ``batch_size``.
- Heavy slots per batch: the larger of the guaranteed minimum and the
  batch's even share of the heavy days (``≈ len(batch) · n_heavy / n``), so
  with ``min_heavy_fraction`` at or below the natural heavy share every
  item is drawn exactly once per epoch, as with a plain shuffle.
- Heavy items come from an endless sequence of reshuffled passes (cycles)
  over the heavy pool: when the pool is small, heavy days repeat, each one
  once per cycle.
- Non-heavy items come from the same kind of sequence over the non-heavy
  pool, continued from epoch to epoch. Within an epoch no non-heavy item
  repeats. When the heavy slots take room from them (fraction above the
  natural share), an epoch visits most but not all non-heavy days and the
  next epoch continues the pass where this one stopped, so over any number
  of epochs the visit counts of non-heavy days differ by at most one.
- The shuffles are seeded by ``(seed, cycle number)``, so the batches of an
  epoch depend only on ``seed`` and the epoch set with
  :meth:`~StratifiedBatchSampler.set_epoch`, not on what was iterated
  before (resuming gives identical batches).

Distributed training: the epoch's batches are dealt round-robin, rank ``r``
taking batches ``r, r + R, r + 2R, …``; every rank gets the same number of
batches (``ceil`` of the total / R, the schedule being extended by full
extra batches drawn from the same sequences; ``floor`` with ``drop_last``).
With Lightning, pass ``use_distributed_sampler=False`` to the Trainer and
give ``num_replicas``/``rank`` here; Lightning calls ``set_epoch`` through
:attr:`~StratifiedBatchSampler.sampler`.

Examples
--------
>>> s = StratifiedBatchSampler(np.arange(100) % 10 == 0, batch_size=8, min_heavy_fraction=0.25)
>>> len(s)
13
>>> batches = list(s)
>>> all(sum(i % 10 == 0 for i in b) >= 2 for b in batches[:-1])
True
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from downpour.core.errors import DownpourError

__all__ = ["StratifiedBatchSampler"]

_HEAVY_STREAM = 1
_LIGHT_STREAM = 2


class _CycleStream:
    """Reshuffled passes (cycles) over a pool, read one epoch-sized window at a time.

    The stream is ``cycle_0, cycle_1, …``, each cycle a permutation of the
    pool; epoch ``e`` reads positions ``e·W … (e+1)·W − 1``. So after any
    number of epochs the visit counts of the pool's items differ by at most
    one. When ``W ≤ m`` no item repeats inside a window: a window that
    crosses from cycle ``c`` into ``c+1`` takes the last ``a`` items of
    ``c``, so ``c+1`` is a shuffle of the other ``m − a`` items followed by a
    shuffle of those ``a`` (beyond the ``W − a`` positions the window reads).
    Cycle ``c+1`` depends on ``(seed, c+1)`` and cycle ``c``, hence on the
    seed alone; cycles are built forward (a loop over cycles, not items)
    and the last one is cached.

    Parameters
    ----------
    pool
        Item indices, shape ``(m,)``, ``m ≥ 1``.
    window
        Items read per epoch, ``W ≥ 1``.
    seed, stream
        Key of the shuffles.
    """

    def __init__(self, pool: np.ndarray, window: int, seed: int, stream: int) -> None:
        self.pool = pool
        self.window = int(window)
        self._entropy = (seed % 2**64, stream)
        self._cache = (0, self._rng(0).permutation(pool))

    def _rng(self, cycle: int) -> np.random.Generator:
        return np.random.default_rng([*self._entropy, cycle])

    def _cycle(self, c: int) -> np.ndarray:
        """Cycle ``c``, shape ``(m,)``."""
        ci, perm = self._cache
        if c < ci:
            ci, perm = 0, self._rng(0).permutation(self.pool)
        m, w = self.pool.size, self.window
        while ci < c:
            boundary = (ci + 1) * m
            a = boundary - ((boundary - 1) // w) * w  # the crossing window's items in cycle ci
            if a == w or w > m:
                a = 0
            rng = self._rng(ci + 1)
            perm = np.concatenate([rng.permutation(perm[: m - a]), rng.permutation(perm[m - a :])])
            ci += 1
        self._cache = (ci, perm)
        return perm

    def epoch(self, e: int) -> np.ndarray:
        """Return the items of epoch ``e``, ``int64`` array of shape ``(W,)``."""
        m, w = self.pool.size, self.window
        start = e * w
        c0, c1 = start // m, (start + w - 1) // m
        flat = np.concatenate([self._cycle(c) for c in range(c0, c1 + 1)])
        offset = start - c0 * m
        return flat[offset : offset + w]


class StratifiedBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of dataset indices with at least a given share of heavy-rain days.

    Use as ``DataLoader(dataset, batch_sampler=sampler)``.

    Parameters
    ----------
    is_heavy
        Bool array of shape ``(n,)``: heavy flag of each dataset item
        (:attr:`downpour.downscaling.dataset.PrecipDataset.is_heavy`).
    batch_size
        Items per batch (``train.batch_size``), per rank.
    min_heavy_fraction
        Every batch holds at least ``ceil(min_heavy_fraction · len(batch))``
        heavy items (``train.min_heavy_fraction``); ``0`` gives plain
        shuffled batches (each item once per epoch).
    seed
        Seed of the shuffles (``train.seed``).
    drop_last
        Drop the last, shorter batch (and, with several replicas, the
        batches that do not fill a round).
    num_replicas, rank
        Number of DDP processes and this process's rank.

    Raises
    ------
    DownpourError
        ``min_heavy_fraction > 0`` but no item is heavy, or no items at all.
    ValueError
        Invalid ``batch_size``, fraction, or rank.

    Notes
    -----
    Batches hold the heavy items first, then the non-heavy ones; item order
    inside a batch carries no meaning for training. A heavy item may appear
    twice in one batch only when the batch needs more heavy slots than there
    are heavy days. Call :meth:`set_epoch` before each epoch (Lightning does)
    or every epoch yields the same batches.
    """

    def __init__(
        self,
        is_heavy: np.ndarray,
        batch_size: int,
        min_heavy_fraction: float,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        super().__init__()
        heavy = np.asarray(is_heavy)
        if heavy.ndim != 1:
            raise ValueError(f"is_heavy must be 1-D (one flag per item), got shape {heavy.shape}")
        heavy = heavy.astype(bool)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0.0 <= min_heavy_fraction <= 1.0:
            raise ValueError(f"min_heavy_fraction must be in [0, 1], got {min_heavy_fraction}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(
                f"need 0 <= rank < num_replicas, got rank={rank}, num_replicas={num_replicas}"
            )
        n = heavy.size
        if n == 0:
            raise DownpourError(
                "StratifiedBatchSampler: no items to sample (empty training split?)"
            )
        self._heavy_pool = np.flatnonzero(heavy).astype(np.int64)
        self._light_pool = np.flatnonzero(~heavy).astype(np.int64)
        if min_heavy_fraction > 0 and self._heavy_pool.size == 0:
            raise DownpourError(
                f"train.min_heavy_fraction={min_heavy_fraction} asks for heavy days in every "
                f"batch, but 0 of the {n} training days are heavy; lower "
                "train.min_heavy_fraction (0 disables stratification) or data.heavy.quantile"
            )
        self.n = n
        self.batch_size = int(batch_size)
        self.min_heavy_fraction = float(min_heavy_fraction)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.epoch = 0
        self._lengths = self._batch_lengths()
        self._heavy_slots = self._heavy_per_batch(self._lengths)
        self._heavy_stream: _CycleStream | None = None
        self._light_stream: _CycleStream | None = None

    # ----------------------------------------------------------------- layout
    def _batch_lengths(self) -> np.ndarray:
        """Length of every batch of the global (all-rank) schedule, shape ``(T,)``."""
        n, bs, reps = self.n, self.batch_size, self.num_replicas
        n_batches = n // bs if self.drop_last else -(-n // bs)
        lengths = np.full(n_batches, bs, dtype=np.int64)
        if not self.drop_last and n % bs:
            lengths[-1] = n % bs
        per_rank = n_batches // reps if self.drop_last else -(-n_batches // reps)
        total = per_rank * reps
        if total <= n_batches:
            return lengths[:total]
        return np.concatenate([lengths, np.full(total - n_batches, bs, dtype=np.int64)])

    def _heavy_per_batch(self, lengths: np.ndarray) -> np.ndarray:
        """Heavy slots per batch: max(guaranteed minimum, even share), shape ``(T,)``."""
        n_heavy, n_light = self._heavy_pool.size, self._light_pool.size
        if n_light == 0:
            return lengths.copy()
        if n_heavy == 0:
            return np.zeros_like(lengths)
        # round() first so that e.g. 0.7 * 10 = 7.000000000000001 needs 7, not 8
        need = np.ceil(np.round(self.min_heavy_fraction * lengths, 9)).astype(np.int64)
        cum = np.concatenate([[0], np.cumsum(lengths)])
        even = np.diff(cum * n_heavy // self.n)
        return np.minimum(np.maximum(need, even), lengths)

    def _schedule(self) -> list[np.ndarray]:
        """All batches of the current epoch, every rank's, in global order."""
        lengths, k = self._lengths, self._heavy_slots
        n_heavy_slots = int(k.sum())
        n_light_slots = int(lengths.sum()) - n_heavy_slots
        slots = np.arange(int(lengths.sum()))
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        heavy_slot = (slots - np.repeat(starts, lengths)) < np.repeat(k, lengths)
        flat = np.empty(slots.size, dtype=np.int64)
        if n_heavy_slots:
            if self._heavy_stream is None:
                self._heavy_stream = _CycleStream(
                    self._heavy_pool, n_heavy_slots, self.seed, _HEAVY_STREAM
                )
            flat[heavy_slot] = self._heavy_stream.epoch(self.epoch)
        if n_light_slots:
            if self._light_stream is None:
                self._light_stream = _CycleStream(
                    self._light_pool, n_light_slots, self.seed, _LIGHT_STREAM
                )
            flat[~heavy_slot] = self._light_stream.epoch(self.epoch)
        return np.split(flat, starts[1:])

    # -------------------------------------------------------------- interface
    def __iter__(self) -> Iterator[list[int]]:
        """Yield this rank's batches of the current epoch as lists of indices."""
        if self._lengths.size == 0:
            return
        for batch in self._schedule()[self.rank :: self.num_replicas]:
            yield batch.tolist()

    def __len__(self) -> int:
        """Return the number of batches this rank yields per epoch."""
        return int(self._lengths.size) // self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; the same ``seed`` and ``epoch`` always give the same batches."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    @property
    def sampler(self) -> StratifiedBatchSampler:
        """Return ``self``: Lightning calls ``batch_sampler.sampler.set_epoch(e)`` every epoch."""
        return self

    @property
    def heavy_slots(self) -> np.ndarray:
        """Heavy slots of each of this rank's batches, shape ``(len(self),)``."""
        return self._heavy_slots[self.rank :: self.num_replicas].copy()

    def __repr__(self) -> str:
        return (
            f"StratifiedBatchSampler(n={self.n}, heavy={self._heavy_pool.size}, "
            f"batch_size={self.batch_size}, min_heavy_fraction={self.min_heavy_fraction}, "
            f"seed={self.seed}, drop_last={self.drop_last}, "
            f"num_replicas={self.num_replicas}, rank={self.rank})"
        )
