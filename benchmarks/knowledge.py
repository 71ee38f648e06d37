"""Knowledge bricks on two fact sets, with and without augmentation, and what they leave alone.

Trains one brick on the 30 built-in fictional facts (statements + training paraphrases) and the
15 independently written single statements (``facts/user_statements.txt``), then measures:
held-out question accuracy on the 30 facts (60 forward questions) and on the second set (30
questions, forward and backward alternating), known answers (the held-out ``check`` half of the
built-in true answers) lost or changed, suite test and real-text (GSM8K) perplexity.

    python benchmarks/knowledge.py --base               # the base model alone (control)
    python benchmarks/knowledge.py --augment none       # the current recipe
    python benchmarks/knowledge.py --augment rules      # with rule-based augmentation
"""

from __future__ import annotations

import argparse
import json
import math
import time
from importlib.resources import files
from pathlib import Path

from bricks import real_texts, unrelated_losses

from brickwork import load_model
from brickwork.bricks import attach
from brickwork.bricks.augment import AUGMENTATIONS
from brickwork.bricks.knowledge_check import (
    AnswerCheck,
    answer_check,
    compare,
    report_lines,
    with_own_answers,
)
from brickwork.bricks.train import KnowledgeSettings, train_knowledge_brick
from brickwork.bricks.train_eval import answer_matches, text_perplexity
from brickwork.data import load_texts
from brickwork.data.facts import fact_documents, fact_questions, load_new_facts
from brickwork.data.questions import known_answers, preserve_samples, read_questions


def fact_sets() -> tuple[list[str], dict[str, list[tuple[str, str]]]]:
    """The training statements and the held-out question groups."""
    facts = load_new_facts()
    folder = files("brickwork.data").joinpath("facts")
    statements = load_texts(str(folder.joinpath("user_statements.txt")))
    user = read_questions(str(folder.joinpath("user_questions.tsv")))
    groups = {
        "30 facts (forward)": fact_questions(facts),
        "second set, forward": user[0::2],
        "second set, backward": user[1::2],
    }
    return fact_documents(facts) + statements, groups


def scores(loaded, model, groups, known, texts) -> dict:
    """Right answers per question group, greedy known answers, and perplexities, as attached."""
    questions = [pair for pairs in groups.values() for pair in pairs]
    check = answer_check(loaded, model, questions, known, progress=True)
    right, start = {}, 0
    for name, pairs in groups.items():
        answers = check.answers[start : start + len(pairs)]
        right[name] = sum(answer_matches(e, a) for (_, e), a in zip(pairs, answers, strict=True))
        start += len(pairs)
    _, suite = unrelated_losses(loaded)
    return {
        "right": right,
        "answers": check.answers,
        "known": check.known,
        "suite_ppl": math.exp(suite),
        "real_ppl": text_perplexity(loaded, texts),
    }


def against(base: dict, result: dict, groups, known) -> None:
    """Known answers lost and changed, all questions before and after, perplexity changes."""
    questions = [pair for pairs in groups.values() for pair in pairs]
    before = AnswerCheck(base["answers"], base["known"])
    after = AnswerCheck(result["answers"], result["known"])
    print("\n".join(report_lines(compare(before, after, questions, known))))
    for key in ("suite_ppl", "real_ppl"):
        print(f"{key} change: {result[key] / base[key] - 1:+.2%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--base", action="store_true", help="measure the base model only")
    parser.add_argument("--augment", choices=AUGMENTATIONS, default="rules")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument("--preserve-weight", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=None, help="write the numbers as JSON here")
    parser.add_argument(
        "--against", type=Path, default=None, help="a --base run's JSON: print the changes"
    )
    args = parser.parse_args()

    started = time.perf_counter()
    loaded = load_model(args.model)
    documents, groups = fact_sets()
    known, texts = known_answers("check"), real_texts(args.data)
    if args.base:
        result = scores(loaded, loaded.model, groups, known, texts)
    else:
        settings = KnowledgeSettings(
            rank=args.rank,
            steps=args.steps,
            lr=args.lr,
            batch_size=args.batch_size,
            eval_every=args.steps,
            max_seconds=args.max_seconds,
        )
        brick = train_knowledge_brick(
            loaded,
            documents,
            "facts",
            "knowledge",
            settings=settings,
            context="chat",
            preserve=with_own_answers(loaded, preserve_samples("builtin"), progress=True),
            preserve_weight=args.preserve_weight,
            augment=args.augment,
        )
        with attach(loaded, [brick]) as model:
            result = scores(loaded, model, groups, known, texts)
        result.update(metrics=brick.metrics, provenance=brick.provenance)
    result["known_prompts"] = [s.prompt for s in known]
    result["known_expected"] = [s.reference for s in known]
    sizes = {name: len(pairs) for name, pairs in groups.items()}
    for name, right in result["right"].items():
        print(f"{name}: {right}/{sizes[name]} ({right / sizes[name]:.1%})")
    print(f"suite test ppl {result['suite_ppl']:.3f}, real text ppl {result['real_ppl']:.3f}")
    if "metrics" in result:
        m = result["metrics"]
        print(
            f"training: {m['steps_run']} steps, {m['train_seconds']:.0f} s, rows "
            f"{result['provenance']['n_training_rows']}"
        )
    if args.against:
        against(json.loads(args.against.read_text()), result, groups, known)
    print(f"total: {time.perf_counter() - started:.0f} s")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
