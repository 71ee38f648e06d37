"""Helpers shared by the profiling commands: shards, the main process, the summary."""

from __future__ import annotations

import argparse


def shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected i/n, e.g. 0/2, got {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"need 0 <= i < n, got {text}")
    return index, count


def is_main_process() -> bool:
    import torch.distributed as dist

    return not dist.is_initialized() or dist.get_rank() == 0


def close_process_group() -> None:
    """Under torchrun: wait for every rank, then shut gloo down (a process that exits with the
    group still up can abort in its background thread)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def print_summary(summary: dict, out) -> None:
    speed = summary["tokens_per_second"]
    print(f"model {summary['model']} ({summary['fingerprint']})")
    print(
        f"{summary['instances']} instances, {summary['prompt_tokens']} prompt tokens, "
        f"{summary['layers']} layers x {summary['d_ff']} neurons"
        + (f", {summary['seconds']:.1f} s ({speed} tokens/s)" if speed else "")
    )
    for name in ("activation", "output"):
        below = summary[f"below_0.2_{name}"]
        print(
            f"normalized {name:<10} < 0.2: {below['mean']:.1%} of (token, neuron) pairs "
            f"(layers {below['min_layer']:.1%}-{below['max_layer']:.1%}; paper: ~80%)"
        )
    for functionality, stats in summary["functionalities"].items():
        print(
            f"  {functionality:<12} {stats['instances']:>4} instances "
            f"{stats['prompt_tokens']:>6} tokens  mean |a| {stats['mean_abs_activation']:.4f}"
        )
    print(f"saved {out}")
