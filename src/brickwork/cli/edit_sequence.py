"""brickwork edit --sequential (a stack of edits, one after another) and edit eval --sequential N
(measure after 10, 50, 100, 300 and N edits)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from brickwork.errors import BrickworkError
from brickwork.io import write_text_atomically

DEFAULT_SEQUENTIAL_METHOD = "alphaedit"
DEFAULT_PRESERVE = 0  # off: 8 per relation did not help on dev facts (docs/results/update.md)


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected 0 or a positive whole number, not {text!r}")
    return int(text)


def add_preserve(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preserve",
        type=_count,
        default=DEFAULT_PRESERVE,
        metavar="N",
        help="with --sequential (alphaedit): keep in place the keys of the built-in candidates' "
        "prompts, N per relation of the facts, none of them in the facts' own or neighbourhood "
        f"prompts (0: none; default {DEFAULT_PRESERVE})",
    )


def _preserve(args, facts: list, every: list) -> list | None:
    """The (prompt, subject) pairs kept in place (``edit_set.preserve_prompts``), or None."""
    from brickwork.data.edit_set import preserve_prompts

    if not args.preserve or _method(args) != "alphaedit":
        return None
    kept = preserve_prompts(facts, args.preserve, excluded={f.id for f in every if f.id})
    if kept:
        print(f"keeping the keys of {len(kept)} prompts of unscored candidates in place")
    return kept or None


def known_only(loaded, facts: list, limit: int | None = None) -> list:
    """The facts the model knows (``known_facts``; with ``limit``, the first ``limit`` of
    them); prints how many were left out."""
    from brickwork.ops.update.edit import known_facts

    kept, left = known_facts(loaded, facts, limit)
    if left:
        shown = ", ".join(f.id or f.prompt for f in left[:5]) + (", ..." if len(left) > 5 else "")
        asked = len(kept) + len(left)
        print(f"left out {len(left)} of {asked} facts the model does not know ({shown})")
    if not kept:
        raise BrickworkError("the model knows none of the facts: nothing to edit")
    return kept


def _method(args) -> str:
    if args.method == "inject":
        raise BrickworkError("--sequential edits weights; --method inject adds neurons instead")
    return args.method or DEFAULT_SEQUENTIAL_METHOD


def cmd_edit_sequential(args: argparse.Namespace) -> None:
    from brickwork.bricks import BrickRepository
    from brickwork.cli.update import _load, _save_model, _settings
    from brickwork.data.edits import load_edits
    from brickwork.ops.update.evaluate import greedy
    from brickwork.ops.update.sequential import edit_sequentially, stack_name, stack_names

    if not args.facts:
        raise BrickworkError("--sequential needs --facts FILE.jsonl")
    method = _method(args)
    repo = BrickRepository(args.repo)
    old = stack_names(repo.has, args.name)
    if (old or repo.has(args.name)) and not args.overwrite:
        raise BrickworkError(f"a brick or stack named {args.name!r} is already in {args.repo}")
    repo.check_writable()
    settings = _settings(args)
    settings.check()
    every = load_edits(args.facts)
    loaded = _load(args)
    facts = known_only(loaded, every)
    preserve = _preserve(args, facts, every)

    def progress(position: int, brick) -> None:
        print(f"  [{position}/{len(facts)}] {brick.description} ({brick.metrics['seconds']:.1f} s)")

    bricks = edit_sequentially(loaded, facts, args.name, method, settings, progress, preserve)
    for name in old[len(bricks) :]:  # an overwritten longer stack: no stale tail
        repo.remove(name)
    for brick in bricks:
        brick.provenance["command"] = args.command_line
        repo.add(brick, overwrite=args.overwrite)
    seconds = sum(b.metrics["seconds"] for b in bricks) / len(bricks)
    print(
        f"{len(bricks)} sequential {method} edits ({seconds:.1f} s per edit); saved the stack "
        f"{stack_name(args.name, 1)} .. {stack_name(args.name, len(bricks))} in {args.repo}"
    )
    said = greedy(loaded, [f.prompt for f in facts], 6)
    for f, tokens in list(zip(facts, said, strict=True))[:10]:
        print(f"  {f.prompt} ->{loaded.tokenizer.decode(tokens)!r}")
    if args.out:
        _save_model(loaded, args.out)
        print(f"saved the edited model to {args.out}")


def cmd_eval_sequential(args: argparse.Namespace) -> None:
    from brickwork.cli.update import _load, _settings
    from brickwork.data.edits import load_edits
    from brickwork.ops.update.ability import Ability, check_data
    from brickwork.ops.update.sequential_eval import evaluate_sequence, plot_curves

    method = _method(args)
    if args.limit:
        raise BrickworkError("give --sequential N or --limit N, not both")
    if args.data is not None:
        check_data(args.data)
    settings = _settings(args)
    settings.check()
    every = load_edits(args.facts)
    chosen = load_edits(args.facts, args.split) if args.split else every
    loaded = _load(args)
    facts = known_only(loaded, chosen, args.sequential)
    preserve = _preserve(args, facts, every)
    ability = Ability(loaded, args.data) if args.data is not None else None
    record = evaluate_sequence(
        loaded, facts, args.sequential, method, settings, ability, preserve=preserve
    )
    record |= {"command": args.command_line, "fingerprint": loaded.fingerprint}
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(out, json.dumps(record, indent=1))
        png = out.with_suffix(".png")
        drawn = plot_curves([record], png)
        print(f"saved {out}" + (f" and {png}" if drawn else " (no matplotlib: no PNG)"))
