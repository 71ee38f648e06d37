"""Commands that build customized bricks with the base model frozen: train task|knowledge|steer."""

from __future__ import annotations

import argparse

from brickwork.bricks.augment import AUGMENTATIONS
from brickwork.cli.common import close_process_group, is_main_process
from brickwork.cli.options import (
    add_model,
    add_quiet,
    add_repo,
    allow_auto_batch_size,
    indices,
    model_options,
    nonblank,
    resolve_batch_size,
)
from brickwork.cli.settings import add_keywords, add_settings, keywords_from, settings_from
from brickwork.errors import BrickworkError

# The LoRA settings a task or knowledge brick takes from the command line.
LORA_OPTIONS = (
    "rank",
    "alpha",
    "dropout",
    "target_modules",
    "steps",
    "lr",
    "batch_size",
    "seed",
    "eval_every",
    "max_seconds",
)
KNOWLEDGE_OPTIONS = {
    "context": "learn documents as plain text or as chat answers",
    "preserve_weight": "weight of the KL term on the --preserve samples",
    "augment": "add rule-made rewrites and two-way question/answer pairs of each parsed statement",
}


def _start(args):
    """The repository, checked before any training: a brick of that name is refused. Under
    torchrun (LoRA bricks) the processes join one group: data-parallel training, rank 0 saves."""
    from brickwork.bricks import BrickRepository
    from brickwork.training.distributed import join_torchrun

    if args.kind != "steer":
        join_torchrun()
    repo = BrickRepository(args.repo)
    if repo.has(args.name):  # also refuses an invalid name
        raise BrickworkError(f"a brick named {args.name!r} is already in {args.repo}")
    repo.check_writable()
    return repo


# Training prompts embedded for retrieval at most (`brickwork describe` can replace it).
EMBEDDED_PROMPTS = 256


def _build(repo, args, build, *inputs, settings=None, loaded=None, embed=None, **options):
    """``build(model, *inputs, name, purpose, progress=..., settings=..., **options)``, the brick
    saved in ``repo`` (by rank 0 under torchrun). The model is loaded only now, after the
    repository and the inputs are checked; ``settings`` (a class) is read from ``args`` after it,
    once ``--batch-size auto`` is resolved. With ``embed`` (its training prompts) the brick
    carries a purpose embedding of them and its purpose (retrieval finds it). Returns the brick."""
    from brickwork.cli.display import print_record
    from brickwork.cli.options import record_invocation

    try:
        loaded = loaded or _load(args)
        if settings is not None:
            options["settings"] = settings_from(args, settings)
        brick = build(loaded, *inputs, args.name, args.purpose, progress=not args.quiet, **options)
        if embed:
            from brickwork.ops.route import with_embedding

            brick = with_embedding(loaded, brick, embed[:EMBEDDED_PROMPTS], args.purpose)
        record_invocation(brick.provenance, args)
        if is_main_process():
            path = repo.add(brick)
            print(f"brick {brick.name} ({brick.kind}):")
            print_record(brick.metrics, "  ")
            print(f"saved {path}")
    finally:
        close_process_group()
    return brick


def _load(args):
    from brickwork.bricks.train_eval import MAX_PROMPT_TOKENS, MAX_TARGET_TOKENS
    from brickwork.models import load_model

    loaded = load_model(args.model, **model_options(args))
    if "batch_size" in args:
        tokens = MAX_PROMPT_TOKENS + MAX_TARGET_TOKENS
        resolve_batch_size(args, loaded, tokens, training=True)
    return loaded


def cmd_task(args: argparse.Namespace) -> None:
    from brickwork.bricks.train import LoraSettings, train_task_brick
    from brickwork.data import load_data

    repo = _start(args)
    train, heldout = load_data(args.data, split="train"), load_data(args.data, split="test")
    prompts = [sample.prompt for sample in train]
    _build(repo, args, train_task_brick, train, heldout, settings=LoraSettings, embed=prompts)


def cmd_knowledge(args: argparse.Namespace) -> None:
    from brickwork.bricks import attach
    from brickwork.bricks.knowledge_check import (
        answer_check,
        compare,
        report_lines,
        with_own_answers,
    )
    from brickwork.bricks.train import KnowledgeSettings, train_knowledge_brick
    from brickwork.data import load_texts
    from brickwork.data.questions import known_answers, preserve_samples, read_questions

    repo = _start(args)
    documents = load_texts(args.data)
    questions = read_questions(args.eval) if args.eval else None
    preserve = preserve_samples(args.preserve) if args.preserve else None
    loaded = _load(args)
    if preserve:
        preserve = with_own_answers(loaded, preserve, progress=not args.quiet)
    known = known_answers("check") if questions else []
    if questions:
        before = answer_check(loaded, loaded.model, questions, known, progress=not args.quiet)
    options = {**keywords_from(args, KNOWLEDGE_OPTIONS), "preserve": preserve}
    brick = _build(
        repo,
        args,
        train_knowledge_brick,
        documents,
        settings=KnowledgeSettings,
        loaded=loaded,
        embed=documents,
        **options,
    )
    if questions and is_main_process():
        with attach(loaded, [brick]) as model:
            after = answer_check(loaded, model, questions, known, progress=not args.quiet)
        print("\n".join(report_lines(compare(before, after, questions, known))))


def cmd_steer(args: argparse.Namespace) -> None:
    from brickwork.bricks.plugins import check_steering_numbers
    from brickwork.bricks.train import build_steering_brick
    from brickwork.data import load_texts

    repo = _start(args)
    check_steering_numbers(args.name, None, args.scale)
    positive, negative = load_texts(args.positive), load_texts(args.negative)
    _build(repo, args, build_steering_brick, positive, negative, args.layers, scale=args.scale)


def _command(kinds, kind: str, help: str, purpose: str) -> argparse.ArgumentParser:
    """A ``train`` subcommand with the options every kind shares."""
    command = kinds.add_parser(kind, help=help)
    command.add_argument("--name", required=True, help="brick name")
    command.add_argument("--purpose", required=True, type=nonblank, help=purpose)
    add_repo(command, "repository to add the brick to")
    add_model(command)
    add_quiet(command)
    return command


def _add_lora(command: argparse.ArgumentParser, settings: type) -> None:
    """The LoRA settings a brick kind trains with (its defaults and help)."""
    add_settings(command, settings, only=LORA_OPTIONS)
    allow_auto_batch_size(command)


def register(commands) -> None:
    from brickwork.bricks.train import (
        KnowledgeSettings,
        LoraSettings,
        build_steering_brick,
        train_knowledge_brick,
    )

    train = commands.add_parser("train", help="build a customized brick (base model frozen)")
    kinds = train.add_subparsers(dest="kind", required=True, metavar="KIND")
    task = _command(kinds, "task", "a LoRA task brick from prompt/reference pairs", "the task")
    task.add_argument(
        "--data", required=True, help="JSONL of prompt/reference pairs with train/test splits"
    )
    _add_lora(task, LoraSettings)
    task.set_defaults(run=cmd_task)

    knowledge = _command(
        kinds, "knowledge", "a LoRA knowledge brick from documents", "the knowledge it adds"
    )
    knowledge.add_argument(
        "--data", required=True, help=".txt (one document per line) or .jsonl with 'text'"
    )
    _add_lora(knowledge, KnowledgeSettings)
    knowledge.add_argument(
        "--preserve",
        help="keep behaviour on these samples' references by a KL term: 'builtin' (the suite's "
        "train split and half of the built-in known answers, kept as the model answers them) or a "
        "JSONL with prompt/reference",
    )
    knowledge.add_argument(
        "--eval",
        metavar="QUESTIONS.tsv",
        help="question<TAB>expected answer lines: print answer accuracy before and after, and "
        "the share of held-out known answers the brick changes",
    )
    add_keywords(
        knowledge,
        train_knowledge_brick,
        KNOWLEDGE_OPTIONS,
        choices={"context": ("plain", "chat"), "augment": AUGMENTATIONS},
    )
    knowledge.set_defaults(run=cmd_knowledge)

    steer = _command(kinds, "steer", "a mean-difference steering brick", "the behaviour")
    steer.add_argument("--positive", required=True, help="prompts showing the behaviour")
    steer.add_argument("--negative", required=True, help="contrasting prompts (.txt or .jsonl)")
    steer.add_argument(
        "--layers", type=indices, required=True, help="comma-separated decoder layer indices"
    )
    add_keywords(steer, build_steering_brick, {"scale": "vector scale"})
    steer.set_defaults(run=cmd_steer)
