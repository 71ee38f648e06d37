"""Commands for bricks in a repository: bricks list|show|verify|gc|remove|extract|retrieve|push|
pull."""

from __future__ import annotations

import argparse
import sys

from brickwork.cli.display import add_json, print_json, print_record, print_table
from brickwork.cli.options import add_model, add_overwrite, add_repo, model_options
from brickwork.cli.settings import add_keywords, keywords_from
from brickwork.errors import BrickworkError

EXTRACT_FLAGS = {"n_groups": "--groups"}
RETRIEVE_FLAGS = {"k": "-k"}
SHOWN = ("name", "kind", "origin", "purpose", "base_model", "description", "spec")


def _repo(args, create: bool = False):
    from brickwork.bricks import BrickRepository

    return BrickRepository(args.repo, create=create)


def cmd_list(args: argparse.Namespace) -> None:
    repo = _repo(args)
    found = repo.search(kind=args.kind, purpose=args.purpose, text=args.text)
    if args.json:
        print_json(found)
    else:
        print_table(found, ["name", "kind", "origin", "purpose"])
    for name, why in repo.skipped.items():
        print(f"warning: skipped brick {name}: {why}", file=sys.stderr)


def cmd_show(args: argparse.Namespace) -> None:
    brick = _repo(args).get(args.name)
    shown = {k: getattr(brick, k) for k in (*SHOWN, "provenance", "metrics")}
    shown["tensors"] = {k: list(v.shape) for k, v in brick.tensors.items()}
    shown["spec"] = dict(shown["spec"])
    if args.json:
        print_json(shown)
    else:
        print_record(shown)


def cmd_verify(args: argparse.Namespace) -> None:
    repo = _repo(args)
    report = repo.verify()
    damaged = {name: files for name, files in report.items() if files}
    for name, files in damaged.items():
        print(f"DAMAGED {name}: {', '.join(files)}")
    print(f"{len(report) - len(damaged)} of {len(report)} bricks intact")
    for path in repo.leftovers():
        print(f"LEFTOVER {path.name} (an interrupted write; `brickwork bricks gc` removes it)")
    if damaged:
        raise BrickworkError(f"{len(damaged)} damaged bricks in {args.repo}")


def cmd_gc(args: argparse.Namespace) -> None:
    deleted = _repo(args).gc()
    for path in deleted:
        print(f"deleted {path.name}")
    print(f"{len(deleted)} leftover directories deleted")


def cmd_remove(args: argparse.Namespace) -> None:
    _repo(args).remove(args.name)
    print(f"removed {args.name}")


def cmd_extract(args: argparse.Namespace) -> None:
    from pathlib import Path

    from brickwork.analysis.store import RESULTS_FILE
    from brickwork.bricks.extract import extract_bricks

    if not (Path(args.analysis) / RESULTS_FILE).is_file():  # before the repository is made
        raise BrickworkError(f"{args.analysis} is not an analysis: {RESULTS_FILE} is missing")
    summary = extract_bricks(
        args.analysis,
        _repo(args, create=True),
        **keywords_from(args, ("n_groups", "methods"), EXTRACT_FLAGS),
        model=args.model,
        overwrite=args.overwrite,
        **model_options(args),
    )
    if args.json:
        print_json(summary)
        return
    print(f"neuron-set bricks: {len(summary['neuron_sets'])}")
    rows = [{"method": m, **g} for m, g in summary["groups"].items()]
    print_table(rows, ["method", "bricks", "groups_per_layer", "group_size"])
    for method, groups in summary["groups"].items():
        print(f"{method} concentration (top 2 groups' share of each set's neurons):")
        print_record(groups["concentration_top2"], "  ")
    print(f"added to {args.repo} (`brickwork bricks list --repo {args.repo}`)")


def cmd_retrieve(args: argparse.Namespace) -> None:
    from brickwork.models import load_model
    from brickwork.ops.retrieval import retrieve

    repo = _repo(args)
    loaded = load_model(args.model, **model_options(args))
    from brickwork.ops.typicality import NO_FIT

    matches = retrieve(loaded, repo, args.instruction, k=args.k, scoring=args.scoring)
    print(f"{'score':>7}  {'fit':>5}  {'brick':<40} description")
    for match in matches:
        fit = "  n/a" if match.fit is None else f"{match.fit:5.2f}"
        print(f"{match.score:7.4f}  {fit}  {match.name:<40} {match.description}")
    best = max((m.fit for m in matches if m.fit is not None), default=None)
    if best is not None and best < NO_FIT:
        print(
            f"note: no brick fits this instruction (best fit {best:.2f}: it is farther from every "
            "brick than almost all of the brick's own training prompts)"
        )


def cmd_push(args: argparse.Namespace) -> None:
    from brickwork.bricks.hub import push_brick

    brick = _repo(args).get(args.name)
    push_brick(brick, args.to, private=args.private)
    print(f"pushed {args.name} to https://huggingface.co/{args.to} (with a model card)")


def cmd_pull(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from brickwork.bricks.hub import pull_brick

    repo = _repo(args, create=True)
    if args.name and repo.has(args.name) and not args.overwrite:
        raise BrickworkError(f"a brick named {args.name!r} is already in {args.repo}")
    brick = pull_brick(args.hub_id, revision=args.revision)
    if args.name:
        brick = replace(brick, name=args.name)
    brick.provenance["pulled_from"] = f"{args.hub_id}@{args.revision or 'main'}"
    path = repo.add(brick, overwrite=args.overwrite)
    print(f"pulled {args.hub_id} as {brick.name} ({brick.kind}) into {path}")


def _add_hub(actions) -> None:
    push = actions.add_parser("push", help="upload a brick to the Hugging Face Hub, with a card")
    push.add_argument("name", metavar="NAME", help="the brick's name")
    push.add_argument("--to", required=True, metavar="HUB_ID", help="Hub repository, user/name")
    push.add_argument("--private", action="store_true", help="create the Hub repository private")
    add_repo(push)
    push.set_defaults(run=cmd_push)
    pull = actions.add_parser("pull", help="download a brick from the Hub into the repository")
    pull.add_argument("hub_id", metavar="HUB_ID", help="Hub repository, user/name")
    pull.add_argument("--name", help="store it under this name (default: its own)")
    pull.add_argument("--revision", help="branch, tag or commit (default: main)")
    add_repo(pull)
    add_overwrite(pull)
    pull.set_defaults(run=cmd_pull)


def _add_extract(actions) -> None:
    from brickwork.bricks.extract import GROUP_METHODS, extract_bricks

    extract = actions.add_parser("extract", help="neuron-set and neuron-group bricks")
    extract.add_argument("--analysis", required=True, help="a `brickwork analyze` output directory")
    add_repo(extract)
    helps = {"n_groups": "groups (experts) per layer", "methods": "grouping methods"}
    add_keywords(
        extract, extract_bricks, helps, flags=EXTRACT_FLAGS, choices={"methods": GROUP_METHODS}
    )
    add_model(extract, "model for the weight groups (None: the analysed one)", default=None)
    add_overwrite(extract, "replace bricks of the same names")
    add_json(extract)
    extract.set_defaults(run=cmd_extract)


def _add_retrieve(actions) -> None:
    from brickwork.ops.retrieval import retrieve
    from brickwork.ops.scorings import SCORINGS

    command = actions.add_parser("retrieve", help="the bricks that fit an instruction best")
    command.add_argument("instruction", help='e.g. "translate to German"')
    add_repo(command)
    helps = {"k": "how many bricks", "scoring": "how to score bricks (brickwork.ops.scorings)"}
    add_keywords(
        command, retrieve, helps, flags=RETRIEVE_FLAGS, choices={"scoring": tuple(SCORINGS)}
    )
    add_model(command)
    command.set_defaults(run=cmd_retrieve)


def register(commands) -> None:
    """``bricks`` and its actions, each a subcommand with its own options."""
    from brickwork.bricks.kinds import kind_filters

    bricks = commands.add_parser(
        "bricks", help="list, show, verify, gc, remove, extract, retrieve, push or pull bricks"
    )
    actions = bricks.add_subparsers(dest="action", required=True, metavar="ACTION")
    listed = actions.add_parser("list", help="the bricks in a repository")
    add_repo(listed)
    listed.add_argument("--kind", choices=kind_filters(), help="only this kind")
    listed.add_argument("--purpose", help="only this functionality or purpose")
    listed.add_argument("--text", help="name, purpose or description contains this")
    add_json(listed)
    listed.set_defaults(run=cmd_list)
    for name, run, text in (
        ("show", cmd_show, "a brick's record and tensor shapes"),
        ("remove", cmd_remove, "remove a brick"),
    ):
        command = actions.add_parser(name, help=text)
        command.add_argument("name", metavar="NAME", help="the brick's name")
        add_repo(command)
        if run is cmd_show:
            add_json(command)
        command.set_defaults(run=run)
    verify = actions.add_parser("verify", help="check every brick's files against its hashes")
    add_repo(verify)
    verify.set_defaults(run=cmd_verify)
    gc = actions.add_parser("gc", help="delete what interrupted writes left (hidden directories)")
    add_repo(gc)
    gc.set_defaults(run=cmd_gc)
    _add_extract(actions)
    _add_retrieve(actions)
    _add_hub(actions)
