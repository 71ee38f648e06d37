"""Console output for people, and ``--json`` for scripts: one place for both forms."""

from __future__ import annotations

import argparse
import json
import math

LONG_LIST = 8  # lists longer than this are summarised in the readable form


def add_json(command: argparse.ArgumentParser) -> None:
    command.add_argument("--json", action="store_true", help="print JSON for scripts")


def finite(value):
    """``value`` with every infinite or NaN float written as a string (JSON has no Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def print_json(value) -> None:
    print(json.dumps(finite(value), indent=1, allow_nan=False))


def brief(value) -> str:
    """A short readable form: numbers to 4 significant digits, long lists summarised."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        if len(value) > LONG_LIST:
            return _summary(value)
        return "[" + ", ".join(brief(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {brief(v)}" for k, v in value.items()) + "}"
    return str(value)


def _summary(values) -> str:
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        if len(set(values)) == 1:
            return f"{len(values)} x {brief(values[0])}"
        return f"{len(values)} values, {brief(min(values))} to {brief(max(values))}"
    return f"[{', '.join(brief(v) for v in values[:3])}, ... {len(values)} items]"


def print_record(record: dict, indent: str = "") -> None:
    """``key: value`` lines, aligned; nested dicts indented below their key."""
    width = max((len(str(k)) for k in record), default=0)
    for key, value in record.items():
        if isinstance(value, dict) and value and len(brief(value)) > 80:
            print(f"{indent}{key}:")
            print_record(value, indent + "  ")
        else:
            print(f"{indent}{str(key) + ':':<{width + 1}} {brief(value)}")


def print_table(rows: list[dict], columns: list[str]) -> None:
    """A table with a header; column widths from the contents."""
    cells = [[brief(row.get(c, "")) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    for line in [columns, *cells]:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
