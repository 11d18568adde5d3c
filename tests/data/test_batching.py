import math

import numpy as np
import pytest
import torch

from downpour.config import TrainConfig
from downpour.data.batching import FixedLengthBatchSampler, ShardSampler, ShuffledBatchSampler
from downpour.data.sampler import StratifiedBatchSampler
from downpour.training.trainer import per_rank_batches


def test_shuffled_batches_replay_per_epoch_and_equal_the_permutation():
    a, b = ShuffledBatchSampler(10, 4, seed=3), ShuffledBatchSampler(10, 4, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    # one process: consecutive chunks of the (seed, epoch) permutation, the last one short
    order = torch.randperm(10, generator=torch.Generator().manual_seed(3 * 1_000_003 + 2)).tolist()
    assert list(a) == [order[0:4], order[4:8], order[8:10]]
    b.set_epoch(3)
    assert list(a) != list(b)


def test_shuffled_batches_are_dealt_whole_with_equal_counts_per_rank():
    ranks = [ShuffledBatchSampler(10, 3, seed=1, rank=r, world_size=3) for r in range(3)]
    for r in ranks:
        r.set_epoch(5)
    single = ShuffledBatchSampler(10, 3, seed=1)
    single.set_epoch(5)
    batches = list(single)  # 4 batches: 3, 3, 3, 1 items
    assert [len(x) for x in batches] == [3, 3, 3, 1]
    padded = batches + batches[:2]  # to 6 = 2 per rank, wrapping around
    parts = [list(r) for r in ranks]
    assert parts == [padded[r::3] for r in range(3)]
    # every rank takes per_rank_batches steps (DDP needs equal counts), as the stratified sampler
    cfg = TrainConfig(devices=3)
    assert [len(p) for p in parts] == [len(r) for r in ranks] == [per_rank_batches(4, cfg)] * 3
    assert sorted({i for p in parts for b in p for i in b}) == list(range(10))


@pytest.mark.parametrize(("n", "world"), [(7, 1), (7, 2), (9, 3), (3, 3)])
def test_shards_cover_every_item_once_in_order(n, world):
    shards = [list(ShardSampler(n, rank=r, world_size=world)) for r in range(world)]
    assert sorted(i for s in shards for i in s) == list(range(n))
    assert all(s == sorted(s) for s in shards)
    assert [len(ShardSampler(n, rank=r, world_size=world)) for r in range(world)] == [
        len(s) for s in shards
    ]
    assert max(map(len, shards)) == math.ceil(n / world)


def test_shards_refuse_fewer_items_than_processes():
    with pytest.raises(ValueError, match="2 validation item"):
        ShardSampler(2, rank=0, world_size=3)


def test_fixed_length_epochs_continue_the_shuffled_stream():
    inner = StratifiedBatchSampler(np.zeros(10, dtype=bool), batch_size=4, min_heavy_fraction=0.0)
    assert len(inner) == 3
    sampler = FixedLengthBatchSampler(inner, 5)
    epochs = []
    for e in range(3):
        sampler.set_epoch(e)
        epochs.append(list(sampler))
    assert [len(b) for b in epochs[0]] == [4, 4, 2, 4, 4] and len(sampler) == 5
    flat = np.concatenate([np.concatenate(b) for b in epochs])
    assert np.bincount(flat).tolist() == [5] * 10  # 15 batches = 5 passes over 10 days
    fresh = FixedLengthBatchSampler(
        StratifiedBatchSampler(np.zeros(10, dtype=bool), batch_size=4, min_heavy_fraction=0.0), 5
    )
    fresh.set_epoch(1)
    assert list(fresh) == epochs[1]  # depends on the epoch only (exact resume)
