"""Run ``downpour ...`` with a callback that records what each DDP rank trained on.

Usage (from tests/training/test_ddp.py)::

    python tests/training/ddp_script.py RECORD_DIR train cvae --devices 2 --accelerator cpu ...

The arguments after ``RECORD_DIR`` go to the ``downpour`` command line
unchanged. Lightning's ``ddp`` strategy launches rank 1 by running this same
command again (with ``LOCAL_RANK=1``), so every rank installs the callback.
At the end of ``fit`` each rank writes

- ``RECORD_DIR/rank<r>.json``: ``{"rank", "world_size", "epochs": {epoch: [batch, ...]}}``,
  each batch the store indices (``batch["index"]``) of the days the rank received;
- ``RECORD_DIR/rank<r>.pt``: the network's final ``state_dict``.

For a network with ``members`` (the ensemble objective), the record also
holds ``"members"``: per training step, ``[inputs, n, *output shape]``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


class RecordRank(Callback):
    """Record every training batch's store indices and the final weights of this rank."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.epochs: dict[str, list[list[int]]] = {}
        self.members: list[list[int]] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Wrap ``net.members`` (when there is one) to record each call's inputs and output."""
        net = pl_module.net
        if not hasattr(net, "members"):
            return
        original = net.members

        def members(x: torch.Tensor, s: torch.Tensor, n: int, **kw: Any) -> torch.Tensor:
            out = original(x, s, n, **kw)
            if net.training:  # training steps only, not validation
                self.members.append([int(x.shape[0]), int(n), *map(int, out.shape)])
            return out

        net.members = members

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Keep the store indices of the batch."""
        self.epochs.setdefault(str(trainer.current_epoch), []).append(batch["index"].tolist())

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write this rank's days and weights."""
        r = trainer.global_rank
        record = {"rank": r, "world_size": trainer.world_size, "epochs": self.epochs,
                  "members": self.members}  # fmt: skip
        (self.out / f"rank{r}.json").write_text(json.dumps(record))
        state = {k: v.detach().cpu().clone() for k, v in pl_module.net.state_dict().items()}
        torch.save(state, self.out / f"rank{r}.pt")


def main(argv: list[str]) -> None:
    """Install the recorder in ``train_cvae``/``train_srdrn`` and run the CLI on ``argv[1:]``."""
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    import downpour.training.fit as fit
    from downpour.cli.main import cli

    original = fit.build_trainer

    def build_trainer(*args: Any, extra_callbacks: list | None = None, **kwargs: Any) -> Any:
        return original(
            *args, extra_callbacks=[*(extra_callbacks or []), RecordRank(out)], **kwargs
        )

    fit.build_trainer = build_trainer  # the one fit() scaffold of every model kind
    # sys.argv is left alone: Lightning relaunches rank 1 with it
    cli.main(args=argv[1:], prog_name="downpour")


if __name__ == "__main__":
    main(sys.argv[1:])
