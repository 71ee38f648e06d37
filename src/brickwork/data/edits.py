"""The built-in counterfactual edit set (package data under ``edits/``).

Each row: ``id``, ``relation``, ``subject`` (as it appears in the prompts), ``prompt`` (plain
completion style), ``target_true`` (what the model says now), ``target_new`` (the counterfactual),
``paraphrases`` (other prompts for the same fact) and ``neighborhood`` (prompts of the same
relation about other subjects, whose predictions an edit must not change) and, optionally,
``keep`` (texts whose predictions the edit is optimised not to change; keep them apart from the
neighbourhood prompts used for evaluation) and ``unrelated`` (prompts of other relations, for
the unrelated-prompt locality).

``candidates.jsonl`` holds every written candidate; ``counterfact.jsonl`` the ones the default
model's greedy continuation gets right (written by ``benchmarks/update.py --filter``).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from brickwork.data.jsonl import parse_object
from brickwork.errors import BrickworkError

CANDIDATES_FILE = "candidates.jsonl"
EDITS_FILE = "counterfact.jsonl"
_TEXT_FIELDS = ("id", "relation", "subject", "prompt", "target_true", "target_new")
_LIST_FIELDS = ("paraphrases", "neighborhood")
_OPTIONAL_LIST_FIELDS = ("keep", "unrelated")


def builtin_edits_path(name: str = EDITS_FILE) -> Path:
    return Path(str(files("brickwork.data").joinpath("edits", name)))


def load_edits(path: str | Path | None = None) -> list[dict]:
    """Counterfactual facts (the built-in kept set unless ``path`` is given), checked per field."""
    path = builtin_edits_path() if path is None else Path(path)
    if not path.is_file():
        raise BrickworkError(f"no such edit set: {path}")
    facts, seen = [], set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        allowed = set(_TEXT_FIELDS) | set(_LIST_FIELDS) | set(_OPTIONAL_LIST_FIELDS)
        row = parse_object(line, where, _TEXT_FIELDS, allowed)
        for field in _LIST_FIELDS + tuple(f for f in _OPTIONAL_LIST_FIELDS if f in row):
            value = row.get(field)
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise BrickworkError(f"{where}: {field!r} must be a list of strings")
        if row["subject"].lower() not in row["prompt"].lower():
            raise BrickworkError(f"{where}: the subject {row['subject']!r} is not in the prompt")
        if row["id"] in seen:
            raise BrickworkError(f"{where}: duplicate fact id {row['id']!r}")
        seen.add(row["id"])
        facts.append(row)
    if not facts:
        raise BrickworkError(f"{path} holds no facts")
    return facts
