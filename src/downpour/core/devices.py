"""Torch devices named by the user, checked once: :func:`torch_device`."""

from __future__ import annotations

import torch

from downpour.core.errors import DownpourError

__all__ = ["torch_device"]


def torch_device(name: str | None, key: str = "--device") -> torch.device:
    """Return the torch device ``name`` (None: CUDA when available, else CPU), checked.

    Parameters
    ----------
    name
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``, or None.
    key
        The option or config key that named it, for the error message
        (``"--device"``, ``"sampling.device"``).

    Raises
    ------
    DownpourError
        A name torch cannot parse, or CUDA asked for where there is none.

    Examples
    --------
    >>> torch_device("cpu")
    device(type='cpu')
    """
    name = name or ("cuda" if torch.cuda.is_available() else "cpu")
    given = f"{key} {name!r}" if key.startswith("-") else f"{key}={name!r}"
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise DownpourError(f"{given} is not a torch device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DownpourError(f"{given} but CUDA is not available here; use cpu")
    return dev
