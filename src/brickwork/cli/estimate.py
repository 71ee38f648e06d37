"""brickwork estimate: the memory a command needs for a model, from its config alone."""

from __future__ import annotations

import argparse

from brickwork.cli.options import add_model, positive_int
from brickwork.errors import BrickworkError

PARTS = (
    "weights",
    "inference_activations",
    "profile_statistics",
    "analysis_total",
    "training_activations",
    "training_state",
    "training_total",
)


def cmd_estimate(args: argparse.Namespace) -> None:
    from brickwork.models.device import dtype_name, resolve_device, resolve_dtype
    from brickwork.models.estimate import GIB, available_memory, estimate_memory, model_config

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    config = model_config(args.model, args.trust_remote_code)
    parts = estimate_memory(config, dtype, args.batch_size, args.seq_len, args.instances)
    print(f"{args.model} in {dtype_name(dtype)}, batch {args.batch_size} x {args.seq_len} tokens")
    for name in PARTS:
        print(f"  {name:<22} {parts[name] / GIB:9.3f} GiB")
    free = available_memory(device)
    print(f"  {'available on ' + str(device):<22} {free / GIB:9.3f} GiB")
    need = max(parts["analysis_total"], parts["training_total"] if args.training else 0)
    if args.device_map is None and need > free:
        raise BrickworkError(
            f"{args.model} needs about {need / GIB:.1f} GiB but {device} has "
            f"{free / GIB:.1f} GiB free: use a smaller --dtype, --batch-size or --device-map auto"
        )


def register(commands) -> None:
    estimate = commands.add_parser(
        "estimate", help="memory a model needs for analysis and training, from its config"
    )
    add_model(estimate)
    estimate.add_argument("--batch-size", type=positive_int, default=8, help="prompts per batch")
    estimate.add_argument("--seq-len", type=positive_int, default=256, help="tokens per prompt")
    estimate.add_argument("--instances", type=positive_int, default=1000, help="profiled prompts")
    estimate.add_argument(
        "--training", action="store_true", help="refuse when brick training would not fit either"
    )
    estimate.set_defaults(run=cmd_estimate)
