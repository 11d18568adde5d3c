"""Checkpoints under SIGKILL: the save of ``last.ckpt`` killed midway, and a resumed rerun.

Lightning's own ``TorchCheckpointIO`` (``lightning.fabric.utilities.cloud_io._atomic_save``)
serialises a checkpoint into memory, writes it to a temporary file that fsspec
makes with ``tempfile.mkstemp()``, i.e. in ``$TMPDIR``, not beside the
checkpoint, and commits it with ``shutil.move``: a rename on one filesystem,
but a copy into the checkpoint path itself when ``$TMPDIR`` is on another
(a tmpfs ``/tmp``, node-local scratch), which a kill cuts short. downpour's
trainer (``build_trainer``) therefore installs its own checkpoint IO.

Each test fits a toy model for one epoch through ``build_trainer``
(``epoch=NNN.ckpt``, ``best.ckpt``, ``last.ckpt``), resumes it for a second
epoch in a subprocess that dies while saving ``last.ckpt``, checks what is
left, resumes again normally and compares with an uninterrupted run. The kill
points cover both ways of writing (into memory then a file, or straight into
a file) and both ways of committing (a rename, or a copy across filesystems).
"""

from __future__ import annotations

import errno
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from _faults import needs_sigkill, run_killed, tree
from downpour.config import TrainConfig
from downpour.core.rundir import RunDir
from downpour.training.trainer import build_trainer

pytestmark = [needs_sigkill, pytest.mark.usefixtures("one_thread")]

HERE = str(Path(__file__).parent)


class Toy(L.LightningModule):
    """A linear regression whose validation metric is downpour's default monitor."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(4, 1)

    def _data(self) -> DataLoader:
        x = torch.randn(32, 4, generator=torch.Generator().manual_seed(1))
        return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)

    train_dataloader = val_dataloader = _data

    def training_step(self, batch, i):
        x, y = batch
        return torch.nn.functional.mse_loss(self.lin(x), y)

    def validation_step(self, batch, i):
        x, y = batch
        self.log("val/MAE_tail", (self.lin(x) - y).abs().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def fit(run: Path, epochs: int, resume: Path | None = None) -> None:
    """Fit :class:`Toy` with downpour's trainer (a checkpoint every epoch)."""
    cfg = TrainConfig(epochs=epochs, checkpoint_every=1, accelerator="cpu", devices=1)
    trainer = build_trainer(cfg, run, kind="toy", enable_progress_bar=False)
    trainer.fit(Toy(), ckpt_path=resume)


def weights(path: Path) -> dict[str, torch.Tensor]:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    return {"epoch": torch.tensor(ck["epoch"]), **ck["state_dict"]}


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert set(wa) == set(wb)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """Checkpoints of one epoch, then a resumed second one, never interrupted."""
    run = tmp_path_factory.mktemp("reference")
    fit(run, 1)
    fit(run, 2, resume=RunDir(run).checkpoints("toy") / "last.ckpt")
    return RunDir(run).checkpoints("toy")


def kill_in_checkpoint_bytes() -> None:
    """In the subprocess: die with half of the checkpoint's bytes written to a file.

    ``torch.save`` into a file writes half of the bytes there and dies; into
    memory (Lightning's own IO) it completes and the next file write dies half-way.
    """
    import io
    import os

    from _faults import die, kill_in_file_write

    real = torch.save

    def save(obj, f, *args, **kwargs):
        if isinstance(f, str | os.PathLike):
            buf = io.BytesIO()
            real(obj, buf, *args, **kwargs)
            with open(f, "wb") as fh:
                fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            die(f"torch.save into {f}")
        real(obj, f, *args, **kwargs)
        kill_in_file_write(lambda name: True)

    torch.save = save


def kill_in_commit() -> None:
    """In the subprocess: ``$TMPDIR`` on another filesystem; die while the checkpoint is committed.

    A rename into ``last.ckpt`` fails with EXDEV, as across filesystems, so
    ``shutil.move`` copies: the copy dies with the destination truncated and
    half written. A same-filesystem ``os.replace`` onto it dies just before.
    """
    import os
    import shutil

    from _faults import kill_at

    real = os.rename

    def rename(src, dst, *args, **kwargs):
        if str(dst).endswith("last.ckpt"):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real(src, dst, *args, **kwargs)

    def half_copy(real, src, dst, *args, **kwargs) -> None:
        data = Path(src).read_bytes()
        with open(dst, "wb") as f:
            f.write(data[: len(data) // 2])

    os.rename = rename
    kill_at(shutil, "copyfile", before=half_copy)
    kill_at(os, "replace", when=lambda src, dst, *a, **k: str(dst).endswith("last.ckpt"))


#: In the subprocess, once ``last.ckpt`` starts being saved: where it dies.
KILLS = {
    "serialising": "kill_at(torch, 'save')",
    "writing": "kill_in_checkpoint_bytes()",
    "committing across filesystems": "kill_in_commit()",
}


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def kill_last_save(tmp_path: Path, where: str) -> Path:
    """Fit one epoch, then resume for a second one that dies saving ``last.ckpt``."""
    run = tmp_path / "run"
    fit(run, 1)
    last = RunDir(run).checkpoints("toy") / "last.ckpt"
    before = tree(last)
    (tmp_path / "tmpdir").mkdir()
    run_killed(
        f"""
        import sys, torch
        from pathlib import Path
        import lightning as L
        sys.path.insert(0, {HERE!r})
        from test_faults_checkpoint import fit, kill_in_checkpoint_bytes, kill_in_commit
        arm_at(L.Trainer, "save_checkpoint", lambda: {KILLS[where]},
               when=lambda self, path, *a, **k: Path(path).name == "last.ckpt")
        fit(Path({str(run)!r}), 2, resume=Path({str(last)!r}))
        """,
        env={"TMPDIR": str(tmp_path / "tmpdir")},
    )
    assert tree(last) == before  # the old last.ckpt, whole
    return last


@pytest.mark.parametrize("where", list(KILLS))
def test_killed_checkpoint_save_keeps_the_old_last_ckpt(tmp_path, reference, where):
    last = kill_last_save(tmp_path, where)
    ckpts = last.parent
    assert weights(last)["epoch"] == 0
    assert visible(ckpts) == ["best.ckpt", "epoch=000.ckpt", "epoch=001.ckpt", "last.ckpt"]
    assert_same_weights(ckpts / "epoch=001.ckpt", reference / "epoch=001.ckpt")  # saved before

    fit(ckpts.parents[1], 2, resume=last)
    for name in ("last.ckpt", "best.ckpt"):
        assert_same_weights(ckpts / name, reference / name)


def test_the_next_save_removes_the_killed_saves_temporary(tmp_path):
    last = kill_last_save(tmp_path, "writing")
    fit(last.parents[2], 2, resume=last)
    assert [p.name for p in last.parent.iterdir() if p.name.startswith(".")] == []
