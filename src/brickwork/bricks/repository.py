"""BrickRepository: a local store of brick directories, safe for concurrent writers.

Layout: ``<root>/repository.json`` and ``<root>/bricks/<name>/`` (one brick directory each).
Every write goes to a temporary directory that is renamed into place under a file lock, so a
process killed mid-write leaves only a hidden temporary directory that listing ignores.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from filelock import FileLock

from brickwork.bricks.brick import Brick, check_name
from brickwork.bricks.format import load_brick, read_brick_meta, save_brick, verify_brick
from brickwork.bricks.kinds import matches
from brickwork.errors import BrickworkError
from brickwork.io import replace_atomically

MARKER = "repository.json"
REPOSITORY_FORMAT = {"format": "brickwork-repository", "format_version": 1}


class BrickRepository:
    def __init__(self, path: str | Path, create: bool = True) -> None:
        self.root = Path(path)
        self.bricks_dir = self.root / "bricks"
        marker = self.root / MARKER
        if not marker.is_file():
            if not create:
                raise BrickworkError(f"{self.root} is not a brick repository (no {MARKER})")
            if self.root.exists() and any(self.root.iterdir()) and not self.bricks_dir.is_dir():
                raise BrickworkError(f"{self.root} exists and is not a brick repository")
            self.bricks_dir.mkdir(parents=True, exist_ok=True)
            text = json.dumps(REPOSITORY_FORMAT)
            replace_atomically(marker, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        self._lock = FileLock(str(self.root / ".lock"))

    def _path(self, name: str) -> Path:
        return self.bricks_dir / check_name(name)

    def add(self, brick: Brick, overwrite: bool = False) -> Path:
        """Store ``brick`` under its name; an existing name needs ``overwrite=True``."""
        with self._lock:
            target = self._path(brick.name)
            if target.exists() and not overwrite:
                raise BrickworkError(f"a brick named {brick.name!r} is already in {self.root}")
            return save_brick(brick, target)

    def get(self, name: str) -> Brick:
        path = self._path(name)
        if not path.is_dir():
            raise BrickworkError(f"no brick named {name!r} in {self.root}")
        return load_brick(path)

    def remove(self, name: str) -> None:
        with self._lock:
            path = self._path(name)
            if not path.is_dir():
                raise BrickworkError(f"no brick named {name!r} in {self.root}")
            trash = path.with_name(f".{name}.removed")
            path.rename(trash)  # gone from listings at once, even if the delete is interrupted
            shutil.rmtree(trash)

    def list(self) -> list[dict]:
        """brick.json of every complete brick, sorted by name (unreadable ones are skipped)."""
        entries = []
        for folder in sorted(self.bricks_dir.iterdir()):
            if folder.name.startswith(".") or not folder.is_dir():
                continue  # a temporary directory of an unfinished or interrupted write
            try:
                entries.append(read_brick_meta(folder))
            except BrickworkError:
                continue
        return entries

    def search(
        self,
        kind: str | None = None,
        purpose: str | None = None,
        base_model: str | None = None,
        text: str | None = None,
    ) -> list[dict]:
        """Bricks matching every given filter; ``kind`` may be a group (``plugin``); ``text``
        searches name, purpose and description."""
        found = []
        for meta in self.list():
            haystack = " ".join((meta["name"], meta["purpose"], meta.get("description", "")))
            if (
                (kind is None or matches(meta["kind"], kind))
                and (purpose is None or meta["purpose"] == purpose)
                and (base_model is None or meta["base_model"] == base_model)
                and (text is None or text.lower() in haystack.lower())
            ):
                found.append(meta)
        return found

    def verify(self) -> dict[str, list[str]]:
        """For every brick directory, the damaged files ([] when intact)."""
        report = {}
        for folder in sorted(self.bricks_dir.iterdir()):
            if folder.is_dir() and not folder.name.startswith("."):
                try:
                    report[folder.name] = verify_brick(folder)
                except BrickworkError:
                    report[folder.name] = ["brick.json"]
        return report
