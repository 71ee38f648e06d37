"""Thirty fictional facts no model can know, for measuring knowledge bricks (package data).

Each row: ``id``, ``statement``, ``train_paraphrases`` (other statements of the same fact, for
training), ``questions`` (held-out question paraphrases, never trained on) and ``answer`` (a short
string that a correct reply contains).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from brickwork.data.jsonl import parse_object
from brickwork.errors import BrickworkError

NEW_FACTS_FILE = "new_facts.jsonl"
_LIST_FIELDS = ("train_paraphrases", "questions")
_TEXT_FIELDS = ("id", "statement", "answer")


def load_new_facts(path: str | Path | None = None) -> list[dict]:
    """The fictional facts (the built-in file unless ``path`` is given), checked field by field."""
    if path is None:
        path = Path(str(files("brickwork.data").joinpath("facts", NEW_FACTS_FILE)))
    path = Path(path)
    if not path.is_file():
        raise BrickworkError(f"no such facts file: {path}")
    facts, seen = [], set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            fact = _parse_fact(line, f"{path}:{number}")
            if fact["id"] in seen:
                raise BrickworkError(f"{path}:{number}: duplicate fact id {fact['id']!r}")
            seen.add(fact["id"])
            facts.append(fact)
    if not facts:
        raise BrickworkError(f"{path} holds no facts")
    return facts


def _parse_fact(line: str, where: str) -> dict:
    row = parse_object(line, where, _TEXT_FIELDS, set(_TEXT_FIELDS) | set(_LIST_FIELDS))
    for field in _LIST_FIELDS:
        value = row.get(field)
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) and v.strip() for v in value)
        ):
            raise BrickworkError(f"{where}: {field!r} must be a non-empty list of strings")
    return row


def fact_documents(facts: list[dict]) -> list[str]:
    """The training texts: every statement and its training paraphrases."""
    return [text for fact in facts for text in [fact["statement"], *fact["train_paraphrases"]]]


def fact_questions(facts: list[dict]) -> list[tuple[str, str]]:
    """The held-out (question, answer) pairs."""
    return [(q, fact["answer"]) for fact in facts for q in fact["questions"]]
