"""Bricks to and from the Hugging Face Hub: a brick directory is uploaded as a Hub repository with
a generated model card (README.md), and downloaded back into a local repository, verified.

A LoRA brick's directory is also a PEFT adapter directory, so ``PeftModel.from_pretrained`` and
``AutoPeftModelForCausalLM`` read a pushed brick directly from the Hub.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from brickwork.bricks.brick import Brick
from brickwork.bricks.format import META_FILE, load_brick, read_brick_meta, save_brick
from brickwork.errors import BrickworkError

CARD_FILE = "README.md"


def model_card(brick: Brick) -> str:
    """A Hub model card: YAML metadata (library, base model, tags) and what the brick records."""
    provenance = brick.provenance
    base = provenance.get("base_model_name") or provenance.get("model")
    meta = ["---", "library_name: " + ("peft" if brick.kind == "lora" else "brickwork")]
    if isinstance(base, str) and base:
        meta.append(f"base_model: {base}")
    meta += ["tags:", "- brickwork", f"- {brick.kind}", "---", ""]
    lines = [
        f"# {brick.name}",
        "",
        brick.description or f"A {brick.kind} brick for {brick.purpose}.",
    ]
    lines += ["", "| field | value |", "|---|---|"]
    rows = {
        "kind": brick.kind,
        "origin": brick.origin,
        "purpose": brick.purpose,
        "base model fingerprint": brick.base_model,
        "data hash": provenance.get("dataset_hash") or provenance.get("data_hash"),
        "seed": provenance.get("seed"),
        "command": provenance.get("command"),
    }
    lines += [f"| {k} | `{v}` |" for k, v in rows.items() if v not in (None, "")]
    if brick.metrics:
        lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_value(v)} |" for k, v in brick.metrics.items()]
    parents = provenance.get("parents") or []
    if parents:
        lines += ["", "## Parents", ""]
        lines += [f"- {p.get('name', p) if isinstance(p, dict) else p}" for p in parents]
    if provenance.get("recipe"):
        import yaml

        lines += [
            "",
            "## Recipe",
            "",
            "```yaml",
            yaml.safe_dump(provenance["recipe"]).strip(),
            "```",
        ]
    lines += ["", "Load it with `brickwork bricks pull REPO_ID --repo BRICKS` (brickwork)."]
    return "\n".join(meta + lines) + "\n"


def push_brick(brick: Brick, repo_id: str, *, token: str | None = None, private: bool = False):
    """Upload ``brick`` (its directory plus a model card) to the Hub repository ``repo_id``."""
    from huggingface_hub import HfApi

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / brick.name
        save_brick(brick, folder)
        (folder / CARD_FILE).write_text(model_card(brick), encoding="utf-8")
        api = HfApi(token=token)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            return api.upload_folder(folder_path=str(folder), repo_id=repo_id)
        except Exception as exc:  # network, authentication and Hub errors have many types
            raise BrickworkError(f"cannot push to the Hub repository {repo_id}: {exc}") from None


def pull_brick(repo_id: str, *, revision: str | None = None, token: str | None = None) -> Brick:
    """Download the brick in Hub repository ``repo_id`` and verify it against its checksums."""
    from huggingface_hub import snapshot_download

    with tempfile.TemporaryDirectory() as tmp:
        try:
            folder = snapshot_download(
                repo_id, revision=revision, token=token, local_dir=Path(tmp) / "brick"
            )
        except Exception as exc:  # offline, missing repository, authentication ...
            raise BrickworkError(f"cannot download {repo_id} from the Hub: {exc}") from None
        return load_brick(_brick_files(Path(folder), Path(tmp) / "clean"))


def _brick_files(folder: Path, clean: Path) -> Path:
    """A copy of the files brick.json lists (the Hub adds a card, .gitattributes, a cache)."""
    meta = read_brick_meta(folder)
    clean.mkdir()
    for name in [META_FILE, *meta["files"]]:
        source = folder / name
        if not source.resolve().is_relative_to(folder.resolve()) or not source.is_file():
            raise BrickworkError(f"the downloaded brick lacks its file {name}")
        (clean / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, clean / name)
    return clean


def _value(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else f"`{value}`"
