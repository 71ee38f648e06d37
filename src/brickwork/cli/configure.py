"""Configured models: ``brickwork train-router`` trains the instruction router and
``brickwork generate`` answers an instruction with a model configured for it, printing which
bricks were selected."""

from __future__ import annotations

import json
from pathlib import Path

from brickwork.cli.options import (
    add_model,
    add_optional_repo,
    add_out,
    add_quiet,
    add_repeatable,
    model_options,
)
from brickwork.cli.settings import add_keywords, add_settings, keywords_from, settings_from

GENERATE_OPTIONS = {
    "configure": "'auto' (route the instruction), 'none' (dense model) or a functionality name",
    "budget": "share of FFN neurons kept per layer, in (0, 1]",
    "selection": "prompt: the prompt's own activations pick the neurons (dense prefill, compact "
    "decode); static: the functionality's neuron set + resident + train-split importance",
    "max_new_tokens": "new tokens to generate",
    "compare_dense": "also answer with the dense model: its answer and decode speed in the trace",
}


def register(commands) -> None:
    """Add this area's commands to the parser."""
    from brickwork.cli.configure_build import register_build
    from brickwork.configure.pipeline import SELECTIONS, configured_generate
    from brickwork.configure.prompted import Decoding

    register_build(commands)

    route = commands.add_parser(
        "train-router", help="train the instruction router on the built-in suite's train split"
    )
    add_model(route)
    add_out(route, "router file to write (.safetensors)")
    add_quiet(route)
    route.set_defaults(run=run_route)

    generate = commands.add_parser(
        "generate", help="answer an instruction with a model configured for it"
    )
    generate.add_argument("instruction", help="the instruction to answer")
    add_model(generate)
    add_keywords(generate, configured_generate, GENERATE_OPTIONS, choices={"selection": SELECTIONS})
    add_settings(generate, Decoding)
    generate.add_argument(
        "--router",
        help="router file from `brickwork train-router` (for auto; default: the built-in suite's "
        "router, trained on first use and cached per model)",
    )
    generate.add_argument("--analysis", help="analysis directory from `brickwork analyze`")
    generate.add_argument(
        "--configured", help="directory of prebuilt configured models (brickwork configure build)"
    )
    add_repeatable(generate, "--brick", "a brick of --repo to attach by NAME (repeatable)")
    add_optional_repo(generate, "repository of the --brick bricks")
    add_repeatable(generate, "--plugin", "a brick directory to attach (repeatable)")
    generate.add_argument("--trace", help="also write the trace as JSON to this file")
    generate.set_defaults(run=run_generate)


def run_route(args) -> None:
    from brickwork.configure.router import router_accuracy, save_router, train_router
    from brickwork.data import load_builtin_suite
    from brickwork.models import load_model

    loaded = load_model(args.model, **model_options(args))
    router = train_router(loaded, load_builtin_suite("train"), progress=not args.quiet)
    test = load_builtin_suite("test")
    result = router_accuracy(
        router, loaded, [s.prompt for s in test], [s.functionality for s in test]
    )
    save_router(router, Path(args.out))
    print(f"router: {len(router.functionalities)} functionalities, layers {router.layers}")
    print(f"test-split accuracy {result['accuracy']:.1%} ({result['n']} prompts)")
    print(f"saved {args.out}")


def _warn_if_cut(loaded, instruction: str, chat: bool) -> None:
    """Say so when the instruction is longer than the prompt window the pipeline keeps."""
    import sys

    from brickwork.configure.prompted import MAX_PROMPT_TOKENS
    from brickwork.models.tokens import prompt_tokens

    n = len(prompt_tokens(loaded.tokenizer, instruction, chat=chat))
    if n > MAX_PROMPT_TOKENS:
        print(
            f"warning: the instruction is {n} tokens; only its last {MAX_PROMPT_TOKENS} are used",
            file=sys.stderr,
        )


def _named_bricks(args) -> list:
    """The ``--brick`` bricks of ``--repo``, read before any model loads."""
    from brickwork.bricks import BrickRepository
    from brickwork.errors import BrickworkError

    if not args.brick:
        return []
    if args.repo is None:
        raise BrickworkError("--brick NAME needs --repo, the repository that holds it")
    repo = BrickRepository(args.repo)
    return [repo.get(name) for name in args.brick]


def run_generate(args) -> None:
    from brickwork.bricks import load_brick
    from brickwork.cli.outputs import check_out_file
    from brickwork.configure.build import configured_dirs
    from brickwork.configure.compact import check_budget
    from brickwork.configure.pipeline import check_configure, configured_generate
    from brickwork.configure.prompted import Decoding
    from brickwork.configure.router import default_router, load_router
    from brickwork.configure.select import load_stats
    from brickwork.errors import BrickworkError
    from brickwork.io import write_text_atomically
    from brickwork.models import load_model

    if args.max_new_tokens < 1:
        raise BrickworkError("--max-new-tokens must be at least 1")
    if not args.instruction.strip():
        raise BrickworkError("the instruction is empty")
    check_out_file(args.trace, "the trace file")
    check_budget(args.budget)
    prebuilt = configured_dirs(args.configured) if args.configured else None
    router = load_router(args.router) if args.router else None
    stats = load_stats(args.analysis) if args.analysis else None
    check_configure(args.configure, stats, router)
    plugins = [load_brick(p) for p in args.plugin] + _named_bricks(args)
    decoding = settings_from(args, Decoding)
    loaded = load_model(args.model, **model_options(args))
    if router is None and args.configure == "auto":
        router = default_router(loaded)
    _warn_if_cut(loaded, args.instruction, decoding.chat)
    answer, trace = configured_generate(
        loaded,
        args.instruction,
        **keywords_from(args, GENERATE_OPTIONS),
        router=router,
        stats=stats,
        plugins=plugins,
        prebuilt=prebuilt,
        decoding=decoding,
    )
    print(answer.strip())
    print("---")
    for line in trace.lines():
        print(line)
    if args.trace:
        text = json.dumps(trace.to_dict(), indent=1)
        write_text_atomically(Path(args.trace), text)
