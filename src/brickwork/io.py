"""Atomic file writes: a file appears whole or not at all, and an old one survives a failure."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from brickwork.errors import BrickworkError


def replace_atomically(target: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``target``, then rename it over ``target``."""
    target = Path(target)
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; outputs are meant to be shared
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def replace_dir_atomically(target: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary directory beside ``target``, then swap it in: the
    directory appears whole or not at all, and an older one is replaced only once the new one is
    complete."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        write(tmp)
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return target


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: Path):
    """The JSON value in ``path``; a file that is not JSON is a one-line error."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BrickworkError(f"{path} is corrupt (not JSON)") from None


def read_versioned_json(folder: Path, name: str, what: str, fmt: str, version: int) -> dict:
    """``folder/name``: a JSON object whose ``format`` is ``fmt`` and ``format_version`` is
    ``version``; a missing, corrupt or foreign file is a one-line error naming ``what`` it is."""
    path = Path(folder) / name
    if not path.is_file():
        raise BrickworkError(f"{folder} is not a {what}: {name} is missing")
    record = read_json(path)
    if not isinstance(record, dict) or record.get("format") != fmt:
        raise BrickworkError(f"{path} is not a {fmt} file")
    if record.get("format_version") != version:
        raise BrickworkError(
            f"{folder} has {what} format version {record.get('format_version')!r}; "
            f"this brickwork reads version {version}"
        )
    return record
