"""The built-in offline suite: hand-written prompts with references for the seven functionalities.

One JSONL file per functionality under ``suite/``, each row with a fixed train/test split.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from brickwork.data.jsonl import load_jsonl
from brickwork.data.sample import FUNCTIONALITIES, Sample, select_split


def load_builtin_suite(split: str | None = None) -> list[Sample]:
    """All built-in samples (or one split), in a fixed order."""
    folder = files("brickwork.data").joinpath("suite")
    samples: list[Sample] = []
    for functionality in FUNCTIONALITIES:
        samples += load_jsonl(Path(str(folder.joinpath(f"{functionality}.jsonl"))))
    return select_split(samples, split)
