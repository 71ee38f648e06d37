"""The registry of brick kinds: each kind's typed spec and what it does when attached, saved and
put on a compact model. ``brickwork.bricks.builtin`` registers the built-in kinds;
docs/adding_a_brick_type.md shows how to add one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from brickwork.bricks.spec import BrickSpec
from brickwork.errors import BrickworkError

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from pathlib import Path

    import torch

    from brickwork.bricks.brick import Brick
    from brickwork.models.load import LoadedModel

# attach(loaded, bricks of this kind, mode) -> a context; it may yield a model that wraps
# loaded.model (LoRA's PEFT model), else None.
AttachFn = Callable[["LoadedModel", "list[Brick]", str], "AbstractContextManager"]
# write_files(brick, folder, tensors): extra files beside brick.json and weights.safetensors.
WriteFilesFn = Callable[["Brick", "Path", "dict[str, torch.Tensor]"], None]
# compact(brick, sliced): refuse (BrickworkError) a brick that touches the sliced FFN projections.
CompactFn = Callable[["Brick", "set[str]"], None]


@dataclass(frozen=True)
class BrickKind:
    """One registered kind. ``attach`` None: the kind does not attach; ``compact`` None: it does
    not attach to a compact model; ``group``: a wider name listings also accept (``plugin``)."""

    name: str
    spec_cls: type[BrickSpec]
    attach: AttachFn | None = None
    write_files: WriteFilesFn | None = None
    compact: CompactFn | None = None
    group: str | None = None
    tensors: tuple[str, ...] = ()  # tensors every brick of this kind holds


_REGISTRY: dict[str, BrickKind] = {}


def register_brick_kind(
    name: str,
    spec_cls: type[BrickSpec],
    *,
    attach: AttachFn | None = None,
    write_files: WriteFilesFn | None = None,
    compact: CompactFn | None = None,
    group: str | None = None,
    tensors: tuple[str, ...] = (),
) -> BrickKind:
    """Register a brick kind (once per name). Kinds attach in the order they were registered."""
    if name in _REGISTRY:
        raise BrickworkError(f"brick kind {name!r} is already registered")
    if not issubclass(spec_cls, BrickSpec):
        raise BrickworkError(f"the spec of brick kind {name!r} must subclass BrickSpec")
    spec_cls.kind = name
    kind = BrickKind(name, spec_cls, attach, write_files, compact, group, tuple(tensors))
    _REGISTRY[name] = kind
    return kind


def brick_kind(name: str) -> BrickKind:
    """The registered kind called ``name``; an unknown name is an error listing the known ones."""
    if name not in _REGISTRY:
        raise BrickworkError(f"unknown brick kind {name!r}; kinds: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def kind_names() -> tuple[str, ...]:
    """Every registered kind, in registration (and attach) order."""
    return tuple(_REGISTRY)


def kind_filters() -> tuple[str, ...]:
    """The names a listing filter accepts: every kind and every group."""
    groups = {k.group for k in _REGISTRY.values() if k.group}
    return (*_REGISTRY, *sorted(groups - set(_REGISTRY)))


def matches(kind: str, wanted: str) -> bool:
    """Whether a brick of ``kind`` passes the filter ``wanted`` (a kind or a group name)."""
    return kind == wanted or (kind in _REGISTRY and _REGISTRY[kind].group == wanted)
