"""Customized plugin bricks: LoRA adapters (in PEFT's own format) and steering vectors."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from brickwork.bricks.brick import Brick


def lora_brick_from_peft(peft_model, name: str, purpose: str, base_model: str, **fields) -> Brick:
    """Wrap a trained PEFT LoRA model's adapter as a plugin brick.

    PEFT writes its own adapter files; the brick keeps them byte for byte, so the brick directory
    is a PEFT adapter directory too.
    """
    with tempfile.TemporaryDirectory() as tmp:
        peft_model.save_pretrained(tmp)
        folder = Path(tmp)
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        tensors = load_file(str(folder / "adapter_model.safetensors"))
    config["base_model_name_or_path"] = None  # the fingerprint ties it to its base, not a path
    spec = {"plugin_type": "lora", "peft_config": config}
    return Brick(
        name,
        "plugin",
        fields.pop("origin", "customized"),
        purpose,
        base_model,
        tensors=tensors,
        spec=spec,
        **fields,
    )


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
    spec = {"plugin_type": "steering", "layers": list(layers), "scale": scale}
    return Brick(
        name,
        "plugin",
        fields.pop("origin", "customized"),
        purpose,
        base_model,
        tensors={"vectors": vectors.float()},
        spec=spec,
        **fields,
    )
