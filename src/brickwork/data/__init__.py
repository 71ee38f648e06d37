"""Functionality datasets (the Sample type, the built-in suite, JSONL and Infinity-Instruct) and
fact records: fictional facts for knowledge bricks, counterfactual facts for editing."""

from __future__ import annotations

from pathlib import Path

from brickwork.data.edits import EditFact, load_edits
from brickwork.data.facts import NewFact, load_new_facts
from brickwork.data.infinity import load_infinity_instruct
from brickwork.data.jsonl import load_jsonl
from brickwork.data.sample import (
    FUNCTIONALITIES,
    Sample,
    dataset_hash,
    select_split,
    with_splits,
)
from brickwork.data.suite import load_builtin_suite
from brickwork.data.texts import load_texts
from brickwork.errors import BrickworkError

BUILTIN_DATA = "builtin"
INFINITY_DATA = "infinity-instruct"


def load_data(spec: str = BUILTIN_DATA, split: str | None = None) -> list[Sample]:
    """``builtin`` (the offline suite), ``infinity-instruct`` (network) or a JSONL path.

    Samples without a split get a fixed one from a hash of their id.
    """
    if spec == BUILTIN_DATA:
        samples = load_builtin_suite()
    elif spec == INFINITY_DATA:
        samples = load_infinity_instruct()
    else:
        samples = load_jsonl(Path(spec))
    chosen = select_split(with_splits(samples), split)
    if not chosen:
        raise BrickworkError(f"{spec} holds no samples in split {split!r}")
    return chosen


__all__ = [
    "BUILTIN_DATA",
    "FUNCTIONALITIES",
    "INFINITY_DATA",
    "EditFact",
    "NewFact",
    "Sample",
    "dataset_hash",
    "load_builtin_suite",
    "load_data",
    "load_edits",
    "load_infinity_instruct",
    "load_jsonl",
    "load_new_facts",
    "load_texts",
    "select_split",
    "with_splits",
]
