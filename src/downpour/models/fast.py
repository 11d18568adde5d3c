"""Memory format and compilation of a plain network: channels_last and ``torch.compile``.

- **channels_last** stores 4-D activations and convolution weights as NHWC,
  the layout oneDNN (CPU) and cuDNN (tensor cores) convolve fastest; the
  network's parameters are converted once, and a forward pre-hook converts
  its 4-D inputs (:func:`to_memory_format`). Results are the same up to float
  rounding.
- **compile** runs :meth:`torch.nn.Module.compile` on the network in place,
  so the state dict keeps its names and checkpoints stay interchangeable
  with uncompiled runs. The first steps pay for the compilation.

Training applies these through :class:`downpour.training.fast.FastPathsMixin`;
:func:`downpour.models.loading.load_model` applies the training's memory
format, so predictions equal the network's outputs during training.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["prepare_net", "to_memory_format"]


def to_memory_format(t: Any, channels_last: bool) -> Any:
    """Return a 4-D floating tensor ``(B, C, H, W)`` in NHWC layout when asked; others as given."""
    if channels_last and isinstance(t, torch.Tensor) and t.ndim == 4 and t.is_floating_point():
        return t.contiguous(memory_format=torch.channels_last)
    return t


def _inputs_channels_last(
    module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Forward pre-hook: 4-D floating inputs in NHWC (others untouched)."""
    return (
        tuple(to_memory_format(a, True) for a in args),
        {k: to_memory_format(v, True) for k, v in kwargs.items()},
    )


def prepare_net(net: nn.Module, *, channels_last: bool = False, compile: bool = False) -> nn.Module:
    """Convert ``net`` to channels_last and/or compile it in place; return it.

    Parameters
    ----------
    net
        A plain network (cVAE, SRDRN, nowcast U-Net).
    channels_last
        Convert 4-D parameters and buffers to NHWC.
    compile
        ``net.compile()`` (TorchInductor); the state dict keys are unchanged.
    """
    if channels_last:
        net.to(memory_format=torch.channels_last)
        net.register_forward_pre_hook(_inputs_channels_last, with_kwargs=True)
    if compile:
        net.compile()
    return net
