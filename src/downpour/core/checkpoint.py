"""Checkpoint payload: what a downpour checkpoint holds besides the weights, and reading it.

A checkpoint is a Lightning ``.ckpt`` file whose ``"downpour"`` entry holds
plain data only (:func:`payload`):

- ``kind``: the model kind, also its name in the model registry
  (``"cvae"``, ``"srdrn"``, ``"nowcast"``);
- ``variant``: the run's name for this model (``"srdrn_real"``; defaults to the kind);
- ``config``: the resolved configuration as a JSON-able dict;
- ``info``: the data facts the network needs to run (shapes, channels,
  thresholds, normalisation; for the nowcaster its training statistics);
- further plain keys (``normalization`` …).

:func:`read_checkpoint` reads a file with ``torch.load(weights_only=True)``,
which unpickles tensors and plain containers only: a crafted file that
carries code is refused before anything runs. Building the network from a
payload is :func:`downpour.models.loading.load_model` (the model registry
lives above this room).

Examples
--------
>>> p = payload("srdrn", {"name": "demo"}, {"shape": [156, 132]}, variant="srdrn_real")
>>> p["kind"], p["variant"], p["info"]["shape"]
('srdrn', 'srdrn_real', [156, 132])
"""

from __future__ import annotations

import collections
import os
import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from downpour.core.errors import DownpourError

__all__ = [
    "PAYLOAD_KEY",
    "CheckpointPayload",
    "convert_checkpoint",
    "payload",
    "read_checkpoint",
]

#: Key of the downpour payload inside a Lightning checkpoint.
PAYLOAD_KEY = "downpour"

_LABELS = {"cvae": "cVAE", "srdrn": "SRDRN", "nowcast": "nowcast"}
_MAKERS = {"cvae": "downpour train cvae", "srdrn": "downpour train srdrn"}


@dataclass
class CheckpointPayload:
    """A checkpoint as read from disk: its payload and the network's weights.

    Attributes
    ----------
    path
        The file.
    kind
        Model kind (registry name).
    variant
        The run's name for the model (folder under ``checkpoints/``).
    config
        The resolved configuration, a plain dict (validate with ``Config``).
    info
        Data facts recorded at training time.
    state
        The network's state dict (the LightningModule's ``net.`` prefix removed).
    extra
        Every other payload key.
    """

    path: Path
    kind: str
    variant: str
    config: dict[str, Any]
    info: dict[str, Any]
    state: dict[str, torch.Tensor]
    extra: dict[str, Any] = field(default_factory=dict)


def payload(
    kind: str,
    config: dict[str, Any],
    info: dict[str, Any],
    *,
    variant: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Return the plain-data payload stored under :data:`PAYLOAD_KEY` of a checkpoint.

    Parameters
    ----------
    kind
        Model kind (``"cvae"``, ``"srdrn"``, ``"nowcast"``).
    config
        The resolved configuration as a JSON-able dict.
    info
        Data facts the network needs to run.
    variant
        The run's name for the model; default ``kind``.
    **extra
        Further plain keys.
    """
    return {"kind": kind, "variant": variant or kind, "config": config, "info": info, **extra}


def _kinds(kind: str | tuple[str, ...] | None) -> tuple[str, ...]:
    if kind is None:
        return ()
    return (kind,) if isinstance(kind, str) else tuple(kind)


def read_checkpoint(
    checkpoint: str | Path, kind: str | tuple[str, ...] | None = None
) -> CheckpointPayload:
    """Read a downpour checkpoint safely (tensors and plain data only).

    Parameters
    ----------
    checkpoint
        A ``.ckpt`` file written by ``downpour train <kind>`` or ``nowcast train``.
    kind
        The kind (or kinds) expected; ``None`` accepts any downpour checkpoint.

    Returns
    -------
    CheckpointPayload

    Raises
    ------
    DownpourError
        A missing, unreadable or foreign file, a file that holds anything but
        tensors and plain data, or a checkpoint of another kind.
    """
    path = Path(checkpoint)
    wanted = _kinds(kind)
    if not path.is_file():
        raise DownpourError(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # objects other than tensors and plain data: may run code
        raise DownpourError(
            f"checkpoint {path} cannot be read safely: it holds objects other than tensors and "
            "plain data, which loading could run as code, so it is refused; use a checkpoint "
            "written by downpour, or `downpour convert-checkpoint` for a file you trust"
        ) from None
    except Exception as exc:  # a truncated or foreign file raises many kinds
        raise DownpourError(
            f"checkpoint {path} cannot be read safely: it is truncated or not a checkpoint "
            f"({type(exc).__name__}); use a complete checkpoint written by downpour"
        ) from None
    extra = ckpt.get(PAYLOAD_KEY) if isinstance(ckpt, dict) else None
    found = extra.get("kind") if isinstance(extra, dict) else None
    if not found or (wanted and found not in wanted) or "state_dict" not in ckpt:
        label = " or ".join(_LABELS.get(k, k) for k in wanted) or "model"
        made = " or ".join(f"`{_MAKERS.get(k, f'downpour {k} train')}`" for k in wanted)
        what = f"a {_LABELS.get(found, found)} checkpoint" if found else "no downpour checkpoint"
        raise DownpourError(
            f"{path} is not a downpour {label} checkpoint (it is {what})"
            + (f"; use one made by {made}" if made else "")
        )
    assert isinstance(extra, dict)
    state = {
        k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")
    }
    rest = {k: v for k, v in extra.items() if k not in ("kind", "variant", "config", "info")}
    info = extra.get("info")
    if info is None:  # nowcast checkpoints of earlier versions kept their statistics as "stats"
        info = rest.get("stats", {})
    return CheckpointPayload(
        path=path,
        kind=str(found),
        variant=str(extra.get("variant") or found),
        config=dict(extra["config"]),
        info=dict(info),
        state=state,
        extra=rest,
    )


def _plain(value: Any, where: str) -> Any:
    """Return ``value`` as tensors and plain containers (what ``weights_only=True`` reads)."""
    if isinstance(value, np.generic):  # before float: np.float64 is a float subclass
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if value is None or isinstance(value, str | bool | int | float | torch.Tensor | torch.Size):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        items = {k: _plain(v, f"{where}.{k}") for k, v in value.items()}
        return (
            collections.OrderedDict(items) if isinstance(value, collections.OrderedDict) else items
        )
    if isinstance(value, list | tuple):
        return type(value)(_plain(v, f"{where}[{i}]") for i, v in enumerate(value))
    raise DownpourError(
        f"{where} holds a {type(value).__module__}.{type(value).__qualname__}, which a safe "
        "checkpoint cannot carry; this file cannot be converted"
    )


def convert_checkpoint(src: str | Path, dst: str | Path, *, trust: bool = False) -> Path:
    """Rewrite a trusted checkpoint as tensors and plain data (readable with ``weights_only``).

    Loading ``src`` unpickles arbitrary objects and can run code hidden in it:
    only convert files you made or trust (``trust=True`` says you do). Numpy
    arrays become tensors, numpy scalars and paths plain values; any other
    object is an error naming where it sits. The result is written
    atomically and checked to read back safely.

    Parameters
    ----------
    src
        A downpour checkpoint that does not read with ``weights_only=True``.
    dst
        The converted checkpoint (may not be ``src``).
    trust
        Must be True: loading ``src`` runs whatever it holds.

    Returns
    -------
    pathlib.Path
        ``dst``.
    """
    src, dst = Path(src), Path(dst)
    if not trust:
        raise DownpourError(
            f"converting {src} unpickles it, which runs any code it holds; confirm that you "
            "trust the file (--i-trust-this-file)"
        )
    if not src.is_file():
        raise DownpourError(f"checkpoint {src} not found")
    if src.resolve() == dst.resolve():
        raise DownpourError(f"convert {src} into a new file, not onto itself")
    try:
        ckpt = torch.load(src, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated or foreign file raises many kinds
        raise DownpourError(f"checkpoint {src} cannot be read ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get(PAYLOAD_KEY), dict):
        raise DownpourError(f"{src} is no downpour checkpoint (no '{PAYLOAD_KEY}' payload)")
    plain = _plain(ckpt, "checkpoint")
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        torch.save(plain, tmp)
        read_checkpoint(tmp)  # reads back safely
        os.replace(tmp, dst)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dst
