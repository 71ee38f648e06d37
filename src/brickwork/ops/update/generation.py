"""Edit metrics without teacher forcing: what the model says when it generates.

- reliability_gen: the greedy answer after the edited prompt starts with the new target
  (``answer_hit``: both normalised: stripped, case-folded, leading articles and punctuation
  dropped; the target must end at a word boundary, so "Rome" does not hit "Romania");
- generalization_gen: the same after each paraphrase (mean over them);
- generalization_known_gen: the same on the paraphrases the unedited model answered;
- locality_gen: the share of neighbourhood prompts whose greedy next ``LOCALITY_TOKENS``
  tokens are all unchanged. Greedy decoding equals the reference exactly when every reference
  token is top-1 given the reference's earlier tokens, so this is read off the teacher-forced
  locality hits (``all`` instead of the mean).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from brickwork.data.edits import EditFact
from brickwork.models.load import LoadedModel
from brickwork.ops.update.common import target_ids

ANSWER_SLACK = 3  # greedy tokens beyond the target's own length
_LEADING = re.compile(r"^(?:[\W_]+|(?:the|a|an)\b)+", re.IGNORECASE)


def normalise(text: str) -> str:
    """Stripped, case-folded, without leading punctuation, spaces and articles."""
    return _LEADING.sub("", text.strip().casefold()).strip()


def answer_hit(answer: str, target: str) -> bool:
    """Whether ``answer`` starts with ``target`` (normalised) and the target ends a word."""
    said, want = normalise(answer), normalise(target)
    if not want or not said.startswith(want):
        return False
    rest = said[len(want) :]
    return not rest or not (rest[0].isalnum() or rest[0] == "_")


def answer_metrics(
    loaded: LoadedModel,
    facts: list[EditFact],
    model: Callable | None = None,
    known: set[tuple[str, str]] | None = None,
) -> list[dict]:
    """Per fact: reliability_gen, generalization_gen (when it has paraphrases) and
    generalization_known_gen (when ``known`` holds some of them), from greedy answers."""
    from brickwork.ops.update.evaluate import greedy

    tok = loaded.tokenizer
    length = max(len(target_ids(tok, f.target_new)) for f in facts) + ANSWER_SLACK
    prompts = [p for f in facts for p in (f.prompt, *f.paraphrases)]
    answers = iter(tok.decode(g) for g in greedy(loaded, prompts, length, model))
    rows = []
    for f in facts:
        hits = [answer_hit(next(answers), f.target_new) for _ in range(1 + len(f.paraphrases))]
        row = {"reliability_gen": float(hits[0])}
        if f.paraphrases:
            row["generalization_gen"] = sum(hits[1:]) / len(f.paraphrases)
        answered = [
            h
            for p, h in zip(f.paraphrases, hits[1:], strict=True)
            if (p, f.target_true) in (known or ())
        ]
        if answered:
            row["generalization_known_gen"] = sum(answered) / len(answered)
        rows.append(row)
    return rows
