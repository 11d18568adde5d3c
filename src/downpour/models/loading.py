"""One way to load a trained model: :func:`load_model`, for every kind, through the registry.

The checkpoint is read safely (:func:`downpour.core.checkpoint.read_checkpoint`:
tensors and plain data only), its configuration validated, the network built
by :func:`~downpour.models.registry.build_model`, its weights loaded, and
its memory format set as in training. The result carries everything needed
to run the network: the configuration and the data facts (normalisation,
shapes, thresholds; the nowcaster's training statistics).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from torch import nn

from downpour.config import Config
from downpour.core.checkpoint import read_checkpoint
from downpour.core.errors import DownpourError
from downpour.models.fast import prepare_net
from downpour.models.registry import build_model, trained_channels_last

__all__ = ["LoadedModel", "load_model"]


@dataclass
class LoadedModel:
    """A trained network with what it needs to run.

    Attributes
    ----------
    net
        The network, in eval mode and in the training's memory format.
    config
        The run's resolved configuration.
    info
        Data facts recorded at training time.
    kind
        Model kind (registry name).
    variant
        The run's name for the model (e.g. ``srdrn_real``).
    path
        The checkpoint file.
    extra
        Further payload keys.
    """

    net: nn.Module
    config: Config
    info: dict[str, Any]
    kind: str
    variant: str
    path: Path
    extra: dict[str, Any] = field(default_factory=dict)


def load_model(checkpoint: str | Path, kind: str | tuple[str, ...] | None = None) -> LoadedModel:
    """Rebuild a trained network from its checkpoint alone.

    Parameters
    ----------
    checkpoint
        A ``.ckpt`` file written by downpour training.
    kind
        The kind (or kinds) expected; ``None`` accepts any.

    Returns
    -------
    LoadedModel

    Raises
    ------
    DownpourError
        An unreadable or foreign file, a checkpoint of another kind, or one
        whose configuration or weights do not fit this version of downpour.
    """
    ck = read_checkpoint(checkpoint, kind)
    try:
        cfg = Config.model_validate(ck.config)
    except ValidationError as exc:
        raise DownpourError(
            f"checkpoint {ck.path}: its configuration does not validate with this version of "
            f"downpour ({exc.error_count()} error(s), first: {exc.errors()[0]['msg']})"
        ) from None
    net = build_model(ck.kind, cfg, ck.info)
    try:
        net.load_state_dict(ck.state)
    except RuntimeError as exc:
        raise DownpourError(
            f"checkpoint {ck.path}: its weights do not fit the {ck.kind} network its config "
            f"describes ({str(exc).splitlines()[0]})"
        ) from None
    prepare_net(net, channels_last=trained_channels_last(ck.kind, cfg))
    return LoadedModel(
        net=net.eval(),
        config=cfg,
        info=ck.info,
        kind=ck.kind,
        variant=ck.variant,
        path=ck.path,
        extra=ck.extra,
    )
