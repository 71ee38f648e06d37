"""Customized bricks on the default model: a task LoRA and a knowledge LoRA, before and after.

1. Task brick: English -> German translation of Multi30k captions (``--data``, line-aligned
   ``multi30k_test2016.en.txt`` / ``.de.txt``): train on the first ``--train-pairs`` pairs, hold out
   the next ``--heldout-pairs``. Reports the held-out response loss and perplexity, and chrF of
   greedy translations of the first ``--generate`` held-out captions, without and with the brick.
2. Knowledge brick: the 30 fictional facts (``brickwork.data.facts``), trained on statements and
   their training paraphrases. Reports accuracy on the held-out question paraphrases and the
   perplexity of unrelated text (the built-in suite's test references) without and with it.

    .venv/bin/python benchmarks/bricks.py [--data ../shared/data] [--save-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from brickwork import load_builtin_suite, load_model
from brickwork.analysis.loss import functionality_losses, reference_batches
from brickwork.bricks import attach, save_brick
from brickwork.bricks.train import (
    KnowledgeSettings,
    LoraSettings,
    train_knowledge_brick,
    train_task_brick,
)
from brickwork.bricks.train_eval import (
    answer_matches,
    chrf,
    generate_answers,
    response_loss,
    text_perplexity,
)
from brickwork.data import FUNCTIONALITIES, Sample
from brickwork.data.facts import fact_documents, fact_questions, load_new_facts

KNOWLEDGE_TOKENS = 48  # long enough for a full sentence that names the answer
PROMPT = "Translate this English sentence into German:\n{en}"


def translation_samples(data: Path, start: int, count: int) -> list[Sample]:
    english = (data / "multi30k_test2016.en.txt").read_text(encoding="utf-8").splitlines()
    german = (data / "multi30k_test2016.de.txt").read_text(encoding="utf-8").splitlines()
    return [
        Sample(
            f"multi30k-{i}",
            PROMPT.format(en=english[i].strip()),
            "translation",
            reference=german[i].strip(),
        )
        for i in range(start, start + count)
    ]


def translation_scores(loaded, model, samples: list[Sample], n_generate: int) -> dict:
    """Held-out response loss and chrF of greedy translations, with whatever is attached."""
    started = time.perf_counter()
    loss = response_loss(loaded, samples)
    chosen = samples[:n_generate]
    outputs = generate_answers(
        model, loaded.tokenizer, [s.prompt for s in chosen], max_new_tokens=48, progress=True
    )
    outputs = [o.strip().split("\n")[0] for o in outputs]
    score = chrf(outputs, [s.reference for s in chosen])
    return {
        "loss": loss,
        "ppl": math.exp(loss),
        "chrf": score,
        "examples": outputs[:3],
        "seconds": time.perf_counter() - started,
    }


def task_benchmark(loaded, args) -> tuple[list[str], object]:
    train = translation_samples(args.data, 0, args.train_pairs)
    heldout = translation_samples(args.data, args.train_pairs, args.heldout_pairs)
    before = translation_scores(loaded, loaded.model, heldout, args.generate)
    brick = train_task_brick(
        loaded,
        train,
        heldout,
        "multi30k-en-de",
        "translation",
        settings=LoraSettings(
            rank=args.rank,
            steps=args.task_steps,
            lr=args.task_lr,
            batch_size=8,
            eval_every=args.task_eval_every,
            max_seconds=args.task_seconds,
        ),
    )
    with attach(loaded, [brick]) as model:
        after = translation_scores(loaded, model, heldout, args.generate)
    m = brick.metrics
    lines = [
        f"### Task brick: Multi30k English->German ({args.train_pairs} train pairs, "
        f"{args.heldout_pairs} held out, chrF on {args.generate})",
        "",
        "| metric (held out) | base model | with brick | ratio |",
        "|---|---|---|---|",
        _row("response loss (nats/token)", before["loss"], after["loss"]),
        _row("response perplexity", before["ppl"], after["ppl"]),
        _row("chrF (greedy, 0-100)", before["chrf"], after["chrf"]),
        "",
        f"Training: {m['steps_run']} steps x batch 8, rank {args.rank}, lr {args.task_lr}, "
        f"{m['train_seconds']:.0f} s (evaluations included); best held-out loss at step "
        f"{m['best_step']}. Brick metrics: loss {m['heldout_loss_before']:.4f} -> "
        f"{m['heldout_loss_after']:.4f}. Evaluation time: {before['seconds']:.0f} s before, "
        f"{after['seconds']:.0f} s after.",
        "",
        "Sample translations (first held-out captions):",
        "",
        *[
            f"- `{s.prompt.splitlines()[-1]}` -> before: `{b}` / after: `{a}` "
            f"(ref: `{s.reference}`)"
            for s, b, a in zip(heldout, before["examples"], after["examples"], strict=False)
        ],
    ]
    return lines, brick


def unrelated_losses(loaded) -> tuple[list[float], float]:
    """Per-functionality and overall (token-weighted) reference loss on the suite's test split."""
    samples = load_builtin_suite("test")
    batches = reference_batches(loaded.tokenizer, samples, list(FUNCTIONALITIES))
    per = functionality_losses(loaded, batches, len(FUNCTIONALITIES))
    counts = sum(torch.bincount(b.groups, minlength=len(FUNCTIONALITIES)) for b in batches)
    overall = float((per * counts).sum() / counts.sum())
    return per.tolist(), overall


def real_texts(data: Path, count: int = 100) -> list[str]:
    """Unrelated real text that no brick sees in training: GSM8K problems with their solutions."""
    path = data / "gsm8k_test.jsonl"
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:count]]
    return [f"{row['question']}\n{row['answer']}" for row in rows]


def knowledge_scores(loaded, model, facts, questions, texts) -> dict:
    """Held-out question accuracy (overall and facts with every question right) and unrelated-text
    losses, with whatever is attached."""
    answers = generate_answers(
        model,
        loaded.tokenizer,
        [q for q, _ in questions],
        max_new_tokens=KNOWLEDGE_TOKENS,
        progress=True,
    )
    hits = [answer_matches(a, g) for (_, a), g in zip(questions, answers, strict=True)]
    owners = [fact.id for fact in facts for _ in fact.questions]  # fact_questions' order
    missed = {owner for owner, hit in zip(owners, hits, strict=True) if not hit}
    per, overall = unrelated_losses(loaded)
    return {
        "accuracy": sum(hits) / len(hits),
        "facts_all": 1 - len(missed) / len(facts),
        "per": per,
        "overall": overall,
        "answers": answers,
        "real_ppl": text_perplexity(loaded, texts) if texts else math.nan,
    }


def knowledge_benchmark(loaded, args) -> tuple[list[str], object]:
    facts = load_new_facts()
    documents, questions = fact_documents(facts), fact_questions(facts)
    texts = real_texts(args.data)
    before = knowledge_scores(loaded, loaded.model, facts, questions, texts)
    preserve = load_builtin_suite("train") if args.preserve_weight > 0 else None
    brick = train_knowledge_brick(
        loaded,
        documents,
        "new-facts",
        "knowledge",
        settings=KnowledgeSettings(
            rank=args.knowledge_rank,
            steps=args.knowledge_steps,
            lr=args.knowledge_lr,
            batch_size=8,
            eval_every=args.knowledge_eval_every,
        ),
        context=args.knowledge_context,
        preserve=preserve,
        preserve_weight=args.preserve_weight,
        preserve_plain=not args.preserve_chat_only,
        augment="none",  # the recipe docs/results/bricks.md measured here (see knowledge.py)
    )
    with attach(loaded, [brick]) as model:
        after = knowledge_scores(loaded, model, facts, questions, texts)
    m = brick.metrics
    change = math.exp(after["overall"] - before["overall"]) - 1
    lines = [
        f"### Knowledge brick: {len(facts)} fictional facts ({len(documents)} training "
        f"statements, {len(questions)} held-out questions)",
        "",
        "| metric | base model | with brick | ratio |",
        "|---|---|---|---|",
        _row("accuracy on held-out questions", before["accuracy"], after["accuracy"], "{:.1%}"),
        _row(
            "facts with every held-out question right",
            before["facts_all"],
            after["facts_all"],
            "{:.1%}",
        ),
        _row(
            "perplexity of the training statements", m["heldout_ppl_before"], m["heldout_ppl_after"]
        ),
        _row(
            "perplexity of unrelated text (suite test references)",
            math.exp(before["overall"]),
            math.exp(after["overall"]),
        ),
        *[
            _row(f"  ... {f}", math.exp(b), math.exp(a))
            for f, b, a in zip(FUNCTIONALITIES, before["per"], after["per"], strict=True)
        ],
        _row(
            "perplexity of real text (100 GSM8K problems + solutions)",
            before["real_ppl"],
            after["real_ppl"],
        ),
        "",
        f"Unrelated-text perplexity change: {change:+.2%} (target <= 2%). Accuracy after: "
        f"{after['accuracy']:.1%} (target >= 80%). Answers: greedy, {KNOWLEDGE_TOKENS} new tokens.",
        f"Training: {m['steps_run']} steps x batch 8, rank {args.knowledge_rank}, lr "
        f"{args.knowledge_lr}, context {args.knowledge_context}, locality KL weight "
        f"{args.preserve_weight} on the suite's train split"
        f" ({'chat rows only' if args.preserve_chat_only else 'chat and plain rows'}), "
        f"{m['train_seconds']:.0f} s "
        f"(evaluations included); best step {m['best_step']}.",
        "",
        "Sample answers with the brick (first held-out questions):",
        "",
        *[
            f"- {q} -> `{a.strip().splitlines()[0] if a.strip() else ''}` (expects {e})"
            for (q, e), a in list(zip(questions, after["answers"], strict=True))[:4]
        ],
    ]
    return lines, brick


def _row(label: str, before: float, after: float, fmt: str = "{:.3f}") -> str:
    ratio = f"{after / before:.3f}x" if before else "n/a"
    return f"| {label} | {fmt.format(before)} | {fmt.format(after)} | {ratio} |"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--only", choices=("task", "knowledge"), default=None)
    parser.add_argument("--save-dir", type=Path, default=None, help="also save the bricks here")
    parser.add_argument("--rank", type=int, default=8, help="task brick LoRA rank")
    parser.add_argument("--train-pairs", type=int, default=300)
    parser.add_argument("--heldout-pairs", type=int, default=100)
    parser.add_argument("--generate", type=int, default=40)
    parser.add_argument("--task-steps", type=int, default=150)
    parser.add_argument("--task-lr", type=float, default=5e-4)
    parser.add_argument("--task-eval-every", type=int, default=30)
    parser.add_argument("--task-seconds", type=float, default=280.0)
    parser.add_argument("--knowledge-rank", type=int, default=16)
    parser.add_argument("--knowledge-steps", type=int, default=200)
    parser.add_argument("--knowledge-lr", type=float, default=2e-3)
    parser.add_argument("--knowledge-eval-every", type=int, default=100)
    parser.add_argument("--knowledge-context", choices=("plain", "chat"), default="chat")
    parser.add_argument(
        "--preserve-weight",
        type=float,
        default=1.0,
        help="KL locality weight on the suite's train split (0: none)",
    )
    parser.add_argument(
        "--preserve-chat-only",
        action="store_true",
        help="locality KL on chat-formatted rows only (not also as plain text)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    loaded = load_model(args.model)
    print(
        f"model {args.model} ({loaded.fingerprint}), loaded in "
        f"{time.perf_counter() - started:.1f} s\n"
    )
    for part, run in (("task", task_benchmark), ("knowledge", knowledge_benchmark)):
        if args.only in (None, part):
            if part == "task" and not (args.data / "multi30k_test2016.en.txt").is_file():
                print(f"skipping the task brick: no Multi30k files in {args.data}\n")
                continue
            lines, brick = run(loaded, args)
            print("\n".join(lines) + "\n", flush=True)
            if args.save_dir:
                save_brick(brick, args.save_dir / brick.name)
    print(f"total: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
