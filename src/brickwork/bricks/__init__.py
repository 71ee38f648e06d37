"""Bricks: typed functional units with a shareable on-disk format, a repository and attachment."""

from brickwork.bricks import builtin  # noqa: F401  registers the built-in kinds
from brickwork.bricks.attach import attach
from brickwork.bricks.brick import (
    ORIGINS,
    Brick,
    layer_brick,
    model_brick,
    neuron_group_brick,
    neuron_set_brick,
)
from brickwork.bricks.format import load_brick, save_brick, verify_brick
from brickwork.bricks.kinds import BrickKind, brick_kind, kind_names, register_brick_kind
from brickwork.bricks.plugins import lora_brick_from_peft, steering_brick
from brickwork.bricks.repository import BrickRepository
from brickwork.bricks.spec import BrickSpec

__all__ = [
    "ORIGINS",
    "Brick",
    "BrickKind",
    "BrickRepository",
    "BrickSpec",
    "attach",
    "brick_kind",
    "kind_names",
    "layer_brick",
    "load_brick",
    "lora_brick_from_peft",
    "model_brick",
    "neuron_group_brick",
    "neuron_set_brick",
    "register_brick_kind",
    "save_brick",
    "steering_brick",
    "verify_brick",
]
