"""Commands for growing: grow width|depth|experts (a new grown model directory) and grow train."""

from __future__ import annotations

import argparse

from brickwork.errors import BrickworkError


def _indices(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def cmd_grow(args: argparse.Namespace) -> None:
    from brickwork.ops.grow import grow_depth, grow_experts, grow_width, load_any, save_grown

    source = load_any(args.model)
    if args.how == "width":
        grown = grow_width(source, args.layers, args.neurons, method=args.method, seed=args.seed)
    elif args.how == "depth":
        grown = grow_depth(source, args.positions)
    else:
        assignments = _group_assignments(args) if args.group_bricks else None
        grown = grow_experts(
            source,
            args.layers,
            args.experts,
            mode=args.mode,
            top_k=args.top_k,
            assignments=assignments,
        )
    grown.history[-1]["command"] = args.command_line
    save_grown(grown, args.out)
    entry = {k: v for k, v in grown.history[-1].items() if k not in ("fingerprint", "command")}
    print(f"grew {args.model}: {entry}")
    print(f"{grown.trainable_count()} trainable (grown) parameters; saved {args.out}")


def _group_assignments(args) -> dict:
    from brickwork.bricks import BrickRepository

    if args.mode != "groups":
        raise BrickworkError("--group-bricks needs --mode groups")
    repo = BrickRepository(args.group_bricks)
    return {
        layer: repo.get(f"{args.group_method}-groups-layer{layer:02d}").tensors["assignment"]
        for layer in args.layers
    }


def cmd_grow_train(args: argparse.Namespace) -> None:
    from brickwork.data import load_data
    from brickwork.ops.grow import is_grown, load_grown, save_grown
    from brickwork.ops.grow.train import GrowTrainSettings, train_grown

    if not is_grown(args.model):
        raise BrickworkError(f"{args.model} is not a grown model directory (no grown.json)")
    grown = load_grown(args.model)
    train, heldout = load_data(args.data, split="train"), load_data(args.data, split="test")
    settings = GrowTrainSettings(
        steps=args.steps,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        eval_every=args.eval_every,
        max_seconds=args.max_seconds,
    )
    trained = train_grown(grown, train, heldout, settings=settings, progress=not args.quiet)
    trained.history[-1]["command"] = args.command_line
    save_grown(trained, args.out)
    m = trained.history[-1]
    print(
        f"trained {m['trainable_parameters']} grown parameters for {m['steps_run']} steps "
        f"({m['train_seconds']:.0f} s): held-out loss {m['heldout_loss_before']:.4f} -> "
        f"{m['heldout_loss_after']:.4f} (best step {m['best_step']}); saved {args.out}"
    )


def register(commands) -> None:
    """Add this area's commands to the parser."""
    from brickwork.models import DEFAULT_MODEL
    from brickwork.ops.grow import EXPERT_MODES, WIDTH_METHODS

    grow = commands.add_parser("grow", help="grow a model (width, depth, experts) or train it")
    hows = grow.add_subparsers(dest="how", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="model to grow: built-in name, model or grown directory, Hub id",
    )
    common.add_argument("--out", required=True, help="grown model directory to write")
    width = hows.add_parser("width", parents=[common], help="add FFN neurons (output unchanged)")
    width.add_argument("--layers", type=_indices, required=True, help="e.g. 0,5,10")
    width.add_argument("--neurons", type=int, required=True, help="new neurons per layer")
    width.add_argument("--method", choices=WIDTH_METHODS, default="zero")
    width.add_argument("--seed", type=int, default=0)
    depth = hows.add_parser("depth", parents=[common], help="insert identity decoder blocks")
    depth.add_argument(
        "--positions",
        type=_indices,
        required=True,
        help="insert a block before each of these layers (n_layers: at the end)",
    )
    experts = hows.add_parser("experts", parents=[common], help="upcycle FFNs into experts")
    experts.add_argument("--layers", type=_indices, required=True)
    experts.add_argument("--experts", type=int, required=True, help="experts per layer")
    experts.add_argument("--mode", choices=EXPERT_MODES, default="copies")
    experts.add_argument("--top-k", type=int, default=None)
    experts.add_argument("--group-bricks", help="brick repository with neuron-group bricks")
    experts.add_argument("--group-method", default="weights", help="weights or coactivation")
    for command in (width, depth, experts):
        command.set_defaults(run=cmd_grow)
    train = hows.add_parser("train", parents=[common], help="train only the grown parameters")
    train.add_argument(
        "--data", required=True, help="JSONL of prompt/reference pairs with train and test splits"
    )
    train.add_argument("--steps", type=int, default=200)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--batch-size", type=int, default=8)
    train.add_argument("--eval-every", type=int, default=50)
    train.add_argument("--max-seconds", type=float, default=None)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(run=cmd_grow_train)
