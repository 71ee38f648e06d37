"""Named choices as registries: merge methods, retrieval scorings, group routers, selection
baselines. The CLI takes its choices from a registry and the library looks entries up in it, so
adding a choice is one function and one entry."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from brickwork.errors import BrickworkError

T = TypeVar("T")


class Registry(dict[str, T]):
    """Entries (records with a ``name``) by name, in registration order. Looking up an unknown
    name raises a ``BrickworkError`` that lists the known ones."""

    def __init__(self, what: str, entries: Iterable[T] = ()) -> None:
        super().__init__()
        self.what = what
        for entry in entries:
            self.add(entry)

    def add(self, entry: T) -> T:
        """Register ``entry`` under its name; names are unique."""
        if entry.name in self:
            raise BrickworkError(f"{self.what} {entry.name!r} is already registered")
        self[entry.name] = entry
        return entry

    def __missing__(self, name: str) -> T:
        raise BrickworkError(f"unknown {self.what} {name!r}; known: {', '.join(self)}")
