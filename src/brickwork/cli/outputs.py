"""Checks of output paths, made before any model loads: an output that cannot be written is one
clear error at once, not a traceback after the work."""

from __future__ import annotations

import os
from pathlib import Path

from brickwork.errors import BrickworkError


def _writable_parent(path: Path, what: str) -> None:
    """The nearest existing ancestor of ``path`` must be a directory this process can write."""
    parent = path.parent if str(path.parent) else Path(".")
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise BrickworkError(f"cannot write {what} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BrickworkError(f"cannot write {what} {path}: {parent} is not writable")


def check_out_dir(path: str | os.PathLike | None, what: str = "the output directory") -> None:
    """``path`` is a directory (or can be made one) that this process can write into."""
    if path is None:
        return
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BrickworkError(f"{what} {path} is a file, not a directory")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise BrickworkError(f"cannot write {what} {path}: it is not writable")
        return
    _writable_parent(path, what)


def check_out_file(path: str | os.PathLike | None, what: str = "the output file") -> None:
    """``path`` can be written as a file: not a directory, in an existing writable directory."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise BrickworkError(f"{what} {path} is a directory")
    if not path.parent.is_dir():
        raise BrickworkError(f"cannot write {what} {path}: no directory {path.parent}")
    _writable_parent(path, what)
