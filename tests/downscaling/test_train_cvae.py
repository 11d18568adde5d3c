"""Training the cVAE end to end: overfit, resume, NaN stop, atomic checkpoints, prepare guard."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from _shared import QUARTER, TINY_CVAE, copy_run
from downpour.config import load_config
from downpour.core.errors import DownpourError
from downpour.downscaling.prepare import prepare
from downpour.downscaling.train import train_cvae

SMALL = [*QUARTER, *TINY_CVAE, "train.batch_size=8", "train.checkpoint_every=1"]


def quiet(*_a, **_k):
    return None


def fit(cfg, run, **kw):
    return train_cvae(cfg, run, echo=quiet, enable_progress_bar=False, **kw)


def test_demo_preset_trains_two_epochs(quarter_run, tmp_path):
    cfg = load_config("demo", [*SMALL, "train.epochs=2"])
    run = copy_run(quarter_run, tmp_path / "run")
    res = fit(cfg, run)
    assert res.epochs == 2
    ckpts = sorted(p.name for p in (run / "checkpoints" / "cvae").iterdir())
    assert {"best.ckpt", "last.ckpt", "epoch=000.ckpt", "epoch=001.ckpt"} <= set(ckpts)
    rows = list(csv.DictReader((run / "logs" / "cvae" / "version_0" / "metrics.csv").open()))
    cols = set(rows[0])
    for name in (
        "val/MAE",
        "val/MAE_tail",
        "val/MAE_prior",
        "val/kl",
        "val/recon",
        "train/loss",
        "train/recon",
        "train/mass",
        "train/kl",
        "train/sparse",
        "train/multiscale",
        "train/grad",
        "train/focal",
        "train/hurdle",
        "train/beta",
    ):
        assert name in cols, name
    val = [float(r["val/MAE"]) for r in rows if r.get("val/MAE")]
    assert len(val) == 2 and all(np.isfinite(val))
    assert res.metrics["val/MAE_tail"] > 0 and res.parameters > 0
    assert (run / "config.yaml").is_file() and (run / "metrics" / "train_cvae.json").is_file()
    ck = torch.load(run / "checkpoints" / "cvae" / "last.ckpt", weights_only=False)
    extra = ck["downpour"]
    assert ck["epoch"] == 1  # last.ckpt holds the final epoch, whether or not it is the best
    assert res.last_checkpoint == str(run / "checkpoints" / "cvae" / "last.ckpt")
    assert extra["kind"] == "cvae" and extra["config"]["name"] == "demo"
    import json

    card = json.loads((run / "data" / "card.json").read_text())
    assert extra["info"]["thresholds"] == pytest.approx(card["thresholds"])
    assert extra["normalization"]["channels"] == ["pr", "q"]


def test_overfits_eight_days(quarter_run, tmp_path):
    """Reconstruction loss of 8 training days (posterior mean, eval mode) falls by ≥ 80 %."""
    from downpour.downscaling.cvae_module import CVAEModule
    from downpour.losses import weighted_reconstruction

    run = tmp_path / "run"
    cfg = load_config(
        "demo",
        [
            *SMALL,
            "data.splits.train={start: 2001-07-01, end: 2001-07-08}",
            "data.splits.val={start: 2001-04-01, end: 2001-04-08}",
            "model.d_z=32",
            "model.base_filters=16",
            "model.dropout=0.0",
            "train.flips=false",
            "train.noise=0.0",
            "train.min_heavy_fraction=0.0",
            "train.epochs=800",
            "train.lr=1e-3",
            "train.warmup_epochs=0",
            "train.scheduler=none",
            "train.checkpoint_every=1000",
            "train.patience=1000",
            "loss.beta_kl=1e-4",
            "loss.kl_schedule=constant",
        ],
    )
    from downpour.downscaling.dataset import PrecipDataset

    prepare(cfg, run)
    days = PrecipDataset(run, "train")
    assert len(days) == 8
    batch = torch.utils.data.default_collate([days[i] for i in range(8)])

    def recon(module):
        module.eval()
        with torch.no_grad():
            out = module.net(batch["x"], batch["s"], batch["y"], temperature=0.0)
        lc = cfg.loss
        return float(
            weighted_reconstruction(
                torch.expm1(out.y_hat),
                torch.expm1(batch["y"]),
                batch["mask"],
                scale=lc.scale,
                w_min=lc.w_min,
                w_max=lc.w_max,
                tail_threshold=module.tail_threshold,
                tail_boost=lc.tail_boost,
            )
        )

    torch.manual_seed(cfg.train.seed)
    from downpour.downscaling.datamodule import read_store_info

    start = recon(CVAEModule(cfg, read_store_info(run), 1))
    fit(cfg, run, limit_val_batches=1, check_val_every_n_epoch=200)
    trained = CVAEModule.load_from_checkpoint(
        run / "checkpoints" / "cvae" / "last.ckpt", cfg=cfg, info=read_store_info(run)
    )
    end = recon(trained)
    assert end <= 0.2 * start, (start, end)


def _weights(path):
    sd = torch.load(path, weights_only=False)["state_dict"]
    return {k: v.float() for k, v in sd.items()}


def test_resume_gives_the_same_weights(quarter_run, tmp_path):
    over = [*SMALL, "train.epochs=4", "train.scheduler=cosine", "train.warmup_epochs=1"]
    cfg = load_config("demo", over)
    a = copy_run(quarter_run, tmp_path / "a")
    b = copy_run(quarter_run, tmp_path / "b")
    fit(cfg, a)
    fit(cfg, b, max_epochs=2)  # stop half-way (the schedule still spans 4 epochs)
    fit(cfg, b, resume=b / "checkpoints" / "cvae" / "last.ckpt")
    assert (b / "logs" / "cvae" / "version_0" / "metrics.csv").is_file()  # kept, not overwritten
    assert (b / "logs" / "cvae" / "version_1" / "metrics.csv").is_file()
    wa = _weights(a / "checkpoints" / "cvae" / "last.ckpt")
    wb = _weights(b / "checkpoints" / "cvae" / "last.ckpt")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6, msg=k)


def test_nan_loss_stops_with_step_and_term(quarter_run, tmp_path, monkeypatch):
    import downpour.downscaling.cvae_module as cm

    real = cm.cvae_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        total, terms = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] > 14:  # well into epoch 1 (12 batches per epoch + val batches)
            terms = {**terms, "mass": torch.tensor(float("nan"))}
            total = total + terms["mass"]
        return total, terms

    monkeypatch.setattr(cm, "cvae_loss", poisoned)
    run = copy_run(quarter_run, tmp_path / "run")
    cfg = load_config("demo", [*SMALL, "train.epochs=3"])
    with pytest.raises(DownpourError, match=r"at step \d+ .*non-finite term\(s\): mass"):
        fit(cfg, run)
    good = run / "checkpoints" / "cvae" / "epoch=000.ckpt"
    assert good.is_file()
    sd = torch.load(good, weights_only=False)["state_dict"]
    assert all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())


def test_interrupted_checkpoint_write_keeps_the_old_file(quarter_run, tmp_path, monkeypatch):
    run = copy_run(quarter_run, tmp_path / "run")
    cfg = load_config("demo", [*SMALL, "train.epochs=1"])
    fit(cfg, run)
    last = run / "checkpoints" / "cvae" / "last.ckpt"
    before = last.read_bytes()

    import fsspec.implementations.local as local

    def broken_write(self, *a, **k):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(local.LocalFileOpener, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        fit(load_config("demo", [*SMALL, "train.epochs=2"]), run, resume=last)
    assert last.read_bytes() == before


def test_bf16_accumulation_and_plateau_warmup(quarter_run, tmp_path):
    """bf16-mixed precision, gradient accumulation 2 and plateau LR with warm-up run together."""
    run = copy_run(quarter_run, tmp_path / "run")
    cfg = load_config(
        "demo",
        [
            *SMALL,
            "train.epochs=2",
            "train.precision=bf16-mixed",
            "train.accumulate=2",
            "train.scheduler=plateau",
            "train.warmup_epochs=1",
            "train.lr=1e-3",
        ],
    )
    res = fit(cfg, run)
    assert res.epochs == 2 and np.isfinite(res.metrics["val/MAE"])
    rows = list(csv.DictReader((run / "logs" / "cvae" / "version_0" / "metrics.csv").open()))
    steps = sorted({int(r["step"]) for r in rows if r.get("train/loss")})
    # 12 batches per epoch, accumulated by 2: 6 optimiser steps per epoch, 12 in all
    assert steps[-1] == 11
    lrs = [float(r["lr-Adam"]) for r in rows if r.get("lr-Adam")]
    assert lrs[0] == pytest.approx(1e-3 / 6)  # first warm-up step: lr · 1/(6 steps)


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


#: The ensemble generator on the small run: arch lowres, ensemble objective, 3 members.
ENSEMBLE = [
    "model.arch=lowres", "model.skips=false", "model.head=relu", "loss.objective=ensemble",
    "loss.beta_kl=0", "loss.lambda_sparse=0", "loss.lambda_focal=0", "loss.members=3",
    "train.monitor=val/CRPS", "sampling.mode=prior", "sampling.wet_rule=bernoulli",
]  # fmt: skip


def test_ensemble_objective_trains_logs_crps_and_samples_from_its_checkpoint(quarter_run, tmp_path):
    from downpour.downscaling.sampling import load_cvae, sample_cvae
    from downpour.downscaling.store import open_store
    from downpour.models.generator import LowResGenerator

    cfg = load_config("demo", [*SMALL, *ENSEMBLE, "train.epochs=2"])
    run = copy_run(quarter_run, tmp_path / "run")
    res = fit(cfg, run)
    rows = list(csv.DictReader((run / "logs" / "cvae" / "version_0" / "metrics.csv").open()))
    cols = set(rows[0])
    terms = ("train/crps", "train/crps_pool4", "train/crps_pool12", "train/spread")
    for name in (*terms, "val/CRPS", "val/MAE", "val/MAE_tail", "val/spread_skill", "val/crps"):
        assert name in cols, name
    assert "train/kl" not in cols and "train/beta" not in cols  # no ELBO terms
    crps = [float(r["val/CRPS"]) for r in rows if r.get("val/CRPS")]
    mae = [float(r["val/MAE"]) for r in rows if r.get("val/MAE")]
    # CRPS ≤ MAE of the ensemble mean always holds (Jensen): E|X − y| ≥ |E X − y|, minus spread
    assert len(crps) == 2 and all(0 < c <= m for c, m in zip(crps, mae, strict=True))
    assert res.metrics["val/CRPS"] == pytest.approx(crps[-1])
    net, loaded_cfg, _ = load_cvae(run / "checkpoints" / "cvae" / "last.ckpt")
    assert isinstance(net, LowResGenerator) and loaded_cfg.loss.objective == "ensemble"
    sampling = loaded_cfg.sampling.model_copy(update={"members": 3})
    ckpt, store = run / "checkpoints" / "cvae" / "last.ckpt", run / "data" / "store.zarr"
    ds = sample_cvae([ckpt], store, sampling, progress=False)
    s = ds["samples"].values
    land = open_store(store)["mask"].values.astype(bool)
    assert s.shape[1] == 3 and np.array_equal(np.isnan(s), np.broadcast_to(~land, s.shape))
    assert (s[..., land] >= 0).all()  # NaN exactly off the mask, rain ≥ 0 on it
    assert float(np.abs(s[:, 0] - s[:, 1])[..., land].mean()) > 0  # members differ


def test_arch_lowres_refuses_the_elbo_objective(quarter_run, tmp_path):
    cfg = load_config("demo", [*SMALL, "model.arch=lowres", "model.skips=false"])
    with pytest.raises(DownpourError, match="loss.objective=ensemble"):
        fit(cfg, copy_run(quarter_run, tmp_path / "run"))
