"""Registries turn the names used in configs into objects (never import paths)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from medseg3d.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object table, e.g. ``MODELS.get("unet")``.

    >>> LOSSES = Registry("loss")
    >>> @LOSSES.register("dice")
    ... class DiceLoss: ...
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    @contextlib.contextmanager
    def temporary(self, name: str, obj: T) -> Iterator[T]:
        """Register ``obj`` as ``name`` for the duration of a ``with`` block (tests, plug-ins)."""
        self.register(name)(obj)
        try:
            yield obj
        finally:
            self._items.pop(name, None)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(sorted(self._items))}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"
