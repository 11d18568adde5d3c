"""The model registry: every network the library builds is built here, by kind.

A model module registers its class with ``@MODELS.register("kind")``; the
class provides two class methods that turn a run's configuration and the
data facts recorded at training time into a network (:class:`RunModel`):

- ``from_run(cfg, info)``: build the network;
- ``trained_channels_last(cfg)``: whether training ran it in channels_last,
  so that a loaded network computes exactly what it computed in training.

The kind is also the checkpoint's kind (:mod:`downpour.core.checkpoint`), so
:func:`downpour.models.loading.load_model` rebuilds any checkpoint through
:func:`build_model`.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch import nn

from downpour.config import Config
from downpour.core.registry import Registry

__all__ = ["MODELS", "RunModel", "build_model", "trained_channels_last"]


class RunModel(Protocol):
    """What a registered model class provides besides being an ``nn.Module``."""

    @classmethod
    def from_run(cls, cfg: Config, info: dict[str, Any]) -> nn.Module:
        """Build the network of a run from its config and data facts."""
        ...

    @classmethod
    def trained_channels_last(cls, cfg: Config) -> bool:
        """Return whether training used the channels_last memory format."""
        ...


MODELS: Registry[type[RunModel]] = Registry("model")


def build_model(kind: str, cfg: Config, info: dict[str, Any]) -> nn.Module:
    """Build the network registered as ``kind`` for a run.

    Parameters
    ----------
    kind
        Registered name: ``"cvae"``, ``"srdrn"`` or ``"nowcast"``.
    cfg
        The run's resolved configuration.
    info
        Data facts recorded at training time (for the cVAE and SRDRN:
        ``x_channels``, ``s_channels``, ``shape``, ``scale_factor``; see
        :class:`~downpour.downscaling.datamodule.StoreInfo`).

    Returns
    -------
    nn.Module
        The new network (training mode, NCHW).

    Raises
    ------
    DownpourError
        If ``kind`` is unknown; the message lists the valid names.
    """
    return MODELS.get(kind).from_run(cfg, info)  # type: ignore[return-value]


def trained_channels_last(kind: str, cfg: Config) -> bool:
    """Return whether a ``kind`` network of this run trained in channels_last."""
    return MODELS.get(kind).trained_channels_last(cfg)
