"""Functionality datasets as JSON Lines: one {"prompt", "functionality", ...} object per line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from brickwork.data.sample import SPLITS, Sample
from brickwork.errors import BrickworkError
from brickwork.records import from_json

R = TypeVar("R")

_FIELDS = {"id", "prompt", "functionality", "reference", "split"}


def load_jsonl(path: str | Path) -> list[Sample]:
    """Read samples; ``prompt`` and ``functionality`` are required, ``id`` defaults to the line."""
    path = Path(path)

    def parse(line: str, where: str, number: int) -> Sample:
        return _parse_line(line, where, default_id=f"{path.stem}-{number}")

    return read_rows(path, parse, "data file", "sample")


def read_facts(
    path: Path,
    record: type[R],
    what: str,
    required: tuple[str, ...] = (),
    check: Callable[[R, str], None] | None = None,
) -> list[R]:
    """Fact ``record``s from a JSONL file; ``required`` fields must be in the file though the
    record has defaults, ``check(row, where)`` adds checks."""

    def parse(line: str, where: str, number: int) -> R:
        row = from_json(record, _loads(line, where), where, required=required)
        if check is not None:
            check(row, where)
        return row

    return read_rows(path, parse, what, "fact")


def read_rows(path: Path, parse: Callable[[str, str, int], R], what: str, noun: str) -> list[R]:
    """``parse(line, "file:line", number)`` for every non-blank line of a JSONL file; the rows'
    ``id``s must be unique. Every error names the file (and line)."""
    text, rows, seen = read_utf8(path, what), [], set()
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            row = parse(line, f"{path}:{number}", number)
            if row.id in seen:
                label = "id" if noun == "sample" else f"{noun} id"
                raise BrickworkError(f"{path}:{number}: duplicate {label} {row.id!r}")
            seen.add(row.id)
            rows.append(row)
    if not rows:
        raise BrickworkError(f"{path} holds no {noun}s")
    return rows


def read_utf8(path: Path, what: str) -> str:
    """The text of a UTF-8 file; a missing file or other bytes are one ``BrickworkError``."""
    if not path.is_file():
        raise BrickworkError(f"no such {what}: {path}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BrickworkError(f"{path} is not UTF-8 text (byte {exc.start})") from None


def _loads(line: str, where: str) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise BrickworkError(f"{where}: malformed JSON ({exc.msg})") from None


def parse_object(line: str, where: str, required: tuple[str, ...], allowed: set[str]) -> dict:
    """One JSON object with non-empty string ``required`` fields and no field outside
    ``allowed``; errors name ``where`` (file:line)."""
    row = _loads(line, where)
    if not isinstance(row, dict):
        raise BrickworkError(f"{where}: expected a JSON object")
    for field in required:
        if not isinstance(row.get(field), str) or not row[field].strip():
            raise BrickworkError(f"{where}: missing or empty {field!r}")
    unknown = set(row) - allowed
    if unknown:
        raise BrickworkError(f"{where}: unknown fields {sorted(unknown)}")
    return row


def _parse_line(line: str, where: str, default_id: str) -> Sample:
    row = parse_object(line, where, ("prompt", "functionality"), _FIELDS)
    split = row.get("split")
    if split is not None and split not in SPLITS:
        raise BrickworkError(f"{where}: split must be one of {SPLITS}, not {split!r}")
    reference = row.get("reference")
    return Sample(
        id=str(row.get("id", default_id)),
        prompt=row["prompt"],
        functionality=row["functionality"],
        reference=reference if reference else None,
        split=split,
    )
