"""The on-disk brick format (docs/brick_format.md): a directory with brick.json and
weights.safetensors; LoRA plugins are also PEFT adapter directories (adapter_config.json and
adapter_model.safetensors), so ``PeftModel.from_pretrained(base, brick_dir)`` loads them as is.

A brick directory is written to a temporary directory beside the target, then renamed: it appears
whole or not at all. brick.json records a sha256 of every other file; loading checks them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from brickwork.bricks.brick import Brick
from brickwork.errors import BrickworkError
from brickwork.io import read_versioned_json, replace_dir_atomically, sha256_file

FORMAT = "brickwork-brick"
FORMAT_VERSION = 1
META_FILE = "brick.json"
WEIGHTS_FILE = "weights.safetensors"
PEFT_CONFIG_FILE = "adapter_config.json"
PEFT_WEIGHTS_FILE = "adapter_model.safetensors"
# Tensors under this prefix (e.g. a purpose embedding) are brickwork's, never PEFT's.
EXTRA_PREFIX = "brickwork."


def save_brick(brick: Brick, target: str | Path) -> Path:
    """Write ``brick`` as a directory at ``target`` (replacing an older one only when complete)."""
    replace_dir_atomically(Path(target), lambda tmp: write_brick_files(brick, tmp))
    return target


def write_brick_files(brick: Brick, folder: Path) -> None:
    """Write the brick's files into an existing (empty) folder."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in brick.tensors.items()}
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": FORMAT})
    if brick.kind == "plugin" and brick.spec.get("plugin_type") == "lora":
        peft_config = brick.spec["peft_config"]
        (folder / PEFT_CONFIG_FILE).write_text(json.dumps(peft_config, indent=1), encoding="utf-8")
        adapter = {k: v for k, v in tensors.items() if not k.startswith(EXTRA_PREFIX)}
        if len(adapter) == len(tensors):
            shutil.copyfile(folder / WEIGHTS_FILE, folder / PEFT_WEIGHTS_FILE)
        else:  # PEFT's file holds only the adapter's own tensors
            save_file(adapter, str(folder / PEFT_WEIGHTS_FILE), metadata={"format": "pt"})
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
        "spec": brick.spec,
        "provenance": brick.provenance,
        "metrics": brick.metrics,
        "files": files,
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
    for path in folder.iterdir():
        os.chmod(path, 0o644)


def read_brick_meta(folder: str | Path) -> dict:
    """brick.json of a brick directory, checked for format and version."""
    return read_versioned_json(Path(folder), META_FILE, "brick", FORMAT, FORMAT_VERSION)


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
