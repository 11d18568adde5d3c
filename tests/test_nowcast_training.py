"""Nowcast training: time split without leakage, windows, rollout, accumulation, resume, NaN."""

import numpy as np
import pytest
import torch
import xarray as xr
from lightning.pytorch.callbacks import Callback

from downpour.config import load_config
from downpour.nowcast.radar import temporal_encoding
from downpour.core.errors import DownpourError
from downpour.nowcast.forecast import load_nowcaster, train_nowcast
from downpour.nowcast.module import (
    NowcastDataModule,
    NowcastWindows,
    load_nowcast_source,
    rollout_batch,
    split_blocks,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convolutions run several times faster on one thread on a shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# 24 hourly frames of 24×24 (generated directly at 60 min): 10 train, 1 val window
TINY = [
    "nowcast.embedded_hours=24",
    "nowcast.embedded_size=24",
    "nowcast.embedded_step_minutes=60",
    "nowcast.n_frames=3",
    "nowcast.base_features=4",
    "nowcast.depth=2",
    "nowcast.batch_size=2",
    "nowcast.accumulate=1",
    "nowcast.epochs=2",
    "nowcast.flips=false",
    "train.checkpoint_every=1",
]


def quiet(*_a, **_k):
    return None


def fit(cfg, run, **kw):
    return train_nowcast(cfg, run, echo=quiet, enable_progress_bar=False, **kw)


def hourly(n, h=4, w=5, start="2021-07-01T00:00"):
    times = np.datetime64(start, "ns") + np.arange(n) * np.timedelta64(1, "h")
    values = np.arange(n, dtype=np.float32)[:, None, None] * np.ones((1, h, w), np.float32)
    return xr.DataArray(
        values, dims=("time", "y", "x"), coords={"time": times}, attrs={"step_minutes": 60}
    )


# ------------------------------------------------------------------ data


def test_split_blocks_are_contiguous_and_cover_the_axis():
    blocks = split_blocks(20, 0.25, 0.25)
    assert blocks == {"train": slice(0, 10), "val": slice(10, 15), "test": slice(15, 20)}


def test_windows_never_cross_the_split_boundary():
    da = hourly(20)
    cfg = load_config(None, ["nowcast.n_frames=2", "nowcast.val_fraction=0.25",
                             "nowcast.test_fraction=0.25"])  # fmt: skip
    dm = NowcastDataModule(da, cfg.nowcast)
    t = da["time"].values
    # train frames 0..9: windows of 3 frames start at 0..7; val frames 10..14: starts 10..12
    assert len(dm.train_set) == 8 and len(dm.val_set) == 3
    train_last = max(int(dm.train_set[i]["time"]) for i in range(len(dm.train_set)))
    assert train_last == t[9].astype(np.int64)
    val_inputs = [float(dm.val_set[i]["inputs"].min()) for i in range(len(dm.val_set))]
    assert min(val_inputs) == pytest.approx(np.log1p(10.0))  # first val input is frame 10
    assert dm.stats["max"] == 9.0 and dm.stats["frames"] == 10  # stats of the training block only


def test_window_items_and_temporal_encoding_of_each_target():
    da = hourly(8)
    ds = NowcastWindows(da, n_frames=3, steps=2, transform="none")
    assert len(ds) == 4  # 8 - (3 + 2) + 1
    item = ds[1]
    assert item["inputs"][:, 0, 0].tolist() == [1.0, 2.0, 3.0]
    assert item["targets"][:, 0, 0].tolist() == [4.0, 5.0]
    expect = temporal_encoding(da["time"].values[4:6])
    np.testing.assert_allclose(item["temporal"].numpy(), expect)
    assert int(item["time"]) == da["time"].values[4].astype(np.int64)


def test_windows_spanning_a_gap_or_without_valid_cells_are_dropped():
    da = hourly(10)
    da = da.isel(time=[i for i in range(10) if i != 5])  # 05:00 missing
    ds = NowcastWindows(da, n_frames=2, steps=1, transform="log")
    # windows of 3 consecutive hours: 0-2, 1-3, 2-4, 6-8, 7-9
    assert len(ds) == 5 and ds.report["dropped_for_gaps"] == 2
    da2 = hourly(6)
    da2[3] = np.nan
    assert len(NowcastWindows(da2, n_frames=2, steps=1, transform="log")) == 1  # only 0-2


def test_empty_validation_period_is_a_clear_error():
    cfg = load_config(None, ["nowcast.n_frames=4", "nowcast.val_fraction=0.1",
                             "nowcast.test_fraction=0.1"])  # fmt: skip
    with pytest.raises(DownpourError, match=r"val period .*nowcast\.val_fraction"):
        NowcastDataModule(hourly(20), cfg.nowcast)


def test_rollout_feeds_predictions_back():
    class PlusOne(torch.nn.Module):
        def forward(self, frames, enc):
            return frames[:, -1:] + 1.0

    inputs = torch.tensor([1.0, 2.0, 5.0]).reshape(1, 3, 1, 1).expand(1, 3, 2, 2)
    out = rollout_batch(PlusOne(), inputs, torch.zeros(1, 4, 4))
    assert out[0, :, 0, 0].tolist() == [6.0, 7.0, 8.0, 9.0]


def test_embedded_source_is_accumulated_to_the_step():
    cfg = load_config(None, ["nowcast.embedded_hours=12", "nowcast.embedded_size=16",
                             "nowcast.embedded_step_minutes=30"])  # fmt: skip
    da = load_nowcast_source(cfg.nowcast)
    assert da.sizes == {"time": 13, "y": 16, "x": 16}  # 00:00 (partial) .. 12:00
    assert da.attrs["step_minutes"] == 60 and not bool(da["complete"].values[0])


# ------------------------------------------------------------------ training


class _Grads(Callback):
    """Keep the accumulated gradients of the first optimiser step (before clipping)."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if not hasattr(self, "grads"):
            self.grads = {n: p.grad.detach().clone() for n, p in pl_module.net.named_parameters()}


def test_accumulation_matches_a_larger_batch(tmp_path):
    """Batch 1 × accumulate 4 takes the same gradient step as batch 4 × 1."""
    grads = []
    for bs, acc in ((1, 4), (4, 1)):
        cfg = load_config(None, [*TINY, f"nowcast.batch_size={bs}", f"nowcast.accumulate={acc}",
                                 f"nowcast.max_batches_per_epoch={4 // bs}", "nowcast.epochs=1",
                                 "nowcast.embedded_size=32"])  # fmt: skip
        cb = _Grads()
        fit(cfg, tmp_path / f"b{bs}", extra_callbacks=[cb])  # one epoch = one optimiser step
        grads.append(cb.grads)
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-4, atol=1e-7, msg=k)
    assert float(grads[0]["stem.0.weight"].abs().max()) > 0  # not a vacuous match


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    over = [*TINY, "nowcast.epochs=4", "nowcast.flips=true", "nowcast.crop=16",
            "nowcast.noise=0.1", "nowcast.rollout_steps=2", "train.warmup_epochs=1"]  # fmt: skip
    cfg = load_config(None, over)
    fit(cfg, tmp_path / "a")
    fit(cfg, tmp_path / "b", max_epochs=2)
    fit(cfg, tmp_path / "b", resume=tmp_path / "b" / "checkpoints" / "nowcast" / "last.ckpt")
    wa = torch.load(tmp_path / "a/checkpoints/nowcast/last.ckpt", weights_only=False)
    wb = torch.load(tmp_path / "b/checkpoints/nowcast/last.ckpt", weights_only=False)
    assert wa["epoch"] == wb["epoch"] == 3  # 0-based: the fourth epoch
    for k, v in wa["state_dict"].items():
        torch.testing.assert_close(v, wb["state_dict"][k], rtol=1e-5, atol=1e-6, msg=k)
    assert (tmp_path / "b" / "logs" / "nowcast" / "version_1" / "metrics.csv").is_file()


def test_training_learns_and_checkpoint_round_trips(tmp_path):
    cfg = load_config(None, [*TINY, "nowcast.epochs=3", "nowcast.lr=3e-3"])
    res = fit(cfg, tmp_path / "run")
    assert res.epochs == 3 and res.parameters > 0
    for key in ("train/l1", "train/spectral", "train/mse", "train/grad", "val/loss", "val/MAE",
                "val/MAE_persistence"):  # fmt: skip
        assert np.isfinite(res.metrics[key]), key
    assert (tmp_path / "run" / "metrics" / "train_nowcast.json").is_file()
    net, cfg2, stats = load_nowcaster(res.last_checkpoint)
    assert cfg2.nowcast == cfg.nowcast
    assert stats["max"] > 0 and 0 < stats["wet_fraction"] < 1
    ckpt = torch.load(res.last_checkpoint, weights_only=False)
    assert ckpt["downpour"]["kind"] == "nowcast"
    head = ckpt["state_dict"]["net.head.weight"]
    assert head.abs().sum() > 0  # the residual head moved away from persistence
    torch.testing.assert_close(net.head.weight, head)


def test_nan_loss_stops_with_step_and_term(tmp_path, monkeypatch):
    import downpour.nowcast.module as nm

    real = nm.nowcast_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        total, terms = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] > 3:
            terms = {**terms, "spectral": torch.tensor(float("nan"))}
            total = total + terms["spectral"]
        return total, terms

    monkeypatch.setattr(nm, "nowcast_loss", poisoned)
    with pytest.raises(DownpourError, match=r"at step \d+ .*non-finite term\(s\): spectral"):
        fit(load_config(None, [*TINY, "nowcast.epochs=3"]), tmp_path / "run")


def test_crop_is_shared_by_inputs_targets_mask_and_prefers_rain():
    from downpour.nowcast.module import _rainy_crop

    torch.manual_seed(0)
    inputs = torch.arange(2 * 3 * 24 * 24, dtype=torch.float32).reshape(2, 3, 24, 24)
    targets = torch.zeros(2, 1, 24, 24)
    targets[..., 16:, 16:] = 1.0  # rain only in the lower right corner
    valid = torch.ones(2, 1, 24, 24, dtype=torch.bool)
    batch = {"inputs": inputs, "targets": targets, "valid": valid}
    out = _rainy_crop(batch, 8, 0.0)
    assert out["inputs"].shape == (2, 3, 8, 8) and out["valid"].shape == (2, 1, 8, 8)
    y0, x0 = divmod(int(out["inputs"][0, 0, 0, 0]), 24)
    assert torch.equal(out["inputs"], inputs[..., y0 : y0 + 8, x0 : x0 + 8])
    assert torch.equal(out["targets"], targets[..., y0 : y0 + 8, x0 : x0 + 8])
    hits = []
    for seed in range(20):
        torch.manual_seed(seed)
        hits.append(float(_rainy_crop(batch, 8, 0.0)["targets"].sum()))
    # a random 8×8 crop overlaps the 8×8 rain corner with probability ~1/4 per try
    assert np.mean([h > 0 for h in hits]) > 0.5
    assert _rainy_crop(batch, 32, 0.0) is batch  # larger than the grid: unchanged


def test_shuffle_replays_per_epoch_and_splits_ranks():
    from downpour.nowcast.module import _EpochShuffle

    a, b = _EpochShuffle(10, seed=3), _EpochShuffle(10, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b) and sorted(a) == list(range(10))
    b.set_epoch(3)
    assert list(a) != list(b)
    ranks = [_EpochShuffle(10, seed=3, rank=r, world_size=3) for r in range(3)]
    for r in ranks:
        r.set_epoch(2)
    parts = [list(r) for r in ranks]
    # equal counts on every rank (DDP hangs otherwise): 10 windows padded to 12 by wrapping
    assert [len(p) for p in parts] == [len(r) for r in ranks] == [4, 4, 4]
    order = list(a)  # the single-process permutation of epoch 2
    padded = order + order[:2]
    assert parts == [padded[r::3] for r in range(3)]
    assert sorted(set(sum(parts, []))) == list(range(10))
