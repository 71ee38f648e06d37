"""Reuse the bricks tests' plugin fixtures (a non-identity LoRA on the tiny llama)."""

from tests.bricks.conftest import lora_brick, neuron_brick  # noqa: F401
