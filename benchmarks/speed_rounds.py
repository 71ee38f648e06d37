"""Interleaved speed rounds: every configuration's decode and prefill tokens/s in each round, in
one process; reported as medians over the rounds and the spread (min-max) of the per-round ratio
to the baseline measured in that same round."""

from __future__ import annotations

from collections.abc import Callable
from statistics import median

import torch

from brickwork.configure.evaluate import decode_speed, prefill_speed

KINDS = ("decode", "prefill")


def speed_rounds(
    configs: dict[str, Callable[[], tuple[float, float]]], rounds: int
) -> dict[str, dict[str, list[float]]]:
    """``configs``: name -> a call measuring (decode, prefill) tok/s once; run in turn per round."""
    runs = {name: {kind: [] for kind in KINDS} for name in configs}
    for _ in range(rounds):
        for name, measure in configs.items():
            for kind, value in zip(KINDS, measure(), strict=True):
                runs[name][kind].append(value)
    return runs


def prefill_ids(model, tokens: int) -> torch.Tensor:
    """A fixed random prompt of ``tokens`` ids [1, tokens] for prefill timing."""
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, model.config.vocab_size, (1, tokens), generator=generator)


def measure_model(model, prompt, prefill_ids, tokens: int, pad) -> tuple[float, float]:
    """Decode tok/s of ``tokens`` greedy tokens after ``prompt``, prefill tok/s of ``prefill_ids``
    (one forward pass)."""
    return decode_speed(model, prompt, tokens, pad), prefill_speed(model, prefill_ids, 1)


def print_speed_table(
    runs: dict[str, dict[str, list[float]]], memory_mb: dict[str, float], base: str = "dense"
) -> None:
    rounds = len(runs[base]["decode"])
    print(
        f"| model | decode tok/s | x {base} (min-max) | prefill tok/s | x {base} (min-max) | "
        f"memory MB | x {base} |\n|---|---|---|---|---|---|---|"
    )
    for name, values in runs.items():
        cells = []
        for kind in KINDS:
            ratios = [v / b for v, b in zip(values[kind], runs[base][kind], strict=True)]
            cells.append(
                f"{median(values[kind]):.1f} | {median(ratios):.2f} "
                f"({min(ratios):.2f}-{max(ratios):.2f})"
            )
        mb = memory_mb[name]
        print(f"| {name} | {' | '.join(cells)} | {mb:.0f} | {mb / memory_mb[base]:.2f} |")
    print(f"\nMedians over {rounds} interleaved rounds; ratios against {base} of the same round.")
