"""Training the nowcaster: accumulation, exact resume, learning, checkpoints, a NaN loss."""

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from downpour.config import load_config
from downpour.core.errors import DownpourError
from downpour.nowcast.train import load_nowcaster, train_nowcast

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
