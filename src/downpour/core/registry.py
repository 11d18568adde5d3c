"""One registry helper for every kind of named thing (models, losses, metrics...).

Examples
--------
>>> SCHEDULES = Registry("KL schedule")
>>> @SCHEDULES.register("constant")
... def constant(epoch: int) -> float:
...     return 1.0
>>> SCHEDULES.get("constant")(3)
1.0
>>> SCHEDULES.get("cosine")
Traceback (most recent call last):
...
downpour.core.errors.DownpourError: unknown KL schedule 'cosine'; valid names: constant
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from downpour.core.errors import DownpourError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → object mapping whose lookup errors list the valid names.

    Parameters
    ----------
    kind
        What is registered, used in error messages (e.g. ``"model"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Return a decorator that registers its argument under ``name``."""

        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """Return the object registered as ``name``.

        Raises
        ------
        DownpourError
            If ``name`` is unknown; the message lists the valid names.
        """
        try:
            return self._items[name]
        except KeyError:
            valid = ", ".join(sorted(self._items)) or "(none registered)"
            raise DownpourError(f"unknown {self.kind} {name!r}; valid names: {valid}") from None

    def names(self) -> list[str]:
        """Return the registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
