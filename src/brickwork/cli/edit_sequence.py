"""brickwork edit --sequential (a stack of edits, one after another) and edit eval --sequential N
(measure after 10, 50, 100, 300 and N edits)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from brickwork.errors import BrickworkError
from brickwork.io import replace_atomically

DEFAULT_SEQUENTIAL_METHOD = "alphaedit"


def _method(args) -> str:
    if args.method == "inject":
        raise BrickworkError("--sequential edits weights; --method inject adds neurons instead")
    return args.method or DEFAULT_SEQUENTIAL_METHOD


def cmd_edit_sequential(args: argparse.Namespace) -> None:
    from brickwork.bricks import BrickRepository
    from brickwork.cli.update import _known, _load, _save_model, _settings
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
    facts = load_edits(args.facts)
    loaded = _load(args)
    facts = _known(loaded, facts)

    def progress(position: int, brick) -> None:
        print(f"  [{position}/{len(facts)}] {brick.description} ({brick.metrics['seconds']:.1f} s)")

    bricks = edit_sequentially(loaded, facts, args.name, method, settings, progress)
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
    from brickwork.cli.update import _known, _load, _settings
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
    facts = load_edits(args.facts)
    loaded = _load(args)
    facts = _known(loaded, facts)
    ability = Ability(loaded, args.data) if args.data is not None else None
    record = evaluate_sequence(loaded, facts, args.sequential, method, settings, ability)
    record |= {"command": args.command_line, "fingerprint": loaded.fingerprint}
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(record, indent=1)
        replace_atomically(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        png = out.with_suffix(".png")
        drawn = plot_curves([record], png)
        print(f"saved {out}" + (f" and {png}" if drawn else " (no matplotlib: no PNG)"))
