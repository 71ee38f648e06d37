"""Facts to edit (``EditFact``) and the built-in counterfactual edit set (package data under
``edits/``).

Each row: ``id``, ``relation``, ``subject`` (as it appears in the prompts), ``prompt`` (plain
completion style), ``target_true`` (what the model says now), ``target_new`` (the counterfactual),
``paraphrases`` (other prompts for the same fact) and ``neighborhood`` (prompts of the same
relation about other subjects, whose predictions an edit must not change) and, optionally,
``keep`` (texts whose predictions the edit is optimised not to change; keep them apart from the
neighbourhood prompts used for evaluation) and ``unrelated`` (prompts of other relations, for
the unrelated-prompt locality).

Built-in sets, named where a path is expected: ``builtin`` (``counterfact.jsonl``: the
candidates of ``candidates.jsonl`` the default model's greedy continuation gets right, written by
``benchmarks/update.py --filter``) and ``builtin-large`` (``large.jsonl``, with a ``split``
(dev or test) per fact, written by ``scripts/build_edit_set.py``; see ``data/edit_set.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from brickwork.data.jsonl import read_facts
from brickwork.errors import BrickworkError
from brickwork.records import NONEMPTY, from_json, to_json

CANDIDATES_FILE = "candidates.jsonl"
EDITS_FILE = "counterfact.jsonl"
LARGE_FILE = "large.jsonl"
BUILTIN_SETS = {"builtin": EDITS_FILE, "builtin-large": LARGE_FILE}
EDIT_SPLITS = ("dev", "test")
_IN_EVERY_ROW = ("id", "relation", "target_true", "paraphrases", "neighborhood")


@dataclass(frozen=True)
class EditFact:
    """A fact to write: ``prompt`` (containing ``subject``) should be continued by
    ``target_new``. An edit needs only those three; evaluation reads the rest."""

    prompt: str = field(metadata=NONEMPTY)
    subject: str = field(metadata=NONEMPTY)
    target_new: str = field(metadata=NONEMPTY)
    target_true: str | None = field(default=None, metadata=NONEMPTY)  # checked when given
    keep: tuple[str, ...] = ()  # texts whose predictions the edit must not change
    id: str | None = field(default=None, metadata=NONEMPTY)
    relation: str | None = field(default=None, metadata=NONEMPTY)
    paraphrases: tuple[str, ...] = ()
    neighborhood: tuple[str, ...] = ()
    unrelated: tuple[str, ...] = ()
    split: str | None = None  # "dev" or "test" where the set is split

    @classmethod
    def from_dict(cls, data: dict, where: str = "a fact") -> EditFact:
        """A checked record from a JSON object (as an edit-set line holds it)."""
        fact = from_json(cls, data, where)
        _check_subject(fact, where)
        return fact

    def to_dict(self) -> dict:
        return to_json(self)


def builtin_edits_path(name: str = EDITS_FILE) -> Path:
    return Path(str(files("brickwork.data").joinpath("edits", name)))


def load_edits(path: str | Path | None = None, split: str | None = None) -> list[EditFact]:
    """Counterfactual facts, checked per field: a JSONL file or a built-in set's name
    (``BUILTIN_SETS``; None: ``builtin``), only those of ``split`` when given."""
    if split is not None and split not in EDIT_SPLITS:
        raise BrickworkError(f"the split must be one of {EDIT_SPLITS}, not {split!r}")
    name = "builtin" if path is None else str(path)
    path = builtin_edits_path(BUILTIN_SETS[name]) if name in BUILTIN_SETS else Path(path)
    facts = read_facts(path, EditFact, "edit set", _IN_EVERY_ROW, _check_subject)
    if split is None:
        return facts
    chosen = [f for f in facts if f.split == split]
    if not chosen:
        raise BrickworkError(f"{path} holds no facts in split {split!r}")
    return chosen


def _check_subject(fact: EditFact, where: str) -> None:
    if fact.subject.lower() not in fact.prompt.lower():
        raise BrickworkError(f"{where}: the subject {fact.subject!r} is not in the prompt")
    if fact.split is not None and fact.split not in EDIT_SPLITS:
        raise BrickworkError(f"{where}: split must be one of {EDIT_SPLITS}, not {fact.split!r}")
