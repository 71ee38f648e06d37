"""Reuse the bricks tests' plugin fixtures (a non-identity LoRA on the tiny llama); selection
statistics of three functionalities for the tiny llama (2 layers x 64 neurons)."""

import torch

from brickwork.configure.select import SelectionStats
from tests.bricks.conftest import lora_brick, neuron_brick  # noqa: F401


def tiny_stats(loaded, with_set: int) -> SelectionStats:
    """Seeded importances; functionality ``with_set`` has a neuron-set brick of 4 per layer."""
    generator = torch.Generator().manual_seed(0)
    sets = torch.zeros(3, 2, 64, dtype=torch.bool)
    sets[with_set, :, :4] = True
    return SelectionStats(
        ["coding", "math", "writing"],
        torch.rand(3, 2, 64, generator=generator),
        sets,
        torch.zeros(2, 64, dtype=torch.bool),
        torch.rand(2, 64),
        loaded.fingerprint,
    )
