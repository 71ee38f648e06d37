"""The recovery brick: trained replacement parameters for one compact model.

A recovery brick holds, by parameter name, the new values of the parameters that recovery
trained (the kept FFN weights, or the weights a LoRA was merged into). Its ``base_model`` is the
fingerprint of the compact model it was trained on (configure/compact.py ``compact_fingerprint``),
so attaching it to any other model, another compact model included, is refused. Attaching swaps
in new parameter objects (the model's own tensors, which a compact model shares with its dense
model, are never written to) and puts the old ones back on exit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from brickwork.bricks.brick import Brick
from brickwork.bricks.spec import BrickSpec
from brickwork.errors import BrickworkError
from brickwork.models.load import LoadedModel


@dataclass(eq=False, kw_only=True)
class RecoverySpec(BrickSpec):
    """What the recovery trained and on which models."""

    dense_model: str  # fingerprint of the dense model it was distilled from
    mode: str  # "ffn" (the kept FFN weights) or "lora" (a LoRA, merged)
    parameters: list[str]  # the replaced parameters, by name
    settings: dict  # the recovery settings
    functionality: str | None = None  # what the compact model was selected for
    budget: float | None = None


def recovery_brick(
    name: str, target: LoadedModel, tensors: dict[str, torch.Tensor], spec: RecoverySpec, **fields
) -> Brick:
    """A recovery brick for ``target`` (a compact model's LoadedModel) replacing ``tensors``."""
    _check_shapes(target.model, tensors, name)
    return Brick(
        name,
        "recovery",
        "customized",
        fields.pop("purpose", spec.functionality or "recovery"),
        target.fingerprint,
        tensors={k: v.detach().clone().contiguous() for k, v in tensors.items()},
        spec=spec,
        **fields,
    )


def check_recovery_target(loaded: LoadedModel, brick: Brick) -> None:
    """Refuse a recovery brick trained for another compact model, with a clear message."""
    if brick.kind != "recovery":
        raise BrickworkError(f"brick {brick.name!r} is a {brick.kind}, not a recovery brick")
    if brick.base_model != loaded.fingerprint:
        raise BrickworkError(
            f"recovery brick {brick.name!r} was trained for compact model {brick.base_model}, "
            f"not this model ({loaded.fingerprint}): recover this compact model itself"
        )


def _check_shapes(model: nn.Module, tensors: dict[str, torch.Tensor], name: str) -> None:
    params = dict(model.named_parameters(remove_duplicate=False))
    for key, tensor in tensors.items():
        if key not in params:
            raise BrickworkError(f"recovery brick {name!r}: the model has no parameter {key!r}")
        if params[key].shape != tensor.shape:
            raise BrickworkError(
                f"recovery brick {name!r}: {key} is {tuple(tensor.shape)}, "
                f"the model's {tuple(params[key].shape)}"
            )


@contextmanager
def swapped_parameters(
    model: nn.Module, tensors: dict[str, torch.Tensor], trainable: bool = False
) -> Iterator[None]:
    """Replace the named parameters by new ones holding copies of ``tensors`` (frozen unless
    ``trainable``); the old parameter objects come back on exit."""
    saved: list = []
    try:
        _swap(model, tensors, saved, trainable)
        yield
    finally:
        for module, attr, old in reversed(saved):
            setattr(module, attr, old)


def _swap(
    model: nn.Module, tensors: dict[str, torch.Tensor], saved: list, trainable: bool = False
) -> None:
    """Set each named parameter to a new one; append (module, name, old) to ``saved``."""
    for key, tensor in tensors.items():
        path, _, attr = key.rpartition(".")
        module = model.get_submodule(path)
        old = getattr(module, attr)
        saved.append((module, attr, old))
        setattr(module, attr, nn.Parameter(tensor.to(old.dtype).clone(), requires_grad=trainable))


@contextmanager
def attach_recovery(loaded: LoadedModel, bricks: list[Brick], mode: str) -> Iterator[None]:
    """The registry's attach: every brick's parameters swapped in (``mode`` does not apply)."""
    for brick in bricks:
        check_recovery_target(loaded, brick)
        _check_shapes(loaded.model, brick.tensors, brick.name)
    tensors = {k: v for b in bricks for k, v in b.tensors.items()}
    with swapped_parameters(loaded.model, tensors):
        yield None


def apply_recovery(loaded: LoadedModel, brick: Brick) -> None:
    """Put the brick's parameters into ``loaded.model`` for good (a freshly loaded compact model
    that owns its weights: the loaded model's old parameter objects are replaced, not written)."""
    check_recovery_target(loaded, brick)
    _check_shapes(loaded.model, brick.tensors, brick.name)
    _swap(loaded.model, brick.tensors, [])
