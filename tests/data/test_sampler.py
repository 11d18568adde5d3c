from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
import torch

from downpour.core.errors import DownpourError
from downpour.data.sampler import StratifiedBatchSampler


def _heavy(n: int, n_heavy: int, seed: int = 0) -> np.ndarray:
    flags = np.zeros(n, dtype=bool)
    flags[np.random.default_rng(seed).choice(n, n_heavy, replace=False)] = True
    return flags


def _required(fraction: float, length: int) -> int:
    """ceil(fraction · length), computed exactly on the decimal fraction."""
    return math.ceil(Fraction(str(fraction)) * length)


# (n, n_heavy, batch_size, min_heavy_fraction, drop_last)
CASES = [
    (500, 25, 16, 0.2, False),  # P95 heavy days, v1 preset fraction
    (500, 25, 16, 0.4, False),  # v2-v4 fraction
    (503, 25, 16, 0.4, False),  # last batch of 7
    (503, 25, 16, 0.4, True),
    (301, 40, 7, 0.3, False),  # fraction below natural share for most batches
    (250, 3, 10, 0.5, False),  # few heavy days: they repeat
    (200, 20, 10, 0.7, False),  # 0.7 * 10 = 7.000000000000001 in floating point
    (100, 10, 8, 0.0, False),
    (64, 64, 8, 0.5, False),  # all heavy
]


@pytest.mark.parametrize(("n", "n_heavy", "bs", "frac", "drop_last"), CASES)
def test_every_batch_meets_the_fraction(n, n_heavy, bs, frac, drop_last):
    heavy = _heavy(n, n_heavy)
    s = StratifiedBatchSampler(heavy, bs, frac, seed=3, drop_last=drop_last)
    expected_batches = n // bs if drop_last else math.ceil(n / bs)
    assert len(s) == expected_batches
    n_checked = 0
    for epoch in range(6):
        s.set_epoch(epoch)
        batches = list(s)
        assert len(batches) == expected_batches
        lengths = [len(b) for b in batches]
        assert lengths[:-1] == [bs] * (expected_batches - 1)
        assert lengths[-1] == (bs if drop_last or n % bs == 0 else n % bs)
        for b in batches:
            assert all(0 <= i < n for i in b)
            assert heavy[b].sum() >= _required(frac, len(b))
            n_checked += 1
        np.testing.assert_array_equal(
            s.heavy_slots, [heavy[b].sum() if n_heavy < n else len(b) for b in batches]
        )
    assert n_checked >= 6 * (n // bs)


def test_five_hundred_batches_over_batch_sizes_and_fractions():
    heavy = _heavy(1000, 50, seed=1)
    total = 0
    for bs in (4, 16, 13):
        for frac in (0.1, 0.25, 0.4, 1 / 3):
            s = StratifiedBatchSampler(heavy, bs, frac, seed=bs)
            for epoch in range(2):
                s.set_epoch(epoch)
                for b in s:
                    assert heavy[b].sum() >= math.ceil(round(frac * len(b), 9))
                    total += 1
    assert total >= 500


@pytest.mark.parametrize(
    ("n", "n_heavy", "bs", "frac"), [(500, 25, 16, 0.0), (301, 40, 7, 0.0), (500, 100, 10, 0.1)]
)
def test_at_natural_share_every_item_once_per_epoch(n, n_heavy, bs, frac):
    heavy = _heavy(n, n_heavy)
    s = StratifiedBatchSampler(heavy, bs, frac, seed=0)
    for epoch in range(3):
        s.set_epoch(epoch)
        items = np.concatenate([np.asarray(b) for b in s])
        np.testing.assert_array_equal(np.sort(items), np.arange(n))


@pytest.mark.parametrize(("n", "n_heavy", "bs", "frac"), [(500, 25, 16, 0.4), (503, 25, 16, 0.2)])
def test_non_heavy_items_once_per_epoch_and_pass_continues(n, n_heavy, bs, frac):
    heavy = _heavy(n, n_heavy)
    light = np.flatnonzero(~heavy)
    s = StratifiedBatchSampler(heavy, bs, frac, seed=5)
    total = Counter()
    n_epochs = 9
    for epoch in range(n_epochs):
        s.set_epoch(epoch)
        seen = [i for b in s for i in b if not heavy[i]]
        counts = Counter(seen)
        assert max(counts.values()) == 1, "a non-heavy item repeats within an epoch"
        # heavy slots take room, so an epoch visits most (not all) non-heavy items
        assert len(seen) >= 0.5 * light.size
        total.update(counts)
    # the pass continues across epochs: visit counts differ by at most one
    visits = np.array([total[i] for i in light])
    assert visits.max() - visits.min() <= 1
    assert visits.min() >= 1


def test_few_heavy_days_repeat_evenly():
    heavy = _heavy(250, 3)
    s = StratifiedBatchSampler(heavy, 10, 0.5, seed=0)
    counts = Counter(i for b in s for i in b if heavy[i])
    assert set(counts) == set(np.flatnonzero(heavy))
    assert sum(counts.values()) == 25 * 5
    assert max(counts.values()) - min(counts.values()) <= 1


def test_same_seed_and_epoch_give_identical_batches():
    heavy = _heavy(400, 30)
    a = StratifiedBatchSampler(heavy, 16, 0.4, seed=7)
    b = StratifiedBatchSampler(heavy, 16, 0.4, seed=7)
    a.set_epoch(4)
    b.set_epoch(4)
    assert list(a) == list(b)
    # history does not matter: going back to an epoch gives it again
    first = list(a)
    a.set_epoch(0)
    list(a)
    a.set_epoch(4)
    assert list(a) == first
    # another epoch or seed shuffles differently
    b.set_epoch(5)
    assert list(b) != first
    c = StratifiedBatchSampler(heavy, 16, 0.4, seed=8)
    c.set_epoch(4)
    assert list(c) != first


@pytest.mark.parametrize(
    ("n", "bs", "replicas", "drop_last"),
    [(480, 16, 3, False), (500, 16, 3, False), (500, 16, 4, True), (40, 16, 4, False)],
)
def test_ranks_get_disjoint_batches_of_equal_count(n, bs, replicas, drop_last):
    heavy = _heavy(n, n // 20)
    frac = 0.25
    per_rank = [
        StratifiedBatchSampler(
            heavy, bs, frac, seed=2, drop_last=drop_last, num_replicas=replicas, rank=r
        )
        for r in range(replicas)
    ]
    n_batches = n // bs if drop_last else math.ceil(n / bs)
    want = n_batches // replicas if drop_last else math.ceil(n_batches / replicas)
    assert [len(s) for s in per_rank] == [want] * replicas
    for epoch in (0, 3):
        for s in per_rank:
            s.set_epoch(epoch)
        batches = [list(s) for s in per_rank]
        assert [len(b) for b in batches] == [want] * replicas
        for rank_batches in batches:
            for b in rank_batches:
                assert heavy[b].sum() >= _required(frac, len(b))
        # no non-heavy item is served to two ranks (or twice) in one epoch
        light = [i for rank_batches in batches for b in rank_batches for i in b if not heavy[i]]
        if len(light) <= (~heavy).sum():
            assert len(light) == len(set(light))


def test_ranks_partition_the_single_process_epoch():
    heavy = _heavy(480, 24)
    single = StratifiedBatchSampler(heavy, 16, 0.0, seed=4)
    single.set_epoch(2)
    ranks = [
        StratifiedBatchSampler(heavy, 16, 0.0, seed=4, num_replicas=3, rank=r) for r in range(3)
    ]
    for s in ranks:
        s.set_epoch(2)
    everything = list(single)
    for r, s in enumerate(ranks):
        assert list(s) == everything[r::3]
    items = sorted(i for s in ranks for b in s for i in b)
    assert items == list(range(480))


def test_no_heavy_days_is_a_clear_error():
    with pytest.raises(
        DownpourError, match=r"0 of the 100 .*train.min_heavy_fraction.*data.heavy.quantile"
    ):
        StratifiedBatchSampler(np.zeros(100, dtype=bool), 16, 0.2)
    # without stratification it is fine
    s = StratifiedBatchSampler(np.zeros(100, dtype=bool), 16, 0.0)
    assert sorted(i for b in s for i in b) == list(range(100))


def test_bad_arguments():
    heavy = _heavy(50, 5)
    with pytest.raises(ValueError, match="batch_size"):
        StratifiedBatchSampler(heavy, 0, 0.2)
    with pytest.raises(ValueError, match="min_heavy_fraction"):
        StratifiedBatchSampler(heavy, 4, 1.5)
    with pytest.raises(ValueError, match="rank"):
        StratifiedBatchSampler(heavy, 4, 0.2, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="1-D"):
        StratifiedBatchSampler(heavy.reshape(5, 10), 4, 0.2)
    with pytest.raises(DownpourError, match="no items"):
        StratifiedBatchSampler(np.zeros(0, dtype=bool), 4, 0.2)


def test_drop_last_with_fewer_items_than_a_batch_yields_nothing():
    s = StratifiedBatchSampler(_heavy(10, 2), 16, 0.2, drop_last=True)
    assert len(s) == 0 and list(s) == []


def test_works_as_dataloader_batch_sampler_and_lightning_sets_epoch():
    heavy = _heavy(60, 6)
    data = torch.arange(60)
    s = StratifiedBatchSampler(heavy, 8, 0.25, seed=1)
    loader = torch.utils.data.DataLoader(data, batch_sampler=s)
    got = [b.tolist() for b in loader]
    assert got == list(s)
    assert len(loader) == math.ceil(60 / 8)
    fabric_data = pytest.importorskip("lightning.fabric.utilities.data")
    fabric_data._set_sampler_epoch(loader, 7)
    assert s.epoch == 7


def test_vectorised_build_is_fast():
    import time

    heavy = _heavy(200_000, 10_000)
    s = StratifiedBatchSampler(heavy, 64, 0.4, seed=0)
    start = time.perf_counter()
    n = sum(1 for _ in s)
    assert n == len(s)
    assert time.perf_counter() - start < 5.0


def test_random_configurations_keep_every_promise():
    rng = np.random.default_rng(0)
    for _ in range(40):
        n = int(rng.integers(5, 300))
        heavy = _heavy(n, int(rng.integers(1, n + 1)), seed=int(rng.integers(1000)))
        bs = int(rng.integers(1, 20))
        frac = round(float(rng.uniform(0, 1)), 2)
        s = StratifiedBatchSampler(heavy, bs, frac, seed=int(rng.integers(100)))
        light = np.flatnonzero(~heavy)
        visits = Counter()
        epochs = [int(e) for e in rng.permutation(6)]  # visited out of order
        for epoch in epochs:
            s.set_epoch(epoch)
            batches = list(s)
            assert len(batches) == math.ceil(n / bs)
            assert sum(map(len, batches)) == n
            for b in batches:
                assert heavy[b].sum() >= _required(frac, len(b))
            seen = Counter(i for b in batches for i in b if not heavy[i])
            assert not seen or max(seen.values()) == 1
            seen_heavy = Counter(i for b in batches for i in b if heavy[i])
            if sum(seen_heavy.values()) <= heavy.sum():
                assert max(seen_heavy.values()) == 1
            visits.update(seen)
        if light.size and sum(visits.values()):
            counts = np.array([visits[i] for i in light])
            assert counts.max() - counts.min() <= 1
