"""Lightning hooks of the fast paths: channels_last and compile (:mod:`downpour.models.fast`).

bf16 autocast is Lightning's ``precision="bf16-mixed"`` (``train.precision``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from downpour.models.fast import prepare_net

__all__ = ["FastPathsMixin"]


class FastPathsMixin:
    """Lightning hooks applying ``train.channels_last`` and ``train.compile`` to ``self.net``.

    Mix into a LightningModule before :class:`lightning.LightningModule`; the
    module provides ``self.net`` and :meth:`fast_config` (its ``TrainConfig``).
    ``configure_model`` runs once per fit on every process (before DDP wraps
    the module); the network then converts its own 4-D inputs (a forward
    pre-hook), so batches need no conversion on the way.
    """

    net: nn.Module
    _fast_done: bool = False

    def fast_config(self) -> Any:
        """Return the ``TrainConfig`` holding ``channels_last`` and ``compile``."""
        raise NotImplementedError

    def configure_model(self) -> None:
        """Convert the network to channels_last and/or compile it (once)."""
        if self._fast_done:
            return
        cfg = self.fast_config()
        prepare_net(self.net, channels_last=cfg.channels_last, compile=cfg.compile)
        self._fast_done = True
