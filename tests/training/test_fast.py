"""Fast paths: channels_last and torch.compile change speed, not results or checkpoints."""

from __future__ import annotations

import pytest
import torch

from downpour.config import load_config
from downpour.downscaling.prepare import prepare
from downpour.downscaling.train import train_cvae
from downpour.models.fast import prepare_net, to_memory_format
from downpour.models.srdrn import SRDRN

SMALL = [
    "data.embedded.n_years=2", "data.embedded.height=48", "data.embedded.width=36",
    "data.splits.train={start: 2001-01-01, end: 2001-06-30}",
    "data.splits.val={start: 2001-07-01, end: 2001-08-31}", "data.splits.test.years=[2002]",
    "model.base_filters=8", "model.d_z=8", "model.d_x=16", "model.d_y=16", "train.epochs=1",
]  # fmt: skip


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("fast_small")
    prepare(load_config("demo", SMALL), run)
    return run


def _srdrn() -> SRDRN:
    torch.manual_seed(0)
    return SRDRN(in_channels=2, filters=8, res_blocks=2, scale_factor=6, upsample_filters=8).eval()


def test_to_memory_format_only_touches_4d_floats():
    x = torch.randn(2, 3, 5, 4)
    cl = to_memory_format(x, True)
    assert cl.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous(
        memory_format=torch.channels_last
    )
    torch.testing.assert_close(cl, x, rtol=0, atol=0)
    mask = torch.ones(2, 1, 5, 4, dtype=torch.bool)
    assert to_memory_format(mask, True) is mask  # bool masks stay as they are
    times = torch.arange(2)
    assert to_memory_format(times, True) is times
    assert to_memory_format(x, False) is x


def test_channels_last_network_gives_the_same_output():
    x = torch.randn(3, 2, 8, 8)
    ref = _srdrn()(x)
    net = prepare_net(_srdrn(), channels_last=True)
    conv = net.head[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    out = net(to_memory_format(x, True))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert list(net.state_dict()) == list(_srdrn().state_dict())


def test_compile_keeps_state_dict_names_and_output():
    x = torch.randn(2, 2, 8, 8)
    ref = _srdrn()(x)
    net = prepare_net(_srdrn(), compile=True)
    assert list(net.state_dict()) == list(_srdrn().state_dict())  # checkpoints interchangeable
    torch.testing.assert_close(net(x), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("extra", [["train.channels_last=true"]])
def test_training_with_channels_last_matches_fp32_nchw(small_run, tmp_path, extra):
    """One epoch with NHWC tensors ends within float rounding of the NCHW run.

    Without dropout: its mask is drawn in memory order, so NHWC draws
    other (equally random) masks than NCHW.
    """
    import shutil

    runs = {}
    for name, over in (("nchw", []), ("nhwc", extra)):
        run = tmp_path / name
        shutil.copytree(small_run, run)
        cfg = load_config(
            "demo", [*SMALL, "train.max_batches_per_epoch=4", "model.dropout=0", *over]
        )
        res = train_cvae(cfg, run, echo=lambda *a: None, enable_progress_bar=False)
        runs[name] = torch.load(res.last_checkpoint, map_location="cpu", weights_only=False)
    a, b = runs["nchw"]["state_dict"], runs["nhwc"]["state_dict"]
    assert list(a) == list(b)
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst < 1e-4  # 4 Adam steps at lr 1e-3: rounding differences only
    assert b["net.enc_x.levels.0.conv.0.weight"].is_contiguous(memory_format=torch.channels_last)


def test_split_bytes_and_automatic_in_memory(small_run, monkeypatch):
    import numpy as np
    import xarray as xr

    from downpour.config import TrainConfig
    from downpour.downscaling import datamodule as dmod

    store = small_run / "data" / "store.zarr"
    ds = xr.open_zarr(store, consolidated=False)
    split = np.asarray(ds["split"].values).astype(object)
    days = int(((split == "train") | (split == "val")).sum())
    c, h, w = ds["predictors"].shape[1:]
    expected = days * (48 * 36 + c * h * w) * 4
    assert dmod.split_bytes(store, ("train", "val")) == expected
    assert dmod.PrecipDataModule(store, TrainConfig()).in_memory  # well under 2 GiB
    monkeypatch.setattr(dmod, "IN_MEMORY_LIMIT", expected)  # now "too large"
    assert not dmod.PrecipDataModule(store, TrainConfig()).in_memory
    assert dmod.PrecipDataModule(store, TrainConfig(in_memory=True)).in_memory  # explicit wins


def test_launched_processes_must_not_all_prepare_the_store(tmp_path, monkeypatch):
    from downpour.core.errors import DownpourError
    from downpour.downscaling.train import ensure_store
    from downpour.training.fit import launched_processes

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("SLURM_NTASKS", "8")
    assert launched_processes() == 8
    cfg = load_config("demo", SMALL)
    with pytest.raises(DownpourError, match=r"8 training processes.*downpour prepare"):
        ensure_store(cfg, tmp_path / "run", echo=lambda *a: None)
    assert not (tmp_path / "run" / "data").exists()
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert launched_processes() == 1


def test_srdrn_channels_last_overrides_train():
    from downpour.downscaling.srdrn_module import srdrn_train_config

    def resolved(*over: str) -> bool:
        return srdrn_train_config(load_config("demo", list(over))).channels_last

    assert resolved("train.channels_last=true", "srdrn.channels_last=null") is True
    assert resolved("train.channels_last=true", "srdrn.channels_last=false") is False
    assert resolved("train.channels_last=false", "srdrn.channels_last=true") is True
    assert load_config("demo").train.channels_last is False  # the demo: NHWC for SRDRN only
    assert resolved() is True
