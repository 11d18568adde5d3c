"""Batch samplers for training epochs and validation shards across DDP ranks.

- :class:`FixedLengthBatchSampler`: exactly N batches per epoch, read from an
  inner batch sampler's epochs laid end to end (equal optimiser steps for
  stores of different sizes);
- :class:`ShuffledBatchSampler`: batches of a (seed, epoch) permutation, dealt
  whole across ranks;
- :class:`ShardSampler`: every item once, in order, split across ranks (validation).

The stratified heavy-day batches are :class:`downpour.data.sampler.StratifiedBatchSampler`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["FixedLengthBatchSampler", "ShardSampler", "ShuffledBatchSampler"]


class FixedLengthBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Exactly ``batches`` batches per epoch, read from an inner batch sampler's epochs.

    The inner sampler's epochs ``0, 1, 2, …`` (each a reshuffle of the
    training days) are laid end to end; epoch ``e`` here yields batches
    ``e·N … (e+1)·N − 1`` of that sequence. So the batches of an epoch depend
    only on the seed and ``e`` (a resume replays them), and over many epochs
    every day is visited equally often, whatever the number of days.

    Parameters
    ----------
    inner
        A batch sampler with ``set_epoch`` and ``__len__`` (e.g.
        :class:`~downpour.data.sampler.StratifiedBatchSampler`).
    batches
        Batches per epoch N.
    """

    def __init__(self, inner: Any, batches: int) -> None:
        super().__init__()
        if batches < 1:
            raise ValueError(f"batches must be ≥ 1, got {batches}")
        self.inner = inner
        self.batches = int(batches)
        self.epoch = 0

    @property
    def sampler(self) -> FixedLengthBatchSampler:
        """Return ``self``: Lightning calls ``batch_sampler.sampler.set_epoch(e)``."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Return the number of batches per epoch."""
        return self.batches

    def __iter__(self) -> Iterator[list[int]]:
        """Yield the epoch's batches as lists of dataset indices."""
        per_inner = len(self.inner)
        if per_inner == 0:
            return
        cached_epoch, cached = -1, []
        for k in range(self.epoch * self.batches, (self.epoch + 1) * self.batches):
            inner_epoch, pos = divmod(k, per_inner)
            if inner_epoch != cached_epoch:
                self.inner.set_epoch(inner_epoch)
                cached, cached_epoch = list(self.inner), inner_epoch
            yield cached[pos]


class ShuffledBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of a (seed, epoch) permutation of ``n`` items, dealt whole across DDP ranks.

    An epoch shuffles the items with a generator seeded by ``(seed, epoch)``,
    cuts the permutation into consecutive batches of ``batch_size`` (the last
    one shorter), pads the list of batches by wrapping around to a multiple
    of the world size, and gives rank ``r`` batches ``r, r + world, …``. So
    every rank takes the same number of steps, ``ceil(ceil(n / batch_size) /
    world)`` (:func:`downpour.training.trainer.per_rank_batches`, as for
    :class:`StratifiedBatchSampler`), the batches depend only on the seed and
    the epoch (a resume replays them), and on one process they are exactly
    those of ``DataLoader(batch_size=…, sampler=<the permutation>)``.

    Parameters
    ----------
    n
        Items of the epoch.
    batch_size
        Items per batch.
    seed
        Shuffle seed.
    rank, world_size
        This process's rank and the number of processes.

    Examples
    --------
    >>> s = ShuffledBatchSampler(5, 2, seed=0, rank=1, world_size=2)
    >>> len(s), sorted(i for b in ShuffledBatchSampler(5, 2, seed=0) for i in b)
    (2, [0, 1, 2, 3, 4])
    """

    def __init__(
        self, n: int, batch_size: int, seed: int, *, rank: int = 0, world_size: int = 1
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)
        self.rank, self.world_size = int(rank), max(1, int(world_size))
        self.epoch = 0

    @property
    def sampler(self) -> ShuffledBatchSampler:
        """Return ``self``: Lightning calls ``batch_sampler.sampler.set_epoch(e)``."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (the permutation's seed)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Return the batches this rank takes per epoch."""
        batches = math.ceil(self.n / self.batch_size)
        return math.ceil(batches / self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        """Yield this rank's batches of the current epoch."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        batches = [order[i : i + self.batch_size] for i in range(0, self.n, self.batch_size)]
        total = len(self) * self.world_size
        if batches:
            batches = (batches * -(-total // len(batches)))[:total]
        yield from batches[self.rank :: self.world_size]


class ShardSampler(torch.utils.data.Sampler[int]):
    """Every item once, in order, split across DDP ranks: rank ``r`` takes ``r, r + world, …``.

    For validation: with streaming sums gathered over ranks
    (:meth:`downpour.training.base.BaseModule.gathered_sums`) and epoch-level
    logs synchronised by Lightning, the ranks together score every item
    exactly once; on one process this is the plain in-order pass.

    Examples
    --------
    >>> list(ShardSampler(5, rank=1, world_size=2)), list(ShardSampler(3))
    ([1, 3], [0, 1, 2])
    """

    def __init__(self, n: int, *, rank: int = 0, world_size: int = 1) -> None:
        super().__init__()
        self.n, self.rank, self.world_size = int(n), int(rank), max(1, int(world_size))
        if self.world_size > 1 and self.n < self.world_size:
            raise ValueError(
                f"{self.n} validation item(s) cannot be shared by {self.world_size} processes; "
                "use a longer validation period or fewer devices"
            )

    def __len__(self) -> int:
        """Return the items of this rank."""
        return len(range(self.rank, self.n, self.world_size))

    def __iter__(self) -> Iterator[int]:
        """Yield this rank's items in order."""
        return iter(range(self.rank, self.n, self.world_size))
