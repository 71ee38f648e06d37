"""Typed records read from JSON: one reader and one writer for every frozen dataclass on disk.

A field's annotation is its schema: ``str``, ``int``, ``float``, ``bool``, ``list``, ``dict``,
``Any``, ``tuple[str, ...]`` (a JSON list of non-blank strings), another record (a nested
object), or any of these ``| None``. A field with a default may be absent. Field metadata:
``key`` names the JSON key where it is no Python name (``"below_0.2"``); ``nonempty`` refuses an
empty string or list. Every error is one sentence naming ``where`` (a file or file:line) and the
key's dotted path.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from brickwork.errors import BrickworkError

R = TypeVar("R")
NONEMPTY = {"nonempty": True}
_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def from_json(
    cls: type[R],
    data: object,
    where: str,
    *,
    extra: bool = False,
    required: tuple[str, ...] = (),
    path: str = "",
) -> R:
    """A ``cls`` record from a parsed JSON object; ``extra`` allows keys the record lacks, and
    ``required`` names fields that must be present though the record gives them a default."""
    if not isinstance(data, dict):
        what = f"{path.rstrip('.')!r} must be a JSON object" if path else "expected a JSON object"
        raise BrickworkError(f"{where}: {what}")
    fields = dataclasses.fields(cls)
    if not extra:
        unknown = set(data) - {_key(f) for f in fields}
        if unknown:
            raise BrickworkError(f"{where}: unknown fields {sorted(unknown)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for field in fields:
        name = path + _key(field)
        value = data.get(_key(field))
        if value is None and (
            field.name in required or (_key(field) not in data and not _optional(field))
        ):
            raise BrickworkError(_empty(hints[field.name], field, where, name, "missing"))
        if _key(field) in data:
            values[field.name] = _value(hints[field.name], value, field, where, name)
    return cls(**values)


def to_json(record: object) -> dict:
    """The JSON object of a record; an optional field left at its empty default is left out."""
    out = {}
    for field in dataclasses.fields(record):
        value = getattr(record, field.name)
        if _optional(field) and value in (None, ()) and field.default == value:
            continue
        out[_key(field)] = _plain(value)
    return out


def _key(field: dataclasses.Field) -> str:
    return field.metadata.get("key", field.name)


def _optional(field: dataclasses.Field) -> bool:
    return field.default is not dataclasses.MISSING


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return to_json(value)
    return list(value) if isinstance(value, tuple) else value


def _empty(hint, field: dataclasses.Field, where: str, name: str, missing: str) -> str:
    if typing.get_origin(hint) is tuple:
        kind = "non-empty list" if field.metadata.get("nonempty") else "list"
        return f"{where}: {name!r} must be a {kind} of strings"
    if field.metadata.get("nonempty"):
        return f"{where}: missing or empty {name!r}"
    return f"{where}: {missing} {name!r}"


def _value(hint, value: object, field: dataclasses.Field, where: str, name: str) -> Any:
    """``value`` checked against ``hint`` (lists of strings become tuples)."""
    if isinstance(hint, types.UnionType):
        if value is None and type(None) in hint.__args__:
            return None
        (hint,) = [h for h in hint.__args__ if h is not type(None)]
    if dataclasses.is_dataclass(hint):
        return from_json(hint, value, where, extra=True, path=name + ".")
    origin = typing.get_origin(hint) or hint
    if origin is tuple:
        if not _texts(value, field.metadata.get("nonempty", False)):
            raise BrickworkError(_empty(hint, field, where, name, ""))
        return tuple(value)
    if origin in (list, dict):
        if not isinstance(value, origin):
            kind = "a JSON list" if origin is list else "a JSON object"
            raise BrickworkError(f"{where}: {name!r} must be {kind}")
        return value
    if origin is Any:
        return value
    ok = isinstance(value, (int, float)) if origin is float else isinstance(value, origin)
    if not ok or (origin is not bool and isinstance(value, bool)):
        raise BrickworkError(f"{where}: {name!r} must be {_NAMES[origin]}")
    if field.metadata.get("nonempty") and not value.strip():
        raise BrickworkError(_empty(hint, field, where, name, "missing"))
    return value


def _texts(value: object, nonempty: bool) -> bool:
    return (
        isinstance(value, list)
        and bool(value or not nonempty)
        and all(isinstance(v, str) and v.strip() for v in value)
    )
