"""Customized plugin bricks: LoRA adapters (in PEFT's own format) and steering vectors."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from brickwork.bricks.brick import Brick, kind_brick
from brickwork.bricks.format import EXTRA_PREFIX, WEIGHTS_FILE
from brickwork.bricks.specs import LoraSpec, SteeringSpec
from brickwork.errors import BrickworkError

PEFT_CONFIG_FILE = "adapter_config.json"
PEFT_WEIGHTS_FILE = "adapter_model.safetensors"


def lora_brick_from_peft(
    peft_model, name: str, purpose: str, base_model: str, *, base_location=None, **fields
) -> Brick:
    """Wrap a trained PEFT LoRA model's adapter as a plugin brick.

    PEFT writes its own adapter files; the brick keeps them byte for byte, so the brick directory
    is a PEFT adapter directory too. ``base_location`` (``LoadedModel.hf_location``: a directory
    or Hub id) becomes its ``base_model_name_or_path``, so ``AutoPeftModelForCausalLM`` rebuilds
    the model; the fingerprint ``base_model`` is what brickwork checks.
    """
    with tempfile.TemporaryDirectory() as tmp:
        peft_model.save_pretrained(tmp)
        folder = Path(tmp)
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        tensors = load_file(str(folder / "adapter_model.safetensors"))
    config["base_model_name_or_path"] = base_location
    spec = LoraSpec(peft_config=config)
    return kind_brick("lora", "customized", name, purpose, base_model, tensors, spec, fields)


def write_peft_files(brick: Brick, folder: Path, tensors: dict[str, torch.Tensor]) -> None:
    """A LoRA brick's PEFT adapter files beside weights.safetensors (already written)."""
    config = json.dumps(brick.spec.peft_config, indent=1)
    (folder / PEFT_CONFIG_FILE).write_text(config, encoding="utf-8")
    adapter = {k: v for k, v in tensors.items() if not k.startswith(EXTRA_PREFIX)}
    if len(adapter) == len(tensors):
        shutil.copyfile(folder / WEIGHTS_FILE, folder / PEFT_WEIGHTS_FILE)
    else:  # PEFT's file holds only the adapter's own tensors
        save_file(adapter, str(folder / PEFT_WEIGHTS_FILE), metadata={"format": "pt"})


def lora_on_compact(brick: Brick, sliced: set[str]) -> None:
    """Refuse a LoRA brick that adapts FFN projections a compact model has sliced."""
    targets = brick.spec.peft_config.get("target_modules") or []
    if sliced & set([targets] if isinstance(targets, str) else targets):
        raise BrickworkError(f"plugin {brick.name!r} adapts sliced FFN projections")


def check_steering_numbers(name: str, vectors: torch.Tensor | None, scale: float) -> None:
    """Refuse steering vectors or a scale that are not finite (NaN or infinite)."""
    if not math.isfinite(scale) or (vectors is not None and not torch.isfinite(vectors).all()):
        raise BrickworkError(f"steering brick {name!r} has a scale or vectors that are not finite")


def steering_brick(
    name: str,
    purpose: str,
    base_model: str,
    vectors: torch.Tensor,
    layers: list[int],
    scale: float = 1.0,
    **fields,
) -> Brick:
    """A steering vector per chosen layer, added to that decoder layer's output hidden states."""
    check_steering_numbers(name, vectors, scale)
    spec = SteeringSpec(layers=list(layers), scale=scale)
    tensors = {"vectors": vectors.float()}
    return kind_brick("steering", "customized", name, purpose, base_model, tensors, spec, fields)
