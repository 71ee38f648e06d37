"""Bricks: typed functional units with a shareable on-disk format, a repository and attachment."""

from brickwork.bricks.attach import attach
from brickwork.bricks.brick import (
    KINDS,
    ORIGINS,
    Brick,
    layer_brick,
    model_brick,
    neuron_group_brick,
    neuron_set_brick,
)
from brickwork.bricks.format import load_brick, save_brick, verify_brick
from brickwork.bricks.plugins import lora_brick_from_peft, steering_brick
from brickwork.bricks.repository import BrickRepository

__all__ = [
    "KINDS",
    "ORIGINS",
    "Brick",
    "BrickRepository",
    "attach",
    "layer_brick",
    "load_brick",
    "lora_brick_from_peft",
    "model_brick",
    "neuron_group_brick",
    "neuron_set_brick",
    "save_brick",
    "steering_brick",
    "verify_brick",
]
