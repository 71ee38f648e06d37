"""Commands for combining and stitching bricks: combine, describe, stitch."""

from __future__ import annotations

import argparse
import math

from brickwork.cli.options import (
    add_model,
    add_overwrite,
    add_repo,
    model_options,
    record_invocation,
)
from brickwork.cli.settings import add_keywords, keywords_from, signature_default
from brickwork.errors import BrickworkError

OPTION_HELP = {
    "scale": "lambda, the scale of the summed updates",
    "density": "kept fraction of each update's entries",
    "seed": "drop-mask seed",
    "variant": "merge after dropping as",
}
STITCH_OPTIONS = {"max_new_tokens": "new tokens per step"}


def cmd_combine(args: argparse.Namespace) -> None:
    from brickwork.bricks import BrickRepository
    from brickwork.ops.combine import MERGE_METHODS, merge

    repo = BrickRepository(args.repo, create=False)
    names = [n for n in args.bricks.split(",") if n]
    if len(set(names)) < len(names):
        raise BrickworkError(f"--bricks names a brick twice: {args.bricks!r}")
    if args.name in {m["name"] for m in repo.list()} and not args.overwrite:
        raise BrickworkError(f"a brick named {args.name!r} is already in {args.repo}")
    bricks = [repo.get(n) for n in names]
    weights = _floats(args.weights) if args.weights else [1.0] * len(bricks)
    common = {"rank": args.rank, "description": args.description or ""}
    method = MERGE_METHODS[args.method]
    options = {o: getattr(args, o) for o in method.options if getattr(args, o) is not None}
    given = {o: getattr(args, o) for m in MERGE_METHODS.values() for o in m.options}
    for option, value in given.items():  # also one the method ignores
        if isinstance(value, float) and not math.isfinite(value):
            raise BrickworkError(f"--{option} must be a finite number, not {value}")
    brick = merge(args.method, bricks, weights, args.name, **options, **common)
    record_invocation(brick.provenance, args)
    path = repo.add(brick, overwrite=args.overwrite)
    print(f"{brick.name}: rank {brick.metrics['rank']}, parents {', '.join(names)}")
    print(f"weights {', '.join(f'{w:g}' for w in weights)}")
    if "recompression_error" in brick.metrics:
        print(f"relative re-compression error {brick.metrics['recompression_error']:.4g}")
    print(f"saved {path}")


def cmd_describe(args: argparse.Namespace) -> None:
    from brickwork.bricks import BrickRepository
    from brickwork.data import load_texts
    from brickwork.models import load_model
    from brickwork.ops.route import with_embedding

    repo = BrickRepository(args.repo, create=False)
    brick = repo.get(args.name)
    prompts = load_texts(args.prompts)
    loaded = load_model(args.model, **model_options(args))
    described = with_embedding(loaded, brick, prompts, args.description, template=args.template)
    described.provenance["embedding_command"] = args.command_line
    repo.add(described, overwrite=True)
    print(f"{args.name}: purpose embedding from {len(prompts)} prompts saved in {args.repo}")


def cmd_stitch(args: argparse.Namespace) -> None:
    from brickwork.bricks import BrickRepository
    from brickwork.models import load_model
    from brickwork.ops.stitch import plan_chain, run_pipeline, step_for

    repo = BrickRepository(args.repo, create=False)
    metas = repo.search(kind="plugin")
    plan = plan_chain(args.instruction, metas)
    for number, step in enumerate(plan, start=1):
        print(f"step {number}: {step.brick} (score {step.score:.3f}) for {step.clause!r}")
    loaded = load_model(args.model, **model_options(args))
    steps = [step_for(repo.get(p.brick)) for p in plan]
    outputs = run_pipeline(loaded, steps, args.input, **keywords_from(args, STITCH_OPTIONS))
    for index, text in enumerate(args.input):
        print(f"input: {text}")
        for step, out in zip(plan, outputs, strict=True):
            print(f"  {step.brick}: {out[index]}")


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise BrickworkError(f"weights must be comma-separated numbers, not {text!r}") from None


def _add_method_options(parser) -> None:
    """One option per merge-method option, its default from the methods' signatures; where the
    methods that take it default differently, the option defaults to None (each method's own)."""
    from brickwork.ops.combine import DARE_VARIANTS, MERGE_METHODS

    takers: dict[str, list] = {}
    for method in MERGE_METHODS.values():
        for option in method.options:
            takers.setdefault(option, []).append(method)
    for option, methods in takers.items():
        defaults = {m.name: signature_default(m.merge, option) for m in methods}
        names = "/".join(defaults)
        help = f"{names}: {OPTION_HELP.get(option, option)}"
        if len(set(map(repr, defaults.values()))) == 1:
            choices = {"variant": DARE_VARIANTS}
            add_keywords(parser, methods[0].merge, {option: help}, choices=choices)
        else:
            own = ", ".join(f"{name} {value}" for name, value in defaults.items())
            kind = type(next(iter(defaults.values())))
            parser.add_argument(
                "--" + option.replace("_", "-"),
                type=kind,
                default=None,
                help=f"{help} (None: the method's own, {own})",
            )


def _add_combine(commands) -> None:
    from brickwork.ops.combine import MERGE_METHODS

    combine = commands.add_parser(
        "combine", help="merge LoRA bricks into one (exact linear, task arithmetic, TIES, DARE)"
    )
    combine.add_argument("method", choices=tuple(MERGE_METHODS))
    add_repo(combine, "repository holding the bricks")
    combine.add_argument("--bricks", required=True, help="comma-separated brick names")
    combine.add_argument(
        "--weights", help="comma-separated weights (None: 1 each, every parent at full strength)"
    )
    combine.add_argument("--name", required=True, help="name of the combined brick")
    combine.add_argument("--rank", type=int, help="re-compress to this rank by SVD")
    _add_method_options(combine)
    combine.add_argument("--description", help="description of the combined brick")
    add_overwrite(combine)
    combine.set_defaults(run=cmd_combine)


def register(commands) -> None:
    """Add this area's commands to the parser."""
    from brickwork.ops.stitch import run_pipeline

    _add_combine(commands)
    describe = commands.add_parser(
        "describe",
        help="give a brick a purpose embedding for retrieval (from its training prompts)",
    )
    describe.add_argument("name", help="brick name")
    add_repo(describe, "repository holding the brick")
    describe.add_argument("--prompts", required=True, help="its training prompts (.txt / .jsonl)")
    describe.add_argument("--description", required=True, help="what the brick is for")
    describe.add_argument("--template", help="how to prompt it in a pipeline, with {input}")
    add_model(describe)
    describe.set_defaults(run=cmd_describe)

    stitch = commands.add_parser(
        "stitch", help="plan a chain of bricks from their descriptions and pass text through it"
    )
    stitch.add_argument("instruction", help='e.g. "translate French to English, then ..."')
    add_repo(stitch, "repository holding the bricks")
    stitch.add_argument("--input", action="append", required=True, help="an input text (repeat)")
    add_keywords(stitch, run_pipeline, STITCH_OPTIONS)
    add_model(stitch)
    stitch.set_defaults(run=cmd_stitch)
