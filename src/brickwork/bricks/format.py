"""The on-disk brick format (docs/brick_format.md): a directory with brick.json and
weights.safetensors, plus the files a kind adds (a LoRA brick's PEFT adapter files, so
``PeftModel.from_pretrained(base, brick_dir)`` loads it as is). Version 1 is migrated on read.

A brick directory is written to a temporary directory beside the target, then renamed: it appears
whole or not at all. brick.json records a sha256 of every other file; loading checks them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors.torch import save_file

from brickwork.bricks.brick import ORIGINS, Brick, check_name
from brickwork.bricks.kinds import brick_kind
from brickwork.bricks.migrate import migrate_v1
from brickwork.errors import BrickworkError
from brickwork.io import read_tensors, read_versioned_json, replace_dir_atomically, sha256_file

FORMAT = "brickwork-brick"
FORMAT_VERSION = 2
META_FILE = "brick.json"
WEIGHTS_FILE = "weights.safetensors"
# Tensors under this prefix (e.g. a purpose embedding) are brickwork's, never an adapter's.
EXTRA_PREFIX = "brickwork."


def save_brick(brick: Brick, target: str | Path) -> Path:
    """Write ``brick`` as a directory at ``target`` (replacing an older one only when complete)."""
    replace_dir_atomically(Path(target), lambda tmp: write_brick_files(brick, tmp))
    return target


def write_brick_files(brick: Brick, folder: Path) -> None:
    """Write the brick's files into an existing (empty) folder."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in brick.tensors.items()}
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": FORMAT})
    write_files = brick_kind(brick.kind).write_files
    if write_files is not None:  # e.g. a LoRA brick's PEFT adapter files
        write_files(brick, folder, tensors)
    files = {p.name: sha256_file(p) for p in sorted(folder.iterdir())}
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": brick.name,
        "kind": brick.kind,
        "origin": brick.origin,
        "purpose": brick.purpose,
        "base_model": brick.base_model,
        "description": brick.description,
        "spec": brick.spec.to_json(),
        "provenance": brick.provenance,
        "metrics": brick.metrics,
        "files": files,
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
    for path in folder.iterdir():
        os.chmod(path, 0o644)


def read_brick_meta(folder: str | Path) -> dict:
    """brick.json of a brick directory, checked for format, version and every field (the spec
    against its kind's typed spec); a version 1 file is migrated to the current version on read
    (the directory is left as it is)."""
    try:
        meta = read_versioned_json(Path(folder), META_FILE, "brick", FORMAT, FORMAT_VERSION)
    except BrickworkError as error:
        try:
            old = read_versioned_json(Path(folder), META_FILE, "brick", FORMAT, 1)
        except BrickworkError:
            raise error from None
        meta = migrate_v1(old)
    problems = _meta_problems(meta)
    if problems:
        raise BrickworkError(f"{Path(folder) / META_FILE} is invalid: {'; '.join(problems)}")
    return meta


_META_TYPES = {
    "name": str,
    "kind": str,
    "origin": str,
    "purpose": str,
    "base_model": str,
    "files": dict,
    "description": (str, None),
    "spec": (dict, None),
    "provenance": (dict, None),
    "metrics": (dict, None),
}


def _meta_problems(meta: dict) -> list[str]:
    """What is wrong with the fields of a brick.json ([] if nothing)."""
    problems = []
    for key, kind in _META_TYPES.items():
        optional = isinstance(kind, tuple)
        value = meta.get(key)
        if value is None and optional:
            continue
        wanted = kind[0] if optional else kind
        if not isinstance(value, wanted):
            problems.append(f"{key!r} must be a {wanted.__name__}, not {value!r:.40}")
    if problems:
        return problems
    files = meta["files"]
    if WEIGHTS_FILE not in files:
        problems.append(f"'files' must list {WEIGHTS_FILE}")
    for name, digest in files.items():
        if name in ("", ".", "..", META_FILE) or "/" in name or "\\" in name:
            problems.append(f"'files' lists {name!r}, not a file inside the brick")
        elif not (isinstance(digest, str) and len(digest) == 64):
            problems.append(f"'files' has no sha256 for {name!r}")
    try:  # the name, kind, origin and spec, checked as a Brick checks them
        check_name(meta["name"])
        kind = brick_kind(meta["kind"])
        if meta["origin"] not in ORIGINS:
            problems.append(f"unknown origin {meta['origin']!r}")
        kind.spec_cls.from_json(meta.get("spec") or {})
    except BrickworkError as exc:
        problems.append(str(exc))
    return problems


def verify_brick(folder: str | Path) -> list[str]:
    """Names of files whose sha256 differs from brick.json (or that are missing); [] if intact."""
    folder = Path(folder)
    meta = read_brick_meta(folder)
    bad = []
    for name, digest in meta["files"].items():
        path = folder / name
        if not path.is_file() or sha256_file(path) != digest:
            bad.append(name)
    unlisted = [p.name for p in folder.iterdir() if p.name not in meta["files"]]
    return bad + sorted(n for n in unlisted if n != META_FILE)


def load_brick(folder: str | Path) -> Brick:
    """Read a brick directory, refusing corrupt, truncated or foreign files."""
    folder = Path(folder)
    meta = read_brick_meta(folder)
    damaged = verify_brick(folder)
    if damaged:
        raise BrickworkError(
            f"brick {folder} is corrupt: checksum mismatch in {', '.join(damaged)}"
        )
    tensors = read_tensors(folder / WEIGHTS_FILE)
    return Brick(
        name=meta["name"],
        kind=meta["kind"],
        origin=meta["origin"],
        purpose=meta["purpose"],
        base_model=meta["base_model"],
        tensors=tensors,
        spec=meta.get("spec", {}),
        provenance=meta.get("provenance", {}),
        metrics=meta.get("metrics", {}),
        description=meta.get("description", ""),
    )
