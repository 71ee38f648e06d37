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

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from brickwork.bricks.brick import Brick
from brickwork.bricks.kinds import brick_kind
from brickwork.bricks.migrate import migrate_v1
from brickwork.errors import BrickworkError
from brickwork.io import read_versioned_json, replace_dir_atomically, sha256_file

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
    """brick.json of a brick directory, checked for format and version; a version 1 file is
    migrated to the current version on read (the directory is left as it is)."""
    try:
        return read_versioned_json(Path(folder), META_FILE, "brick", FORMAT, FORMAT_VERSION)
    except BrickworkError as error:
        try:
            old = read_versioned_json(Path(folder), META_FILE, "brick", FORMAT, 1)
        except BrickworkError:
            raise error from None
    return migrate_v1(old)


def verify_brick(folder: str | Path) -> list[str]:
    """Names of files whose sha256 differs from brick.json (or that are missing); [] if intact."""
    folder = Path(folder)
    meta = read_brick_meta(folder)
    bad = []
    for name, digest in meta.get("files", {}).items():
        path = folder / name
        if not path.is_file() or sha256_file(path) != digest:
            bad.append(name)
    return bad


def load_brick(folder: str | Path) -> Brick:
    """Read a brick directory, refusing corrupt, truncated or foreign files."""
    folder = Path(folder)
    meta = read_brick_meta(folder)
    damaged = verify_brick(folder)
    if damaged:
        raise BrickworkError(
            f"brick {folder} is corrupt: checksum mismatch in {', '.join(damaged)}"
        )
    try:
        tensors = load_file(str(folder / WEIGHTS_FILE))
    except (SafetensorError, OSError) as exc:
        raise BrickworkError(f"brick {folder} has unreadable weights: {exc}") from None
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
