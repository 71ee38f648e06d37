"""Atomic file writes (a file appears whole or not at all, and an old one survives a failure),
and the checked reads of what they wrote."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from brickwork.errors import BrickworkError


@contextmanager
def _writing(target: Path):
    """Turn a failed write (a full disk, a read-only place), the OS's or safetensors', into one
    clear error naming ``target``."""
    from safetensors import SafetensorError

    try:
        yield
    except (OSError, SafetensorError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BrickworkError(f"cannot write {target}: {reason}") from None


def replace_atomically(target: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``target``, then rename it over ``target``."""
    target = Path(target)
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    tmp = Path(name)
    try:
        with _writing(target):
            write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; outputs are meant to be shared
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def write_text_atomically(target: Path, text: str) -> Path:
    """``text`` (UTF-8) as the file ``target``, through ``replace_atomically``."""
    return replace_atomically(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def check_replaceable(target: Path, marker: str, what: str) -> None:
    """Refuse to write a ``what`` over an existing ``target`` that is not one (no ``marker``)."""
    if target.exists() and not (target / marker).is_file():
        raise BrickworkError(f"{target} exists and is not a {what}: refusing to replace it")


def _dir_mode() -> int:
    """The permission bits a new directory gets under the current umask (0o755 for 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


def _share(folder: Path) -> None:
    """Give the files under ``folder`` the read bits the umask allows (libraries such as
    safetensors write private 0o600 files; a shared output must be readable by others)."""
    readable = 0o444 & _dir_mode()
    for path in folder.rglob("*"):
        mode = path.stat().st_mode & 0o777
        if path.is_dir():
            os.chmod(path, _dir_mode())
        elif mode & readable != readable:
            os.chmod(path, mode | readable)


# The steps of a directory swap, looked up at call time so that tests can inject a crash.
_rename = os.replace
_rmtree = shutil.rmtree


def old_dir(target: Path) -> Path:
    """Where an overwrite parks the previous ``target`` while it swaps the new one in."""
    return target.with_name(f".{target.name}.old")


def removed_dir(target: Path) -> Path:
    """Where a removal parks ``target`` before deleting it."""
    return target.with_name(f".{target.name}.removed")


def recover_dir(target: Path) -> None:
    """Finish what a killed swap or removal of ``target`` left: an ``.old`` directory is put back
    when ``target`` is missing (the swap died between its two renames) and deleted otherwise;
    a ``.removed`` one is deleted (the removal had committed)."""
    target = Path(target)
    old = old_dir(target)
    if old.is_dir():
        if target.exists():
            _rmtree(old)
        else:
            _rename(old, target)
    if removed_dir(target).is_dir():
        _rmtree(removed_dir(target))


def replace_dir_atomically(target: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary directory beside ``target``, then swap it in: the
    directory appears whole or not at all, and an older one is replaced only once the new one is
    complete. A process killed at any step leaves the old or the new directory at ``target``
    (the old one parked as ``.NAME.old`` at worst, which ``recover_dir`` puts back)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(target)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, _dir_mode())  # mkdtemp makes it private; files inside are shared
        with _writing(target):
            write(tmp)
        _share(tmp)
        if target.exists():
            old = old_dir(target)
            _rename(target, old)
            _rename(tmp, target)
            _rmtree(old)
        else:
            _rename(tmp, target)
    finally:
        if tmp.exists():
            _rmtree(tmp, ignore_errors=True)
    return target


def remove_dir_atomically(target: Path) -> None:
    """Remove the directory ``target``: it is gone at once (renamed aside), even if the delete
    that follows is interrupted (``recover_dir`` finishes it)."""
    target = Path(target)
    recover_dir(target)
    trash = removed_dir(target)
    _rename(target, trash)
    _rmtree(trash)


def leftovers(folder: Path) -> list[Path]:
    """Hidden directories in ``folder`` that interrupted writes and removals left behind."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.name.startswith(".") and p.is_dir() and p.name.endswith((".tmp", ".old", ".removed"))
    )


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


def write_marked_dir(
    target: str | Path, marker: str, what: str, write: Callable[[Path], dict]
) -> Path:
    """The directory ``target``, a ``what`` marked by the JSON file ``marker`` (the one
    ``read_marker_json`` reads), written by ``replace_dir_atomically`` and refused over an existing
    directory that is no ``what``: ``write(tmp)`` writes the other files and returns the marker's
    record (values JSON cannot hold are written as text)."""
    target = Path(target)
    check_replaceable(target, marker, what)

    def write_all(tmp: Path) -> None:
        record = write(tmp)
        (tmp / marker).write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")

    return replace_dir_atomically(target, write_all)


def read_marker_json(folder: Path, name: str, what: str):
    """The JSON value in ``folder/name``, the file that makes ``folder`` a ``what``; a missing
    or corrupt file is a one-line error."""
    path = Path(folder) / name
    if not path.is_file():
        raise BrickworkError(f"{folder} is not a {what}: {name} is missing")
    return read_json(path)


def read_tensors(path: Path) -> dict:
    """The tensors of a safetensors file; an unreadable one is a one-line error."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file  # torch only where tensors are read

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise BrickworkError(f"cannot read {path}: {exc}") from None


def read_versioned_json(folder: Path, name: str, what: str, fmt: str, version: int) -> dict:
    """``folder/name``: a JSON object whose ``format`` is ``fmt`` and ``format_version`` is
    ``version``; a missing, corrupt or foreign file is a one-line error naming ``what`` it is."""
    path = Path(folder) / name
    record = read_marker_json(folder, name, what)
    if not isinstance(record, dict) or record.get("format") != fmt:
        raise BrickworkError(f"{path} is not a {fmt} file")
    if record.get("format_version") != version:
        raise BrickworkError(
            f"{folder} has {what} format version {record.get('format_version')!r}; "
            f"this brickwork reads version {version}"
        )
    return record
