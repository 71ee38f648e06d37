"""Commands for updating bricks: locate (knowledge neurons, causal tracing), edit (ROME-style,
batch, injected neurons), edit eval (the built-in counterfactual set) and edit apply|rollback."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from brickwork.cli.edit_sequence import add_preserve, known_only
from brickwork.cli.options import (
    add_model,
    add_optional_repo,
    add_out,
    add_overwrite,
    add_repeatable,
    add_repo,
    model_options,
    nonblank,
    positive_int,
)
from brickwork.cli.settings import add_keywords, add_settings, keywords_from, settings_from
from brickwork.errors import BrickworkError
from brickwork.io import replace_dir_atomically, write_text_atomically

LOCATE_FLAGS = {"steps": "--ig-steps"}


def _load(args):
    from brickwork.models import load_model

    return load_model(args.model, **model_options(args))


def _settings(args):
    from brickwork.ops.update import EditSettings

    return settings_from(args, EditSettings)


def _save_model(loaded, out: str) -> None:
    """Save the (edited) model as a Hugging Face directory, atomically."""
    target = Path(out)
    if target.exists():
        raise BrickworkError(f"{target} already exists; choose a new --out")

    def write(tmp: Path) -> None:
        loaded.model.save_pretrained(tmp)
        loaded.tokenizer.save_pretrained(tmp)

    replace_dir_atomically(target, write)


def cmd_locate(args: argparse.Namespace) -> None:
    from brickwork.bricks import BrickRepository
    from brickwork.ops.update import causal_trace, knowledge_neurons

    if args.ig_steps < 1:
        raise BrickworkError(f"--ig-steps must be at least 1, not {args.ig_steps}")
    if args.method in ("trace", "both") and not args.subject:
        raise BrickworkError("causal tracing needs --subject (the words to corrupt)")
    if args.repo:  # checked before the model loads
        repo = BrickRepository(args.repo)
        for method in ("neurons", "trace"):
            name = f"{args.name}-{method}"
            if args.method in (method, "both") and repo.has(name) and not args.overwrite:
                raise BrickworkError(f"a brick named {name!r} is already in {args.repo}")
        repo.check_writable()
    loaded = _load(args)
    bricks = []
    if args.method in ("neurons", "both"):
        brick = knowledge_neurons(
            loaded,
            [args.fact, *args.paraphrase],
            args.answer,
            f"{args.name}-neurons",
            **keywords_from(args, LOCATE_FLAGS, LOCATE_FLAGS),
        )
        top = ", ".join(
            f"L{r['layer']}:{r['neuron']} ({r['score']:.2g})" for r in brick.spec["ranking"][:10]
        )
        print(
            f"knowledge neurons: {int(brick.tensors['mask'].sum())} shared by the prompts; "
            f"top: {top}"
        )
        bricks.append(brick)
    if args.method in ("trace", "both"):
        brick = causal_trace(loaded, args.fact, args.subject, args.answer, f"{args.name}-trace")
        s = brick.spec
        scores = brick.tensors["mlp_scores"]
        print(
            f"causal trace: P(answer) clean {s['p_clean']:.3f}, corrupted {s['p_corrupt']:.3f}; "
            f"best FFN layers: "
            + ", ".join(f"{i} (+{float(scores[i]):.3f})" for i in s["ranking"][:5])
        )
        bricks.append(brick)
    if args.repo:
        for brick in bricks:
            brick.provenance["command"] = args.command_line
            repo.add(brick, overwrite=args.overwrite)
        print(f"saved {', '.join(b.name for b in bricks)} in {args.repo}")


def _facts(args) -> list:
    from brickwork.data.edits import EditFact, load_edits

    if args.facts:
        return load_edits(args.facts)
    if not (args.fact and args.new and args.subject):
        raise BrickworkError("give --fact, --subject and --new (or --facts FILE.jsonl)")
    fact = {"prompt": args.fact, "subject": args.subject, "target_new": args.new}
    if args.keep:
        fact["keep"] = args.keep
    if args.old:
        fact["target_true"] = args.old
    if args.paraphrase:
        fact["paraphrases"] = args.paraphrase
    return [EditFact.from_dict(fact, "the command line")]


def cmd_edit(args: argparse.Namespace) -> None:
    from brickwork.bricks import BrickRepository
    from brickwork.bricks.brick import check_name
    from brickwork.ops.update import apply_edit, inject
    from brickwork.ops.update.edit_metrics import edit_metrics, format_metrics, keep_reference
    from brickwork.ops.update.store import layers

    if not args.repo:
        raise BrickworkError("give --repo: every edit is stored as a brick")
    if args.out and Path(args.out).exists():  # checked before the work, not after the brick
        raise BrickworkError(f"{args.out} already exists; choose a new --out")
    if args.out and args.method == "inject":
        raise BrickworkError("--out saves edited weights; injected neurons are a brick only")
    check_name(args.name)
    if args.sequential:
        from brickwork.cli.edit_sequence import cmd_edit_sequential

        return cmd_edit_sequential(args)
    args.method = args.method or "rome"
    facts = _facts(args)
    repo = BrickRepository(args.repo)
    if repo.has(args.name) and not args.overwrite:
        raise BrickworkError(f"a brick named {args.name!r} is already in {args.repo}")
    repo.check_writable()
    loaded = _load(args)
    facts = known_only(loaded, facts) if args.facts else facts
    if args.method == "inject":
        brick = inject(loaded, facts, args.name, _settings(args))
    else:
        from brickwork.ops.update import edit
        from brickwork.ops.update.methods import EDIT_METHODS

        settings = _settings(args)
        solver = EDIT_METHODS[args.method].prepare(loaded, settings)(None)
        brick = edit(loaded, facts, args.name, settings, solver=solver, method=args.method)
    reference = keep_reference(loaded, facts)  # the model is still unedited here
    if args.method == "inject":
        from brickwork.ops.update import attach_neurons

        with attach_neurons(loaded, brick):
            measured = edit_metrics(loaded, facts, reference)
    else:
        apply_edit(loaded, brick)
        measured = edit_metrics(loaded, facts, reference)
    brick.metrics["after_edit"] = measured
    brick.provenance["command"] = args.command_line
    repo.add(brick, overwrite=args.overwrite)
    changed = layers(brick)
    where = ("layers " if len(changed) > 1 else "layer ") + ", ".join(map(str, changed))
    print(
        f"{brick.spec['update']} edit of {where} in "
        f"{brick.metrics['seconds']:.1f} s; saved brick {brick.name!r} in {args.repo} "
        f"(a delta brick: attach it with generate --brick {brick.name} --repo {args.repo})"
    )
    print("\n".join(format_metrics(measured)))
    if args.out:
        _save_model(loaded, args.out)
        print(f"saved the edited model to {args.out}")
    else:
        print("no model copy written (give --out DIR to save the edited model)")


def cmd_apply_rollback(args: argparse.Namespace) -> None:
    from brickwork.bricks import BrickRepository
    from brickwork.ops.update.sequential import apply_stack, roll_back, stack_names

    action, last = args.edit_action, getattr(args, "last", None)
    repo = BrickRepository(args.repo, create=False)
    names = [args.name] if repo.has(args.name) else stack_names(repo.has, args.name)
    if not names:
        raise BrickworkError(f"no edit brick or stack named {args.name!r} in {args.repo}")
    if last is not None and last > len(names):
        raise BrickworkError(f"--last {last}: {args.name!r} holds {len(names)} edit(s)")
    bricks = [repo.get(name) for name in names]
    loaded = _load(args)
    if action == "apply":
        apply_stack(loaded, bricks)
    else:
        roll_back(loaded, bricks, last)
    _save_model(loaded, args.out)
    what = repr(args.name) if len(names) == 1 else f"{last or len(names)} edit(s) of {args.name!r}"
    print(f"{action} {what}: model {loaded.fingerprint} saved to {args.out}")


EVAL_KEYS = (
    "reliability",
    "reliability_gen",
    "generalization",
    "generalization_gen",
    "generalization_prefixed",
    "generalization_inside",
    "generalization_known",
    "generalization_known_gen",
    "locality",
    "locality_gen",
    "locality_unrelated",
    "locality_unrelated_gen",
)


def print_comparison(before: dict, after: dict) -> None:
    for key in EVAL_KEYS:
        if key in after:
            print(f"{key:<26} {before[key]:7.1%} -> {after[key]:7.1%}")


def cmd_edit_eval(args: argparse.Namespace) -> None:
    from brickwork.data.edits import load_edits
    from brickwork.ops.update import edit
    from brickwork.ops.update.evaluate import (
        fact_metrics,
        known_paraphrases,
        neighbourhood_reference,
        summarize,
    )
    from brickwork.ops.update.store import apply_edit, rollback

    if args.sequential:
        from brickwork.cli.edit_sequence import cmd_eval_sequential

        return cmd_eval_sequential(args)
    facts = load_edits(args.facts, args.split)  # a bad set or split: before the model loads
    loaded = _load(args)
    facts = known_only(loaded, facts[: args.limit] if args.limit else facts)
    reference, known = neighbourhood_reference(loaded, facts), known_paraphrases(loaded, facts)
    before = summarize(fact_metrics(loaded, facts, reference, known=known))
    rows, seconds = [], []
    for i, fact in enumerate(facts):
        brick = edit(loaded, [fact], f"eval-{i}", _settings(args))
        apply_edit(loaded, brick)
        rows += fact_metrics(loaded, [fact], reference, known=known)
        rollback(loaded, brick)
        seconds.append(brick.metrics["seconds"])
    after = summarize(rows)
    print_comparison(before, after)
    print(f"{len(facts)} single edits, {sum(seconds) / len(seconds):.1f} s per edit")

    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        record = {
            "before": before,
            "after": after,
            "rows": rows,
            "seconds": seconds,
            "command": args.command_line,
            "fingerprint": loaded.fingerprint,
        }
        text = json.dumps(record, indent=1)
        write_text_atomically(Path(args.out), text)
        print(f"saved {args.out}")


def _add_locate(commands) -> None:
    from brickwork.ops.update import knowledge_neurons

    locate = commands.add_parser("locate", help="find the neurons and layers that hold a fact")
    add_model(locate)
    locate.add_argument("--fact", required=True, help='the prompt, e.g. "The capital of France is"')
    locate.add_argument(
        "--answer", required=True, type=nonblank, help="the answer the model gives, e.g. Paris"
    )
    locate.add_argument("--subject", help="the subject in the prompt (causal tracing corrupts it)")
    add_repeatable(locate, "--paraphrase", "another prompt for the same fact (repeatable)")
    locate.add_argument(
        "--method",
        choices=("neurons", "trace", "both"),
        default="both",
        help="knowledge neurons (integrated gradients), causal tracing or both",
    )
    helps = {"steps": "integrated-gradient steps"}
    add_keywords(locate, knowledge_neurons, helps, flags=LOCATE_FLAGS)
    add_optional_repo(locate, "store the results as bricks here")
    locate.add_argument("--name", default="located", help="brick name prefix")
    add_overwrite(locate)
    locate.set_defaults(run=cmd_locate)


def _add_edit(commands) -> argparse.ArgumentParser:
    from brickwork.ops.update import EditSettings
    from brickwork.ops.update.methods import EDIT_METHODS

    edit = commands.add_parser(
        "edit", help="edit a fact in place (a delta brick), or: eval, apply, rollback"
    )
    add_model(edit)
    edit.add_argument("--fact", help='the prompt, e.g. "The capital of France is"')
    edit.add_argument("--subject", help="the subject in the prompt, e.g. France")
    edit.add_argument("--new", help="the new answer, e.g. Rome")
    edit.add_argument("--old", help="the answer the model gives now (checked)")
    add_repeatable(
        edit,
        "--keep",
        'a text whose predictions must not change, e.g. "The capital of Italy is Rome" '
        "(repeatable; in a --facts file: a 'keep' list per fact)",
    )
    add_repeatable(
        edit,
        "--paraphrase",
        "another prompt for the same fact, for the generalization metric (repeatable)",
    )
    edit.add_argument("--facts", help="a JSONL edit set instead (several facts: batch edit)")
    edit.add_argument(
        "--method",
        choices=(*EDIT_METHODS, "inject"),
        help="rome: a rank-one weight update (the default for one edit); alphaedit: the update "
        "in the null space of the kept keys (the default with --sequential); inject: new "
        "neurons (a brick)",
    )
    edit.add_argument(
        "--sequential",
        action="store_true",
        help="with --facts: edit the facts one after another, each on the edited model, as a "
        "stack of bricks NAME-0001, NAME-0002, ...",
    )
    add_preserve(edit)
    add_optional_repo(edit, "brick repository for the delta brick (required)")
    edit.add_argument("--name", default="edit", help="name of the edit brick")
    add_overwrite(edit)
    add_out(edit, "also save the edited model directory here", required=False)
    add_settings(edit, EditSettings)
    edit.set_defaults(run=cmd_edit)
    return edit


def _add_edit_actions(edit: argparse.ArgumentParser) -> None:
    from brickwork.data.edits import EDIT_SPLITS
    from brickwork.ops.update import EditSettings
    from brickwork.ops.update.methods import EDIT_METHODS

    actions = edit.add_subparsers(dest="edit_action", metavar="ACTION")
    evaluate = actions.add_parser("eval", help="single edits over the built-in counterfactual set")
    add_model(evaluate)
    add_settings(evaluate, EditSettings)
    evaluate.add_argument("--facts", help="a JSONL edit set (None: the built-in one)")
    evaluate.add_argument("--limit", type=positive_int, help="only the first N facts (None: all)")
    evaluate.add_argument("--split", choices=EDIT_SPLITS, help="only the set's facts of this split")
    evaluate.add_argument(
        "--sequential",
        type=positive_int,
        metavar="N",
        help="edit the first N known facts one after another, measuring after 10, 50, 100, 300 "
        "and N edits (every edit so far); with --out, a PNG of the curves beside the JSON",
    )
    evaluate.add_argument(
        "--method", choices=tuple(EDIT_METHODS), help="with --sequential (default: alphaedit)"
    )
    evaluate.add_argument(
        "--data", type=Path, help="with --sequential: folder with mmlu/ and gsm8k_test.jsonl"
    )
    add_preserve(evaluate)
    add_out(evaluate, "write the per-fact results as JSON", required=False)
    evaluate.set_defaults(run=cmd_edit_eval)
    for action in ("apply", "rollback"):
        command = actions.add_parser(action, help=f"{action} a stored edit and save the model")
        add_model(command)
        add_repo(command, "brick repository holding the edit", default=None)
        command.add_argument("--name", required=True, help="the edit brick, or a stack's name")
        if action == "rollback":
            command.add_argument(
                "--last", type=positive_int, help="of a stack: only its last K edits (all)"
            )
        add_out(command, "new model directory")
        command.set_defaults(run=cmd_apply_rollback)


def register(commands) -> None:
    _add_locate(commands)
    _add_edit_actions(_add_edit(commands))
