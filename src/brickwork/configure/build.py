"""Build once, use many times: a configured model (slice + recovery) saved to a directory.

A configured model directory holds the compact model (``compact/``, configure/compact.py
``save_compact``), its recovery brick (``recovery/``) and ``configured.json`` (functionality,
budget, fingerprints, recovery metrics). ``brickwork generate --configured DIR`` looks through a
directory of them for the routed functionality and budget.

The directory itself is also a plain Hugging Face model (config.json, model.safetensors and the
tokenizer beside the subfolders): the recovered compact model, each layer's FFN zero-padded to
the widest kept layer (padded neurons have all-zero weights, so they add nothing), with
config.json naming that width. ``AutoModelForCausalLM.from_pretrained(DIR)`` and
``brickwork --model DIR`` load it and compute what ``load_configured`` does; it repeats the
compact weights (that copy is what plain transformers reads).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from brickwork.bricks.format import load_brick, save_brick
from brickwork.bricks.recovery import apply_recovery, swapped_parameters
from brickwork.configure.compact import (
    CompactModel,
    check_budget,
    gather_ffn,
    load_compact,
    save_compact,
)
from brickwork.configure.recover import RecoverySettings, recover
from brickwork.configure.select import SelectionStats, check_stats, functionality_selection
from brickwork.data.sample import Sample
from brickwork.errors import BrickworkError
from brickwork.io import write_text_atomically
from brickwork.models.load import LoadedModel
from brickwork.ops.grow.portable import save_padded

MANIFEST = "configured.json"


def build_configured(
    dense: LoadedModel,
    stats: SelectionStats,
    functionality: str,
    budget: float,
    train: list[Sample],
    settings: RecoverySettings | None = None,
    *,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> tuple[CompactModel, object]:
    """(the compact model of ``functionality`` at ``budget``, its recovery brick), recovered on
    the functionality's samples of ``train`` (pass the train split)."""
    check_budget(budget)
    check_stats(stats, dense)
    stats.index(functionality)
    rule = f"{functionality} neuron set + resident neurons, then train-split importance"
    info = {"rule": rule, "functionality": functionality, "budget": budget}
    compact = gather_ffn(dense, functionality_selection(stats, {functionality: 1.0}, budget), info)
    own = [s for s in train if s.functionality == functionality]
    started = time.perf_counter()
    brick = recover(
        dense,
        compact,
        own,
        settings or RecoverySettings(),
        name=f"recovery-{functionality}-{round(budget * 100)}",
        cache_dir=cache_dir,
        progress=progress,
    )
    brick.metrics["wall_seconds"] = time.perf_counter() - started
    return compact, brick


def save_configured(compact: CompactModel, brick, out_dir: str | Path) -> Path:
    """Write the compact model, its recovery brick and the manifest under ``out_dir``."""
    folder = Path(out_dir)
    if folder.exists() and any(folder.iterdir()) and not (folder / MANIFEST).is_file():
        raise BrickworkError(f"{folder} exists and is not a configured model directory")
    folder.mkdir(parents=True, exist_ok=True)
    save_compact(compact, folder / "compact")
    save_brick(brick, folder / "recovery")
    _save_plain(compact, brick, folder)
    manifest = {
        "functionality": compact.info.get("functionality"),
        "budget": compact.info.get("budget"),
        "compact_model": compact.loaded.fingerprint,
        "base_model": compact.base_fingerprint,
        "recovery": brick.name,
        "settings": brick.spec.settings,
        "metrics": brick.metrics,
    }
    text = json.dumps(manifest, indent=1)
    write_text_atomically(folder / MANIFEST, text)
    return folder


def _save_plain(compact: CompactModel, brick, folder: Path) -> None:
    """The recovered compact model as a plain Hugging Face model in ``folder`` (module doc)."""
    loaded = compact.loaded
    widths = {str(i): w for i, w in enumerate(compact.widths)}
    staging = folder / ".plain-model.tmp"
    shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted save
    with swapped_parameters(loaded.model, brick.tensors):
        save_padded(loaded, staging, widths, max(compact.widths))
    loaded.tokenizer.save_pretrained(staging)
    for file in sorted(staging.iterdir()):
        file.replace(folder / file.name)  # each file appears whole
    staging.rmdir()


def load_configured(folder: str | Path) -> CompactModel:
    """The saved compact model with its recovery brick applied (refused if not its own)."""
    folder = Path(folder)
    manifest = _manifest(folder)
    compact = load_compact(folder / "compact")
    brick = load_brick(folder / "recovery")
    apply_recovery(compact.loaded, brick)
    compact.info["rule"] = (
        f"prebuilt recovered model {folder} ({brick.spec.mode} recovery, "
        f"{brick.metrics.get('steps_run', '?')} steps); " + compact.info.get("rule", "")
    )
    compact.info["prebuilt"] = str(folder)
    compact.info["budget"] = manifest["budget"]
    return compact


def configured_dirs(root: str | Path) -> dict[tuple[str, float], Path]:
    """{(functionality, budget): directory} of the configured models in ``root`` (or ``root``
    itself if it is one); a missing directory or one with none is an error."""
    root = Path(root)
    if not root.is_dir():
        raise BrickworkError(f"no configured model directory at {root}")
    folders = [root] if (root / MANIFEST).is_file() else sorted(root.iterdir())
    found = {}
    for folder in folders:
        if (folder / MANIFEST).is_file():
            manifest = _manifest(folder)
            found[manifest["functionality"], round(float(manifest["budget"]), 6)] = folder
    if not found:
        raise BrickworkError(f"{root} holds no configured model (no {MANIFEST})")
    return found


def prebuilt_for(
    found: dict, functionality: str | None, budget: float, dense: LoadedModel | None = None
) -> CompactModel | None:
    """The prebuilt recovered model for ``functionality`` at ``budget``, or None; with
    ``dense``, one cut from other base weights is refused."""
    folder = found.get((functionality, round(float(budget), 6)))
    if folder is None:
        return None
    if dense is not None:
        dense.require_base(_manifest(folder)["base_model"], f"the configured model {folder}")
    return load_configured(folder)


def _manifest(folder: Path) -> dict:
    file = folder / MANIFEST
    if not file.is_file():
        raise BrickworkError(f"{folder} is not a configured model directory (no {MANIFEST})")
    return json.loads(file.read_text(encoding="utf-8"))
