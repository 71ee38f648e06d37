"""Attach bricks to a loaded model inside a context; on exit the model is exactly as before.

- neuron sets: ``mode="keep"`` zeroes every other neuron, ``mode="ablate"`` zeroes the set's own;
- LoRA plugins: applied with PEFT and unloaded on exit (the original modules come back);
- steering plugins: a forward hook adds the vector to the chosen decoder layers' outputs;
- deltas: an edit is written into the weights and rolled back; injected neurons are hooked in.

Each kind's attach is looked up in the registry (``brickwork.bricks.kinds``).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch

from brickwork.analysis.masking import zero_neurons
from brickwork.bricks.brick import Brick
from brickwork.bricks.format import write_brick_files
from brickwork.bricks.kinds import brick_kind, kind_names
from brickwork.errors import BrickworkError, check_choice
from brickwork.models.hooks import hooks
from brickwork.models.load import LoadedModel

MODES = ("keep", "ablate")


@contextmanager
def attach(
    loaded: LoadedModel, bricks: list[Brick], mode: str = "keep"
) -> Iterator[torch.nn.Module]:
    """Attach ``bricks``; yields the model to call (a PEFT wrapper when LoRAs are attached)."""
    check_choice(mode, MODES, "mode")
    for brick in bricks:
        loaded.require_base(brick.base_model, f"brick {brick.name!r}")
    refused = [b.name for b in bricks if brick_kind(b.kind).attach is None]
    if refused:
        kinds = ", ".join(k for k in kind_names() if brick_kind(k).attach is not None)
        raise BrickworkError(f"cannot attach {', '.join(refused)}: only {kinds} bricks attach")
    with ExitStack() as stack:
        model = loaded.model
        for name in kind_names():  # registration order: LoRA, which wraps the model, last
            group = [b for b in bricks if b.kind == name]
            if group:
                wrapped = stack.enter_context(brick_kind(name).attach(loaded, group, mode))
                model = model if wrapped is None else wrapped
        yield model


@contextmanager
def attach_neuron_sets(loaded: LoadedModel, bricks: list[Brick], mode: str) -> Iterator[None]:
    """Zero every neuron outside the sets' union (``keep``) or inside it (``ablate``)."""
    layers = len(loaded.family.layer_modules(loaded.model))
    shape = (layers, loaded.family.d_ff(loaded.model.config))
    for brick in bricks:
        if tuple(brick.neuron_mask().shape) != shape:
            raise BrickworkError(
                f"neuron set {brick.name!r} has a mask of shape {list(brick.neuron_mask().shape)}"
                f"; this model needs {list(shape)} (layers, FFN width)"
            )
    union = torch.stack([b.neuron_mask() for b in bricks]).any(dim=0)
    with zero_neurons(loaded, ~union if mode == "keep" else union):
        yield None


@contextmanager
def _one_by_one(bricks: list[Brick], attach_one) -> Iterator[None]:
    """Each brick attached by the context ``attach_one(brick)``; detached in reverse on exit."""
    with ExitStack() as stack:
        for brick in bricks:
            stack.enter_context(attach_one(brick))
        yield None


def attach_steering(loaded: LoadedModel, bricks: list[Brick], mode: str):
    return _one_by_one(bricks, lambda brick: _steer(loaded, brick))


def attach_loras(loaded: LoadedModel, bricks: list[Brick], mode: str):
    return _lora(loaded, bricks)


def attach_deltas(loaded: LoadedModel, bricks: list[Brick], mode: str):
    """Apply each edit to the weights (rolled back on exit) or add its injected neurons."""
    return _one_by_one(bricks, lambda brick: _delta(loaded, brick))


@contextmanager
def _delta(loaded: LoadedModel, brick: Brick) -> Iterator[None]:
    from brickwork.ops.update import apply_edit, attach_neurons, rollback  # edits live there

    if brick.spec.update == "inject":
        with attach_neurons(loaded, brick):
            yield None
        return
    apply_edit(loaded, brick)
    try:
        yield None
    finally:
        rollback(loaded, brick)


@contextmanager
def _steer(loaded: LoadedModel, brick: Brick) -> Iterator[None]:
    layers = loaded.family.layer_modules(loaded.model)
    vectors, scale = brick.tensors["vectors"], float(brick.spec.get("scale", 1.0))
    _check_steering(brick, vectors, len(layers), loaded.model.get_input_embeddings().embedding_dim)

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


def _check_steering(brick: Brick, vectors: torch.Tensor, n_layers: int, width: int) -> None:
    """A vector of the model's width per listed layer, every layer in range, all finite."""
    wanted = [len(brick.spec["layers"]), width]
    problem = None
    if list(vectors.shape) != wanted:
        problem = f"vectors of shape {list(vectors.shape)}, not {wanted}"
    elif bad := [i for i in brick.spec["layers"] if not 0 <= i < n_layers]:
        problem = f"layer {bad[0]}, not in 0..{n_layers - 1}"
    elif not (torch.isfinite(vectors).all() and math.isfinite(brick.spec["scale"])):
        problem = "vectors or a scale that are not finite (NaN or infinite)"
    if problem:
        raise BrickworkError(f"steering brick {brick.name!r} has {problem}")


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
