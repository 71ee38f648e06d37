"""Typed brick specs: one dataclass per brick kind, checked when built and when read.

A spec is a dataclass whose fields are the kind's settings (``spec`` in brick.json). It is also a
read-only mapping of its JSON form (fields that are None are left out), so ``spec["layer"]``,
``spec.get("more_layers")`` and ``{**spec, ...}`` read it as they read the JSON object; write
through attributes (``spec.layer = 2``). Field types are the JSON types: ``int``, ``float``,
``str``, ``dict``, ``list[int]``, ``list[dict]``, each optionally ``| None`` with default None.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from brickwork.errors import BrickworkError


@dataclass(eq=False, kw_only=True)
class BrickSpec(Mapping):
    """Base of every kind's spec. The two fields here may be added to a brick of any kind by
    ``brickwork.ops.route.with_embedding``: how its purpose embedding was made, and the prompt
    template a stitched pipeline uses for it."""

    kind: ClassVar[str] = "?"  # set by register_brick_kind
    purpose_embedding: dict | None = None
    prompt_template: str | None = None

    def __post_init__(self) -> None:
        problems = []
        for name in _names(type(self)):
            value, wrong = _coerce(type(self), name, getattr(self, name))
            setattr(self, name, value)
            problems += wrong
        problems += [] if problems else self.check()
        if problems:
            raise BrickworkError(f"invalid {self.kind} brick spec: {'; '.join(problems)}")

    def check(self) -> list[str]:
        """Problems beyond the field types (a kind overrides this for rules across fields)."""
        return []

    @classmethod
    def from_json(cls, data: Mapping) -> BrickSpec:
        """The spec of a JSON object: unknown or missing fields are one clear error."""
        if not isinstance(data, Mapping):
            raise BrickworkError(f"a {cls.kind} brick spec must be a JSON object, not {data!r}")
        names = _names(cls)
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        problems = [f"missing {k!r}" for k in required if k not in data]
        problems += [f"unknown field {k!r}" for k in data if k not in names]
        if problems:  # report the wrongly typed fields too, in one error
            problems += [p for k in names if k in data for p in _coerce(cls, k, data[k])[1]]
            raise BrickworkError(f"invalid {cls.kind} brick spec: {'; '.join(problems)}")
        return cls(**data)

    def to_json(self) -> dict:
        """The JSON object (fields that are None left out)."""
        return {k: self[k] for k in self}

    def __getitem__(self, key: str) -> Any:
        value = getattr(self, key, None) if key in _names(type(self)) else None
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return (k for k in _names(type(self)) if getattr(self, k) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _coerce(cls: type, name: str, value: Any) -> tuple[Any, list[str]]:
    """``value`` for the field ``name`` (an int made a float, a tuple a list where the type
    says so) and why it does not match the field's type ([] if it does)."""
    hint = typing.get_type_hints(cls)[name]
    if isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint):
        if value is None:
            return value, []
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is float and _is(value, int):
        value = float(value)
    elif origin is list and isinstance(value, tuple):
        value = list(value)
    if origin is list:
        ok = isinstance(value, list) and all(_is(v, args[0]) for v in value)
        wanted = f"a list of {args[0].__name__}"
    else:
        ok, wanted = _is(value, hint), f"{'an' if hint is int else 'a'} {hint.__name__}"
    if ok and isinstance(value, dict | list) and not _plain_json(value):
        return value, [f"{name!r} must be plain JSON (string keys, JSON values)"]
    return value, [] if ok else [f"{name!r} must be {wanted}, not {value!r:.60}"]


def _plain_json(value: Any) -> bool:
    """Whether ``value`` reads back from JSON as itself (so a saved brick equals the original)."""
    try:
        return json.loads(json.dumps(value)) == value
    except (TypeError, ValueError):
        return False


def _is(value: Any, kind: type) -> bool:
    if kind in (int, float) and isinstance(value, bool):
        return False
    return isinstance(value, kind)
