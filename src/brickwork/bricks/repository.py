"""BrickRepository: a local store of brick directories, safe for concurrent writers.

Layout: ``<root>/repository.json`` and ``<root>/bricks/<name>/`` (one brick directory each).
Every write goes to a temporary directory that is renamed into place under a file lock, so a
process killed mid-write leaves only a hidden temporary directory that listing ignores.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from brickwork.bricks.brick import Brick, check_name
from brickwork.bricks.format import load_brick, read_brick_meta, save_brick, verify_brick
from brickwork.bricks.kinds import matches
from brickwork.errors import BrickworkError
from brickwork.io import (
    leftovers,
    old_dir,
    recover_dir,
    remove_dir_atomically,
    write_text_atomically,
)

MARKER = "repository.json"
REPOSITORY_FORMAT = {"format": "brickwork-repository", "format_version": 1}
LOCK_TIMEOUT_ENV = "BRICKWORK_LOCK_TIMEOUT"  # seconds a writer waits for the repository lock
LOCK_TIMEOUT = 600.0


def lock_timeout() -> float:
    """Seconds to wait for a repository lock: $BRICKWORK_LOCK_TIMEOUT, else 600."""
    text = os.environ.get(LOCK_TIMEOUT_ENV, "")
    try:
        value = float(text) if text else LOCK_TIMEOUT
    except ValueError:
        raise BrickworkError(
            f"{LOCK_TIMEOUT_ENV} must be a number of seconds, not {text!r}"
        ) from None
    if not value >= 0:
        raise BrickworkError(f"{LOCK_TIMEOUT_ENV} must be >= 0, not {text!r}")
    return value


class BrickRepository:
    def __init__(self, path: str | Path, create: bool = True) -> None:
        self.root = Path(path)
        self.bricks_dir = self.root / "bricks"
        self.skipped: dict[str, str] = {}  # brick directory -> why the last list() skipped it
        marker = self.root / MARKER
        if self.root.exists() and not self.root.is_dir():
            raise BrickworkError(f"{self.root} is not a directory, so not a brick repository")
        try:
            self._open(marker, create)
        except OSError as exc:
            raise BrickworkError(f"cannot use brick repository {self.root}: {exc}") from None
        self._lock = FileLock(str(self.root / ".lock"))

    def _open(self, marker: Path, create: bool) -> None:
        if marker.is_file():
            if not self.bricks_dir.is_dir():
                self.bricks_dir.mkdir()  # a repository whose bricks/ was deleted
        else:
            if not create:
                raise BrickworkError(f"{self.root} is not a brick repository (no {MARKER})")
            if self.root.exists() and any(self.root.iterdir()) and not self.bricks_dir.is_dir():
                raise BrickworkError(f"{self.root} exists and is not a brick repository")
            self.bricks_dir.mkdir(parents=True, exist_ok=True)
            text = json.dumps(REPOSITORY_FORMAT)
            write_text_atomically(marker, text)

    @contextmanager
    def locked(self):
        """Hold the repository's write lock, saying what it waits for and giving up after
        ``lock_timeout()`` seconds with one clear error."""
        timeout = lock_timeout()
        try:
            try:
                self._lock.acquire(timeout=0)
            except Timeout:
                print(
                    f"waiting for the lock of brick repository {self.root} (held by another "
                    f"process; giving up after {timeout:g} s, ${LOCK_TIMEOUT_ENV})",
                    file=sys.stderr,
                )
                self._lock.acquire(timeout=timeout)
        except Timeout:
            raise BrickworkError(
                f"gave up after {timeout:g} s waiting for the lock {self._lock.lock_file} of "
                f"brick repository {self.root}; if no brickwork process is writing there, "
                f"the lock is stale: delete it"
            ) from None
        except OSError as exc:
            raise BrickworkError(f"cannot lock brick repository {self.root}: {exc}") from None
        try:
            yield
        finally:
            self._lock.release()

    def _path(self, name: str) -> Path:
        return self.bricks_dir / check_name(name)

    def add(self, brick: Brick, overwrite: bool = False) -> Path:
        """Store ``brick`` under its name; an existing name needs ``overwrite=True``."""
        target = self._path(brick.name)
        with self.locked(), _writing(self.root):
            self._finish_killed(brick.name)
            if target.exists() and not overwrite:
                raise BrickworkError(f"a brick named {brick.name!r} is already in {self.root}")
            return save_brick(brick, target)

    def check_writable(self) -> None:
        """Refuse a repository this process cannot write (checked before costly work)."""
        with self.locked():
            if not os.access(self.bricks_dir, os.W_OK | os.X_OK):
                raise BrickworkError(f"cannot write to brick repository {self.root}")

    def has(self, name: str) -> bool:
        """Whether a brick directory called ``name`` is there (checked before costly work)."""
        return self._path(name).is_dir()

    def get(self, name: str) -> Brick:
        """The brick ``name``. Read without the lock first; a miss or a damaged read is tried
        again under the lock (after finishing any killed write), so a concurrent overwrite is
        never reported as corruption."""
        path = self._path(name)
        try:
            return self._read(name, path)
        except BrickworkError:
            if not (path.is_dir() or old_dir(path).is_dir()):
                raise  # simply not there: no write of it can be in flight
            try:
                with self.locked(), _writing(self.root):
                    recover_dir(path)
            except BrickworkError:
                pass  # a read-only repository: read it as it is
        return self._read(name, path)

    def _read(self, name: str, path: Path) -> Brick:
        if not path.is_dir():
            raise BrickworkError(f"no brick named {name!r} in {self.root}")
        brick = load_brick(path)
        if brick.name != name:
            raise BrickworkError(f"brick {path} is corrupt: brick.json names {brick.name!r}")
        return brick

    def remove(self, name: str) -> None:
        path = self._path(name)
        with self.locked(), _writing(self.root):
            self._finish_killed(name)
            if not path.is_dir():
                raise BrickworkError(f"no brick named {name!r} in {self.root}")
            remove_dir_atomically(path)  # gone from listings at once

    def _finish_killed(self, name: str) -> None:
        """Finish what killed writes of ``name`` left: a parked brick goes back, temporary
        directories go (call under the lock)."""
        recover_dir(self._path(name))
        for path in self.leftovers():
            if path.name.startswith(f".{name}.") and path.name.endswith(".tmp"):
                shutil.rmtree(path, ignore_errors=True)

    def _parked(self) -> list[str]:
        """Names of bricks a killed overwrite parked as ``.NAME.old`` (``NAME`` missing)."""
        names = [p.name[1:-4] for p in self.leftovers() if p.name.endswith(".old")]
        return [n for n in names if not (self.bricks_dir / n).exists()]

    def _put_back_parked(self) -> None:
        """Put parked bricks back before a listing, so that none is missing from it (under
        the lock: a write in flight finishes first); a read-only repository is listed as is."""
        if not self._parked():
            return
        try:
            with self.locked(), _writing(self.root):
                for name in self._parked():
                    recover_dir(self.bricks_dir / name)
        except BrickworkError:
            pass

    def list(self) -> list[dict]:
        """brick.json of every complete brick, sorted by name (unreadable ones are skipped)."""
        entries, self.skipped = [], {}
        for folder in self._folders():
            try:
                entries.append(_meta(folder))
            except BrickworkError as exc:
                self.skipped[folder.name] = str(exc)
        return entries

    def _folders(self) -> list[Path]:
        """Brick directories (hidden ones are unfinished or interrupted writes)."""
        self._put_back_parked()
        try:
            found = sorted(self.bricks_dir.iterdir())
        except OSError as exc:
            raise BrickworkError(f"cannot read brick repository {self.root}: {exc}") from None
        return [f for f in found if f.is_dir() and not f.name.startswith(".")]

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
        for folder in self._folders():
            try:
                _meta(folder)
                report[folder.name] = verify_brick(folder)
            except BrickworkError:
                report[folder.name] = ["brick.json"]
        return report

    def leftovers(self) -> list[Path]:
        """Hidden temporary, parked and half-removed directories that killed writes left."""
        return leftovers(self.bricks_dir)

    def gc(self) -> list[Path]:
        """Finish killed writes (a parked brick whose directory is missing is put back) and
        delete every leftover directory; returns what was deleted."""
        deleted = []
        with self.locked(), _writing(self.root):
            for name in self._parked():
                recover_dir(self.bricks_dir / name)
            for path in self.leftovers():
                shutil.rmtree(path, ignore_errors=True)
                deleted.append(path)
        return deleted


def _meta(folder: Path) -> dict:
    """brick.json of a brick directory in a repository: its name must be the directory's."""
    meta = read_brick_meta(folder)
    if meta["name"] != folder.name:
        raise BrickworkError(f"{folder / 'brick.json'} names {meta['name']!r}, not its directory")
    return meta


@contextmanager
def _writing(root: Path):
    """Turn a failed write (read-only repository, full disk) into one clear error."""
    try:
        yield
    except OSError as exc:
        raise BrickworkError(f"cannot write to brick repository {root}: {exc}") from None
