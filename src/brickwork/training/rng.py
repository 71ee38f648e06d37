"""Seeded randomness for training: the batch order, and a seeded fork of the global RNG."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def batch_order(n: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """Indices for each step: seeded reshuffled epochs, cut into batches of ``batch_size``."""
    generator = torch.Generator().manual_seed(seed)
    stream: list[int] = []
    while len(stream) < steps * batch_size:
        stream += torch.randperm(n, generator=generator).tolist()
    return [stream[i * batch_size : (i + 1) * batch_size] for i in range(steps)]


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with the CPU RNG seeded; the caller's random state is restored on exit."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
