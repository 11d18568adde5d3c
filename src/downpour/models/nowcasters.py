"""The registry entry of kind ``nowcast``: the network that ``nowcast.model`` names.

``residual`` builds :class:`~downpour.models.nowcast.NowcastUNet` (the next
frame as the last frame plus a change), ``advection``
:class:`~downpour.models.advection_nowcast.AdvectionNowcaster` (extrapolation
of the latest frame plus a learned, advected correction). Both train, load
and forecast through the same ``nowcast`` kind.

Examples
--------
>>> from downpour.config import load_config
>>> type(Nowcaster.from_run(load_config(None, ["nowcast.model=advection"]), {})).__name__
'AdvectionNowcaster'
"""

from __future__ import annotations

from typing import Any

from torch import nn

from downpour.config import Config
from downpour.models.advection_nowcast import AdvectionNowcaster
from downpour.models.nowcast import NowcastUNet
from downpour.models.registry import MODELS

__all__ = ["Nowcaster"]


@MODELS.register("nowcast")
class Nowcaster:
    """Builds the nowcast network of a run (``nowcast.model``)."""

    @classmethod
    def from_run(cls, cfg: Config, info: dict[str, Any]) -> nn.Module:
        """Return the network of ``cfg.nowcast.model`` (``info`` is unused)."""
        if cfg.nowcast.model == "advection":
            return AdvectionNowcaster.from_config(cfg.nowcast)
        return NowcastUNet.from_config(cfg.nowcast)

    @classmethod
    def trained_channels_last(cls, cfg: Config) -> bool:
        """Return ``train.channels_last``: the memory format the nowcaster trained in."""
        return bool(cfg.train.channels_last)
