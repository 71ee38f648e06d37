"""Plain text collections (documents, prompts) from .txt or .jsonl files."""

from __future__ import annotations

import json
from pathlib import Path

from brickwork.errors import BrickworkError


def load_texts(path: str | Path | None) -> list[str]:
    """Texts from a .txt file (one per line) or a .jsonl file (a "text" or "prompt" field)."""
    if not path or not Path(path).is_file():
        raise BrickworkError(f"no such text file: {path}")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BrickworkError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if str(path).endswith(".jsonl"):
        try:
            rows = [json.loads(line) for line in lines]
            lines = [row.get("text") or row["prompt"] for row in rows]
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError):
            raise BrickworkError(f"{path}: each line needs a JSON object with 'text'") from None
    if not lines:
        raise BrickworkError(f"{path} holds no texts")
    return lines
