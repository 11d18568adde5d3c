from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from downpour.core.errors import DownpourError
from downpour.data.normalize import Normalization
from downpour.data.sampler import StratifiedBatchSampler
from downpour.data.transforms import RandomFlip
from downpour.downscaling.dataset import PrecipDataset


def _expected(store, row: int, norm: Normalization | None = None) -> dict[str, np.ndarray]:
    norm = norm or store.normalization
    return {
        "x": norm.normalize_x(store.x[row]).astype(np.float32),
        "y": np.log1p(store.y[row])[None].astype(np.float32),
        "s": store.static,
        "mask": store.mask[None],
    }


def _assert_item(item, store, row, norm=None):
    want = _expected(store, row, norm)
    for key in ("x", "y"):
        np.testing.assert_allclose(item[key].numpy(), want[key], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(item["s"].numpy(), want["s"])
    np.testing.assert_array_equal(item["mask"].numpy(), want["mask"])
    assert item["index"].item() == row
    assert item["time"].item() == store.times[row].astype(np.int64)
    assert item["is_heavy"].item() == store.is_heavy[row]
    assert item["is_synthetic"].item() == store.is_synthetic[row]


def test_item_keys_shapes_and_dtypes(tiny_store):
    item = PrecipDataset(tiny_store.path, "train")[0]
    expected = {
        "x": ((2, 4, 4), torch.float32),
        "y": ((1, 24, 24), torch.float32),
        "s": ((3, 24, 24), torch.float32),
        "mask": ((1, 24, 24), torch.bool),
        "time": ((), torch.int64),
        "index": ((), torch.int64),
        "is_heavy": ((), torch.bool),
        "is_synthetic": ((), torch.bool),
    }
    assert {k: (tuple(v.shape), v.dtype) for k, v in item.items()} == expected


def test_hand_computed_values(tiny_store):
    ds = PrecipDataset(tiny_store.path, "train")
    item = ds[3]  # 2001-01-04, y = 3 + 0.01·(24 i + j) on land
    assert item["y"][0, 0, 2].item() == pytest.approx(np.log1p(3.02), rel=1e-6)
    assert item["y"][0, 1, 5].item() == pytest.approx(np.log1p(3.29), rel=1e-6)
    assert item["y"][0, 5, 1].item() == 0.0  # ocean column
    assert not item["mask"][0, 5, 1] and item["mask"][0, 5, 2]
    assert item["time"].item() == np.datetime64("2001-01-04", "ns").astype(np.int64)
    assert ds[4]["y"].abs().max().item() == 0.0  # dry day (t % 5 == 4)
    # x channel q = 100 + t + a - b, z-scored with the training statistics
    n = tiny_store.normalization
    want = (100 + 3 + 2 - 1 - n.x_mean[1]) / n.x_std[1]
    assert item["x"][1, 2, 1].item() == pytest.approx(want, rel=1e-5)
    # x channel pr = log1p(block mean of y), z-scored
    block = tiny_store.y[3, 6:12, 12:18].mean()
    want = (np.log1p(block) - n.x_mean[0]) / n.x_std[0]
    assert item["x"][0, 1, 2].item() == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize(
    ("split", "rows"),
    [
        ("train", range(0, 40)),
        ("val", range(40, 50)),
        ("test", range(50, 60)),
        (("val", "test"), range(40, 60)),
    ],
)
def test_split_selection_and_properties(tiny_store, split, rows):
    ds = PrecipDataset(tiny_store.path, split)
    rows = np.asarray(rows)
    assert len(ds) == rows.size
    np.testing.assert_array_equal(ds.store_index, rows)
    np.testing.assert_array_equal(ds.times, tiny_store.times[rows])
    assert ds.times.dtype == np.dtype("datetime64[ns]")
    np.testing.assert_array_equal(ds.is_heavy, tiny_store.is_heavy[rows])
    np.testing.assert_array_equal(ds.is_synthetic, tiny_store.is_synthetic[rows])
    for i in (0, len(ds) - 1):
        _assert_item(ds[i], tiny_store, rows[i])


def test_every_item_matches_the_store(tiny_store):
    ds = PrecipDataset(tiny_store.path, ("train", "val", "test"))
    for i in range(len(ds)):
        _assert_item(ds[i], tiny_store, i)
    assert ds[8]["is_heavy"].item() and ds[30]["is_synthetic"].item()
    assert not ds[9]["is_heavy"].item() and not ds[29]["is_synthetic"].item()


def test_in_memory_equals_lazy(tiny_store):
    lazy = PrecipDataset(tiny_store.path, "train")
    mem = PrecipDataset(tiny_store.path, "train", in_memory=True)
    for i in range(len(lazy)):
        a, b = lazy[i], mem[i]
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_negative_and_out_of_range_index(tiny_store):
    ds = PrecipDataset(tiny_store.path, "val")
    assert ds[-1]["index"].item() == 49
    with pytest.raises(IndexError):
        ds[10]


def test_default_normalization_is_the_stored_one(tiny_store):
    assert PrecipDataset(tiny_store.path, "val").normalization == tiny_store.normalization


def test_explicit_normalization_is_used(tiny_store):
    norm = Normalization(
        channels=("pr", "q"),
        x_log1p=(False, False),
        x_mean=(1.0, 100.0),
        x_std=(2.0, 10.0),
        y_mean=0.0,
        y_std=1.0,
    )
    ds = PrecipDataset(tiny_store.path, "train", normalization=norm)
    item = ds[5]
    _assert_item(item, tiny_store, 5, norm)
    assert item["x"][1, 0, 0].item() == pytest.approx((105 - 100) / 10)


def test_normalization_with_wrong_channels_is_an_error(tiny_store):
    norm = Normalization(("pr",), (True,), (0.0,), (1.0,), 0.0, 1.0)
    with pytest.raises(DownpourError, match="1 predictor channels"):
        PrecipDataset(tiny_store.path, "train", normalization=norm)


def test_transform_sees_physical_units_before_normalisation(tiny_store):
    seen = {}

    def spy(sample):
        seen.update({k: v.clone() for k, v in sample.items()})
        return {**sample, "y": torch.ones_like(sample["y"]), "x": sample["x"] * 0 + 1}

    ds = PrecipDataset(tiny_store.path, "train", transform=spy)
    item = ds[7]
    assert set(seen) == {"x", "y", "s", "mask"}
    np.testing.assert_array_equal(seen["y"].numpy(), tiny_store.y[7][None])
    np.testing.assert_array_equal(seen["x"].numpy(), tiny_store.x[7])
    np.testing.assert_array_equal(seen["mask"].numpy(), tiny_store.mask[None])
    np.testing.assert_allclose(item["y"].numpy(), np.full((1, 24, 24), np.log1p(1.0)), rtol=1e-6)
    n = tiny_store.normalization
    assert item["x"][0, 0, 0].item() == pytest.approx((np.log1p(1.0) - n.x_mean[0]) / n.x_std[0])


def test_flip_through_the_dataset(tiny_store):
    ds = PrecipDataset(tiny_store.path, "train", transform=RandomFlip(1.0, 0.0))
    item = ds[3]
    want = _expected(tiny_store, 3)
    np.testing.assert_allclose(item["y"].numpy(), want["y"][..., ::-1], rtol=1e-6)
    np.testing.assert_allclose(item["x"].numpy(), want["x"][..., ::-1], rtol=1e-6)
    np.testing.assert_array_equal(item["mask"].numpy(), want["mask"][..., ::-1])
    np.testing.assert_array_equal(item["s"].numpy(), want["s"][..., ::-1])


def test_store_without_is_synthetic(tiny_store_no_synthetic):
    ds = PrecipDataset(tiny_store_no_synthetic.path, "train")
    assert not ds.is_synthetic.any()
    assert ds[30]["is_synthetic"].item() is False


def test_run_directory_is_accepted(tmp_path, make_store):
    store = make_store(tmp_path / "run" / "data" / "store.zarr", n_days=12)
    ds = PrecipDataset(tmp_path / "run", "train")
    assert ds.store_path == store.path
    assert len(ds) == 8


def test_empty_split_is_a_clear_error(tmp_path, make_store):
    path = tmp_path / "all_train.zarr"
    make_store(path, n_days=10, splits=(10, 10))
    with pytest.raises(
        DownpourError, match=r"split 'val' of .*all_train.zarr has no days; check data.splits"
    ):
        PrecipDataset(path, "val")


def test_unknown_split_and_missing_store(tiny_store, tmp_path):
    with pytest.raises(DownpourError, match="unknown split.*train, val, test"):
        PrecipDataset(tiny_store.path, "validation")
    with pytest.raises(DownpourError, match="not found"):
        PrecipDataset(tmp_path / "nope.zarr", "train")


def test_pickles_without_open_handles(tiny_store):
    ds = PrecipDataset(tiny_store.path, "train")
    first = ds[2]  # opens the zarr arrays in this process
    assert ds._x is not None
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._x is None and clone._static is None
    again = clone[2]
    assert all(torch.equal(first[k], again[k]) for k in first)
    mem = PrecipDataset(tiny_store.path, "train", in_memory=True)
    mem_clone = pickle.loads(pickle.dumps(mem))
    assert all(torch.equal(first[k], mem_clone[2][k]) for k in first)


@pytest.mark.parametrize(
    ("context", "in_memory"), [("fork", False), ("fork", True), ("spawn", False)]
)
def test_dataloader_with_two_workers(tiny_store, context, in_memory):
    ds = PrecipDataset(tiny_store.path, "train", in_memory=in_memory)
    ds[0]  # read in the parent first: workers must not reuse its handles
    loader = torch.utils.data.DataLoader(
        ds, batch_size=8, num_workers=2, multiprocessing_context=context, shuffle=False
    )
    batches = list(loader)
    assert len(batches) == 5
    batch = batches[1]
    assert batch["x"].shape == (8, 2, 4, 4) and batch["y"].shape == (8, 1, 24, 24)
    assert batch["time"].dtype == torch.int64 and batch["time"].shape == (8,)
    index = torch.cat([b["index"] for b in batches]).numpy()
    np.testing.assert_array_equal(index, np.arange(40))
    for i in (0, 13, 39):
        b, j = divmod(i, 8)
        item = {k: v[j] for k, v in batches[b].items()}
        _assert_item(item, tiny_store, i)


def test_dataloader_with_stratified_sampler_and_flips(tiny_store):
    ds = PrecipDataset(tiny_store.path, "train", transform=RandomFlip())
    sampler = StratifiedBatchSampler(ds.is_heavy, batch_size=6, min_heavy_fraction=0.34, seed=1)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, num_workers=2)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        for batch in loader:
            n = batch["is_heavy"].numel()
            assert batch["is_heavy"].sum().item() >= int(np.ceil(0.34 * n))
            # flips keep every item aligned: pr channel = log1p(block mean of y)
            y = torch.expm1(batch["y"]).double()
            block = torch.nn.functional.avg_pool2d(y, 6)[:, 0]
            x0 = ds.normalization.denormalize_x(batch["x"])[:, 0].double()
            torch.testing.assert_close(x0, block, rtol=1e-4, atol=1e-4)


def test_seeded_augmentation_is_reproducible_per_epoch_and_item(tiny_store):
    from downpour.data.transforms import build_transform

    t = build_transform(flips=True, noise=0.2, precip_channels=[0])
    a = PrecipDataset(tiny_store.path, "train", transform=t, seed=7)
    b = pickle.loads(pickle.dumps(a))  # as in a DataLoader worker
    torch.manual_seed(123)  # the global RNG state must not matter
    ya = [a[i]["y"] for i in range(6)]
    torch.manual_seed(999)
    yb = [b[i]["y"] for i in range(6)]
    for u, v in zip(ya, yb, strict=True):
        torch.testing.assert_close(u, v)
    a.set_epoch(1)
    assert any(not torch.equal(u, a[i]["y"]) for i, u in enumerate(ya))
    # the global RNG is left untouched by seeded augmentation
    torch.manual_seed(5)
    ref = torch.rand(3)
    torch.manual_seed(5)
    _ = a[0]
    torch.testing.assert_close(torch.rand(3), ref)


def test_epoch_travels_with_the_index(tiny_store):
    from downpour.data.transforms import build_transform

    t = build_transform(flips=True, noise=0.2, precip_channels=[0])
    ds = PrecipDataset(tiny_store.path, "train", transform=t, seed=7)
    ds.set_epoch(3)
    at3 = [ds[i]["y"] for i in range(4)]
    ds.set_epoch(0)
    for i, y in enumerate(at3):
        torch.testing.assert_close(ds[(3, i)]["y"], y)  # (epoch, index) overrides set_epoch
    assert any(not torch.equal(ds[(0, i)]["y"], y) for i, y in enumerate(at3))


def test_persistent_workers_see_every_epoch(tiny_store):
    """Workers kept alive across epochs augment exactly as the main process does."""
    from downpour.config import TrainConfig
    from downpour.data.transforms import build_transform
    from downpour.downscaling.datamodule import _EpochBatchSampler

    t = build_transform(flips=True, noise=0.2, precip_channels=[0])

    def epochs(workers: int) -> list[torch.Tensor]:
        ds = PrecipDataset(tiny_store.path, "train", transform=t, seed=7)
        sampler = _EpochBatchSampler(ds, batch_size=4, min_heavy_fraction=0.0, seed=1)
        loader = torch.utils.data.DataLoader(
            ds, batch_sampler=sampler, num_workers=workers, persistent_workers=workers > 0
        )
        out = []
        for epoch in range(3):
            sampler.set_epoch(epoch)
            out.append(torch.cat([b["y"] for b in loader]))
        return out

    assert TrainConfig().persistent_workers  # the default these workers model
    main, workers = epochs(0), epochs(2)
    for a, b in zip(main, workers, strict=True):
        torch.testing.assert_close(a, b)
    assert not torch.equal(main[0], main[1])  # a new augmentation every epoch
