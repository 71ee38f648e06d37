"""Commands for growing: grow width|depth|experts (a new grown model directory) and grow train."""

from __future__ import annotations

import argparse

from brickwork.cli.options import add_model, add_out, add_quiet, indices, model_options
from brickwork.cli.settings import add_keywords, add_settings, keywords_from, settings_from
from brickwork.errors import BrickworkError

WIDTH_OPTIONS = {"method": "how the new neurons start", "seed": "seed of random starts"}
EXPERT_OPTIONS = {"mode": "how the experts are made", "top_k": "experts per token (None: all)"}


def cmd_grow(args: argparse.Namespace) -> None:
    from brickwork.ops.grow import grow_depth, grow_experts, grow_width, load_any, save_grown

    source = load_any(args.model, **model_options(args))
    if args.how == "width":
        options = keywords_from(args, WIDTH_OPTIONS)
        grown = grow_width(source, args.layers, args.neurons, **options)
    elif args.how == "depth":
        grown = grow_depth(source, args.positions)
    else:
        assignments = _group_assignments(args) if args.group_bricks else None
        options = keywords_from(args, EXPERT_OPTIONS)
        grown = grow_experts(source, args.layers, args.experts, **options, assignments=assignments)
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
    grown = load_grown(args.model, **model_options(args))
    train, heldout = load_data(args.data, split="train"), load_data(args.data, split="test")
    settings = settings_from(args, GrowTrainSettings)
    trained = train_grown(grown, train, heldout, settings=settings, progress=not args.quiet)
    trained.history[-1]["command"] = args.command_line
    save_grown(trained, args.out)
    m = trained.history[-1]
    print(
        f"trained {m['trainable_parameters']} grown parameters for {m['steps_run']} steps "
        f"({m['train_seconds']:.0f} s): held-out loss {m['heldout_loss_before']:.4f} -> "
        f"{m['heldout_loss_after']:.4f} (best step {m['best_step']}); saved {args.out}"
    )


def _command(hows, how: str, help: str) -> argparse.ArgumentParser:
    command = hows.add_parser(how, help=help)
    add_model(command, "model to grow (or a grown model directory)")
    add_out(command, "grown model directory to write")
    return command


def _layer_command(hows, how: str, help: str, count: tuple[str, str], grow, options, choices):
    """A growth of chosen ``--layers`` by a ``count`` (flag, help) each, with ``grow``'s
    keyword ``options`` (their ``choices``)."""
    command = _command(hows, how, help)
    command.add_argument("--layers", type=indices, required=True, help="e.g. 0,5,10")
    command.add_argument(count[0], type=int, required=True, help=count[1])
    add_keywords(command, grow, options, choices=choices)
    command.set_defaults(run=cmd_grow)
    return command


def _add_experts(hows) -> None:
    from brickwork.bricks.extract import GROUP_METHODS
    from brickwork.ops.grow import EXPERT_MODES, grow_experts

    experts = _layer_command(
        hows,
        "experts",
        "upcycle FFNs into experts",
        ("--experts", "experts per layer"),
        grow_experts,
        EXPERT_OPTIONS,
        {"mode": EXPERT_MODES},
    )
    experts.add_argument("--group-bricks", help="brick repository with neuron-group bricks")
    experts.add_argument(
        "--group-method", default="weights", choices=GROUP_METHODS, help="which groups"
    )


def register(commands) -> None:
    """Add this area's commands to the parser."""
    from brickwork.ops.grow import WIDTH_METHODS, grow_width
    from brickwork.ops.grow.train import GrowTrainSettings

    grow = commands.add_parser("grow", help="grow a model (width, depth, experts) or train it")
    hows = grow.add_subparsers(dest="how", required=True, metavar="HOW")
    _layer_command(
        hows,
        "width",
        "add FFN neurons (output unchanged)",
        ("--neurons", "new neurons per layer"),
        grow_width,
        WIDTH_OPTIONS,
        {"method": WIDTH_METHODS},
    )
    depth = _command(hows, "depth", "insert identity decoder blocks")
    depth.add_argument(
        "--positions",
        type=indices,
        required=True,
        help="insert a block before each of these layers (n_layers: at the end)",
    )
    depth.set_defaults(run=cmd_grow)
    _add_experts(hows)
    train = _command(hows, "train", "train only the grown parameters")
    train.add_argument(
        "--data", required=True, help="JSONL of prompt/reference pairs with train and test splits"
    )
    add_settings(train, GrowTrainSettings, skip=("preserve_weight",))
    add_quiet(train)
    train.set_defaults(run=cmd_grow_train)
