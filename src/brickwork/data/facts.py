"""Thirty fictional facts no model can know, for measuring knowledge bricks (package data).

Each row (a ``NewFact``): ``id``, ``statement``, ``train_paraphrases`` (other statements of the
same fact, for training), ``questions`` (held-out question paraphrases, never trained on) and
``answer`` (a short string that a correct reply contains).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from brickwork.data.jsonl import read_facts
from brickwork.records import NONEMPTY

NEW_FACTS_FILE = "new_facts.jsonl"


@dataclass(frozen=True)
class NewFact:
    id: str = field(metadata=NONEMPTY)
    statement: str = field(metadata=NONEMPTY)
    train_paraphrases: tuple[str, ...] = field(metadata=NONEMPTY)
    questions: tuple[str, ...] = field(metadata=NONEMPTY)
    answer: str = field(metadata=NONEMPTY)


def load_new_facts(path: str | Path | None = None) -> list[NewFact]:
    """The fictional facts (the built-in file unless ``path`` is given), checked field by field."""
    if path is None:
        path = Path(str(files("brickwork.data").joinpath("facts", NEW_FACTS_FILE)))
    return read_facts(Path(path), NewFact, "facts file")


def fact_documents(facts: list[NewFact]) -> list[str]:
    """The training texts: every statement and its training paraphrases."""
    return [text for fact in facts for text in [fact.statement, *fact.train_paraphrases]]


def fact_questions(facts: list[NewFact]) -> list[tuple[str, str]]:
    """The held-out (question, answer) pairs."""
    return [(q, fact.answer) for fact in facts for q in fact.questions]
