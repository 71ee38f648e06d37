"""Before/after check of a knowledge brick: accuracy on the user's questions, and how many of the
model's known answers (held-out general knowledge it gets right) the brick changes.

Run ``answer_check`` on the base model and again with the brick attached, then ``compare``.
An answer is right when the greedy answer contains the expected one (``answer_matches``). A
known answer counts as **lost** when the base model had it right and the brick's answer no longer
contains it, and as **changed** when the greedy text differs at all (normalised).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from brickwork.bricks.train_eval import answer_matches, generate_answers, normalize
from brickwork.data.questions import KNOWN_PREFIX
from brickwork.data.sample import Sample

ANSWER_TOKENS = 32


@dataclass(frozen=True)
class AnswerCheck:
    answers: list[str]  # greedy answers to the user's questions
    known: list[str]  # greedy answers to the known-answer prompts


def answer_check(
    loaded, model, questions: list[tuple[str, str]], known: list[Sample], progress: bool = False
) -> AnswerCheck:
    """Greedy answers (chat template) of ``model`` as it is now, to the questions and prompts."""
    prompts = [q for q, _ in questions] + [s.prompt for s in known]
    answers = generate_answers(model, loaded.tokenizer, prompts, ANSWER_TOKENS, progress=progress)
    return AnswerCheck(answers[: len(questions)], answers[len(questions) :])


def with_own_answers(loaded, samples: list[Sample], progress: bool = False) -> list[Sample]:
    """The known-answer samples among ``samples`` with the model's own greedy answer (as it is
    now, i.e. the base model) as their reference, so that a KL term on them follows the tokens
    the model actually says; the other samples as they are."""
    known = [i for i, s in enumerate(samples) if s.id.startswith(KNOWN_PREFIX)]
    prompts = [samples[i].prompt for i in known]
    answers = generate_answers(loaded, loaded.tokenizer, prompts, ANSWER_TOKENS, progress=progress)
    out = list(samples)
    for i, answer in zip(known, answers, strict=True):
        out[i] = replace(samples[i], reference=answer.strip() or samples[i].reference)
    return out


def compare(
    before: AnswerCheck, after: AnswerCheck, questions: list[tuple[str, str]], known: list[Sample]
) -> dict:
    """Right answers before and after, and the known answers lost and changed."""

    def right(answers: list[str]) -> int:
        return sum(answer_matches(e, a) for (_, e), a in zip(questions, answers, strict=True))

    kept = [
        i
        for i, (s, a) in enumerate(zip(known, before.known, strict=True))
        if answer_matches(s.reference, a)
    ]
    lost = sum(not answer_matches(known[i].reference, after.known[i]) for i in kept)
    changed = sum(normalize(before.known[i]) != normalize(after.known[i]) for i in kept)
    return {
        "questions": len(questions),
        "right_before": right(before.answers),
        "right_after": right(after.answers),
        "known_right": len(kept),
        "known_lost": lost,
        "known_changed": changed,
    }


def _share(count: int, total: int) -> str:
    return f"{count}/{total} ({count / total:.1%})" if total else f"{count}/0"


def report_lines(result: dict) -> list[str]:
    """The comparison as the lines ``brickwork train knowledge --eval`` prints."""
    n, known = result["questions"], result["known_right"]
    return [
        f"eval accuracy: {_share(result['right_before'], n)} before, "
        f"{_share(result['right_after'], n)} after",
        f"protected answers (known before, held out from training): "
        f"lost {_share(result['known_lost'], known)}, "
        f"changed {_share(result['known_changed'], known)}",
    ]
