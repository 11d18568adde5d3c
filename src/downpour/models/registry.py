"""The model registry and :func:`build_model` (kept apart from ``__init__`` to avoid import cycles).

A model module registers its class with ``@MODELS.register("name")`` and is
imported by ``downpour/models/__init__.py``, so the name is known as soon as
``downpour.models`` is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from downpour.core.registry import Registry

__all__ = ["MODELS", "build_model"]

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def build_model(name: str, /, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name`` with keyword arguments.

    Parameters
    ----------
    name
        Registered name, e.g. ``"cvae"``.
    **kwargs
        Passed to the model's constructor (for ``"cvae"``: ``cfg``,
        ``x_channels``, ``s_channels``, ``shape``, ``scale_factor``).

    Returns
    -------
    nn.Module
        The new model.

    Raises
    ------
    DownpourError
        If ``name`` is unknown; the message lists the valid names.
    """
    return MODELS.get(name)(**kwargs)
