"""Attach bricks to a loaded model inside a context; on exit the model is exactly as before.

- neuron sets: ``mode="keep"`` zeroes every other neuron, ``mode="ablate"`` zeroes the set's own;
- LoRA plugins: applied with PEFT and unloaded on exit (the original modules come back);
- steering plugins: a forward hook adds the vector to the chosen decoder layers' outputs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch

from brickwork.analysis.masking import zero_neurons
from brickwork.bricks.brick import Brick
from brickwork.bricks.format import write_brick_files
from brickwork.errors import BrickworkError
from brickwork.models.hooks import hooks
from brickwork.models.load import LoadedModel

MODES = ("keep", "ablate")


@contextmanager
def attach(
    loaded: LoadedModel, bricks: list[Brick], mode: str = "keep"
) -> Iterator[torch.nn.Module]:
    """Attach ``bricks``; yields the model to call (a PEFT wrapper when LoRAs are attached)."""
    if mode not in MODES:
        raise BrickworkError(f"mode must be one of {MODES}, not {mode!r}")
    for brick in bricks:
        loaded.require_base(brick.base_model, f"brick {brick.name!r}")
    with ExitStack() as stack:
        masks = [b.neuron_mask() for b in bricks if b.kind == "neuron_set"]
        if masks:
            union = torch.stack(masks).any(dim=0)
            stack.enter_context(zero_neurons(loaded, ~union if mode == "keep" else union))
        for brick in bricks:
            if brick.kind == "plugin" and brick.spec["plugin_type"] == "steering":
                stack.enter_context(_steer(loaded, brick))
        loras = [b for b in bricks if b.kind == "plugin" and b.spec["plugin_type"] == "lora"]
        unsupported = [b.name for b in bricks if b.kind not in ("neuron_set", "plugin")]
        if unsupported:
            raise BrickworkError(
                f"cannot attach {', '.join(unsupported)}: not a neuron set or plugin"
            )
        yield stack.enter_context(_lora(loaded, loras)) if loras else loaded.model


@contextmanager
def _steer(loaded: LoadedModel, brick: Brick) -> Iterator[None]:
    layers = loaded.family.layer_modules(loaded.model)
    vectors, scale = brick.tensors["vectors"], float(brick.spec.get("scale", 1.0))

    def hook_for(vector: torch.Tensor):
        def hook(module, args, output):
            if isinstance(output, tuple):
                return (output[0] + scale * vector.to(output[0].dtype), *output[1:])
            return output + scale * vector.to(output.dtype)

        return hook

    specs = [
        (layers[index], "forward", hook_for(vectors[row]))
        for row, index in enumerate(brick.spec["layers"])
    ]
    with hooks(specs):
        yield


@contextmanager
def _lora(loaded: LoadedModel, bricks: list[Brick]) -> Iterator[torch.nn.Module]:
    from peft import PeftModel

    with tempfile.TemporaryDirectory() as tmp:
        folders = []
        for brick in bricks:
            folder = Path(tmp) / brick.name
            folder.mkdir()
            write_brick_files(brick, folder)
            folders.append(folder)
        peft_model = PeftModel.from_pretrained(
            loaded.model, folders[0], adapter_name=bricks[0].name
        )
        try:
            for brick, folder in zip(bricks[1:], folders[1:], strict=True):
                peft_model.load_adapter(folder, adapter_name=brick.name)
            if len(bricks) > 1:
                peft_model.base_model.set_adapter([b.name for b in bricks])
            peft_model.eval()
            yield peft_model
        finally:
            peft_model.unload()  # puts the original modules back into loaded.model
