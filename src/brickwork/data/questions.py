"""Question sets for knowledge checks: a user's QUESTIONS.tsv, and the built-in known answers.

``read_questions`` reads ``question<TAB>expected answer`` lines (blank lines and lines starting
with ``#`` are skipped) and refuses a malformed file with one ``BrickworkError`` naming the line.
``known_answers`` turns the built-in counterfactual facts' **true** answers (general knowledge
the default model gets right) into prompt/reference samples, split by position into a ``keep``
half (for the KL term while training) and a ``check`` half (held out, to count changed answers).
"""

from __future__ import annotations

from pathlib import Path

from brickwork.data.edits import load_edits
from brickwork.data.jsonl import read_utf8
from brickwork.data.sample import Sample
from brickwork.errors import BrickworkError, check_choice

KNOWN_PARTS = ("keep", "check")
KNOWN_PREFIX = "known-"


def read_questions(path: str | Path) -> list[tuple[str, str]]:
    """(question, expected answer) pairs from a UTF-8 TSV file, checked line by line."""
    path = Path(path)
    text, pairs = read_utf8(path, "questions file"), []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not all(f.strip() for f in fields):
            raise BrickworkError(
                f"{path} line {number}: expected 'question<TAB>expected answer', "
                f"got {len(fields)} field(s)" + ("" if len(fields) != 2 else " with an empty one")
            )
        pairs.append((fields[0].strip(), fields[1].strip()))
    if not pairs:
        raise BrickworkError(f"{path} holds no questions")
    return pairs


def known_answers(part: str) -> list[Sample]:
    """The built-in facts' true answers as samples (prompt -> target_true): even rows for
    ``keep`` (with their paraphrased prompts), odd rows for ``check`` (the main prompt only)."""
    check_choice(part, KNOWN_PARTS, "known-answer part")
    facts = load_edits()[KNOWN_PARTS.index(part) :: 2]
    return [
        Sample(f"{KNOWN_PREFIX}{f.id}-{i}", prompt, "knowledge", reference=f.target_true)
        for f in facts
        for i, prompt in enumerate([f.prompt, *(f.paraphrases if part == "keep" else ())])
    ]


def preserve_samples(spec: str) -> list[Sample]:
    """The samples a ``--preserve`` KL term keeps: the train split of ``spec``, and for
    ``builtin`` also the ``keep`` half of the known answers."""
    from brickwork.data import BUILTIN_DATA, load_data

    samples = load_data(spec, split="train")
    return samples + known_answers("keep") if spec == BUILTIN_DATA else samples
