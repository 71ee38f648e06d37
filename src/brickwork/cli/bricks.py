"""Commands for bricks: bricks list|show|verify|remove|extract|retrieve, and train
task|knowledge|steer."""

from __future__ import annotations

import argparse

from brickwork.errors import BrickworkError


def cmd_bricks(args: argparse.Namespace) -> None:
    from brickwork.bricks import BrickRepository

    if args.action in ("show", "remove") and not args.name:
        raise BrickworkError(f"bricks {args.action} needs a brick name")
    if args.action == "retrieve" and not args.name:
        raise BrickworkError('bricks retrieve needs an instruction, e.g. "translate to German"')
    if args.action == "extract" and not args.analysis:
        raise BrickworkError("bricks extract needs --analysis DIR (a brickwork analyze output)")
    repo = BrickRepository(args.repo, create=args.action == "extract")
    _BRICK_ACTIONS[args.action](repo, args)


def _bricks_list(repo, args) -> None:
    for meta in repo.search(kind=args.kind, purpose=args.purpose, text=args.text):
        print(f"{meta['name']:<40} {meta['kind']:<13} {meta['origin']:<10} {meta['purpose']}")


def _bricks_show(repo, args) -> None:
    import json

    brick = repo.get(args.name)
    shown = {
        k: getattr(brick, k)
        for k in (
            "name",
            "kind",
            "origin",
            "purpose",
            "base_model",
            "description",
            "spec",
            "provenance",
            "metrics",
        )
    }
    shown["tensors"] = {k: list(v.shape) for k, v in brick.tensors.items()}
    print(json.dumps(shown, indent=1, default=dict))  # a spec is a mapping


def _bricks_verify(repo, args) -> None:
    report = repo.verify()
    damaged = {name: files for name, files in report.items() if files}
    for name, files in damaged.items():
        print(f"DAMAGED {name}: {', '.join(files)}")
    print(f"{len(report) - len(damaged)} of {len(report)} bricks intact")
    if damaged:
        raise BrickworkError(f"{len(damaged)} damaged bricks in {args.repo}")


def _bricks_remove(repo, args) -> None:
    repo.remove(args.name)
    print(f"removed {args.name}")


def _bricks_extract(repo, args) -> None:
    import json

    from brickwork.bricks.extract import extract_bricks

    summary = extract_bricks(
        args.analysis,
        repo,
        n_groups=args.groups,
        methods=tuple(args.methods.split(",")),
        overwrite=args.overwrite,
    )
    print(json.dumps(summary, indent=1))


def _bricks_retrieve(repo, args) -> None:
    from brickwork.models import load_model
    from brickwork.ops.retrieval import retrieve

    loaded = load_model(args.model, trust_remote_code=args.trust_remote_code)
    for match in retrieve(loaded, repo, args.name, k=args.k, scoring=args.scoring):
        print(f"{match.score:7.4f}  {match.name:<40} {match.description}")


_BRICK_ACTIONS = {
    "list": _bricks_list,
    "show": _bricks_show,
    "verify": _bricks_verify,
    "remove": _bricks_remove,
    "extract": _bricks_extract,
    "retrieve": _bricks_retrieve,
}


def _add_bricks(commands) -> None:
    from brickwork.bricks.kinds import kind_filters
    from brickwork.models import DEFAULT_MODEL
    from brickwork.ops.scorings import DEFAULT_SCORING, SCORINGS

    bricks = commands.add_parser(
        "bricks", help="list, show, verify, remove, extract or retrieve bricks"
    )
    bricks.add_argument("action", choices=tuple(_BRICK_ACTIONS))
    bricks.add_argument("name", nargs="?", help="brick name (show, remove); instruction (retrieve)")
    bricks.add_argument("--repo", default="bricks", help="repository directory (default: bricks)")
    bricks.add_argument("--kind", choices=kind_filters(), help="list: only this kind")
    bricks.add_argument("--purpose", help="list: only this functionality or purpose")
    bricks.add_argument("--text", help="list: name, purpose or description contains this")
    bricks.add_argument("--analysis", help="extract: a brickwork analyze output directory")
    bricks.add_argument(
        "--groups", type=int, default=16, help="extract: groups (experts) per layer"
    )
    bricks.add_argument(
        "--methods",
        default="weights,coactivation",
        help="extract: grouping methods, comma-separated",
    )
    bricks.add_argument("--overwrite", action="store_true", help="extract: replace same names")
    bricks.add_argument("-k", type=int, default=3, help="retrieve: how many bricks")
    bricks.add_argument(
        "--scoring",
        choices=tuple(SCORINGS),
        default=DEFAULT_SCORING,
        help="retrieve: how to score bricks (see brickwork.ops.scorings)",
    )
    bricks.add_argument("--model", default=DEFAULT_MODEL, help="retrieve: the base model")
    bricks.add_argument("--trust-remote-code", action="store_true", help="retrieve")
    bricks.set_defaults(run=cmd_bricks)


def cmd_train(args: argparse.Namespace) -> None:
    from brickwork.bricks import BrickRepository
    from brickwork.data import load_texts
    from brickwork.models import load_model

    repo = BrickRepository(args.repo)  # fail on a bad repository before training
    if args.name in {m["name"] for m in repo.list()}:
        raise BrickworkError(f"a brick named {args.name!r} is already in {args.repo}")
    texts = {k: load_texts(getattr(args, k)) for k in ("positive", "negative") if getattr(args, k)}
    train = _task_data(args.data) if args.kind == "task" else None
    documents = load_texts(args.data) if args.kind == "knowledge" else None
    loaded = load_model(args.model, trust_remote_code=args.trust_remote_code)
    brick = _TRAINERS[args.kind](loaded, args, train, documents, texts)
    path = repo.add(brick)
    print(f"{brick.name}: {brick.metrics}")
    print(f"saved {path}")


def _train_task(loaded, args, data, documents, texts):
    from brickwork.bricks.train import LoraSettings, train_task_brick

    train, heldout = data
    return train_task_brick(
        loaded,
        train,
        heldout,
        args.name,
        args.purpose,
        settings=_lora_settings(LoraSettings, args),
        progress=not args.quiet,
    )


def _train_knowledge(loaded, args, data, documents, texts):
    from brickwork.bricks.train import KnowledgeSettings, train_knowledge_brick
    from brickwork.data import load_data

    preserve = load_data(args.preserve, split="train") if args.preserve else None
    return train_knowledge_brick(
        loaded,
        documents,
        args.name,
        args.purpose,
        settings=_lora_settings(KnowledgeSettings, args),
        progress=not args.quiet,
        context=args.context,
        preserve=preserve,
        preserve_weight=args.preserve_weight,
    )


def _lora_settings(cls, args):
    return cls(
        rank=args.rank, steps=args.steps, lr=args.lr, seed=args.seed, max_seconds=args.max_seconds
    )


def _train_steer(loaded, args, data, documents, texts):
    from brickwork.bricks.train import build_steering_brick

    if set(texts) != {"positive", "negative"} or not args.layers:
        raise BrickworkError("train steer needs --positive FILE, --negative FILE and --layers")
    layers = [int(x) for x in args.layers.split(",")]
    positive, negative = texts["positive"], texts["negative"]
    return build_steering_brick(
        loaded,
        positive,
        negative,
        layers,
        args.name,
        args.purpose,
        scale=args.scale,
        progress=not args.quiet,
    )


_TRAINERS = {"task": _train_task, "knowledge": _train_knowledge, "steer": _train_steer}


def _task_data(path: str | None):
    """(train, held-out) prompt/reference pairs from a JSONL file's train and test splits."""
    from brickwork.data import load_data

    if not path:
        raise BrickworkError("train task needs --data FILE.jsonl with prompt and reference fields")
    return load_data(path, split="train"), load_data(path, split="test")


def _add_train(commands) -> None:
    from brickwork.models import DEFAULT_MODEL

    train = commands.add_parser("train", help="build a customized brick (base model frozen)")
    train.add_argument("kind", choices=tuple(_TRAINERS))
    train.add_argument("--name", required=True, help="brick name")
    train.add_argument("--purpose", required=True, help="the task or knowledge it adds")
    train.add_argument(
        "--data",
        help="task: JSONL of prompt/reference pairs with train/test "
        "splits; knowledge: .txt (one document per line) or .jsonl with 'text'",
    )
    train.add_argument("--positive", help="steer: prompts showing the behaviour (.txt or .jsonl)")
    train.add_argument("--negative", help="steer: contrasting prompts")
    train.add_argument("--layers", help="steer: comma-separated decoder layer indices")
    train.add_argument("--scale", type=float, default=1.0, help="steer: vector scale")
    train.add_argument(
        "--context",
        choices=("plain", "chat"),
        default="plain",
        help="knowledge: learn documents as plain text or as chat answers",
    )
    train.add_argument(
        "--preserve",
        help="knowledge: keep behaviour on these samples' references (the train split of "
        "'builtin' or a JSONL with prompt/reference) by a KL term",
    )
    train.add_argument("--preserve-weight", type=float, default=1.0, help="knowledge: KL weight")
    train.add_argument("--repo", default="bricks", help="repository to add the brick to")
    train.add_argument("--model", default=DEFAULT_MODEL, help="base model")
    train.add_argument("--rank", type=int, default=8)
    train.add_argument("--steps", type=int, default=200)
    train.add_argument("--lr", type=float, default=5e-4)
    train.add_argument("--max-seconds", type=float, default=None)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--trust-remote-code", action="store_true")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(run=cmd_train)


def register(commands) -> None:
    _add_bricks(commands)
    _add_train(commands)
