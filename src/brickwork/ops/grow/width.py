"""Width growth: add FFN neurons to chosen layers, leaving the model's output unchanged.

- ``method="zero"``: the new neurons' input rows are random (the scale of the existing rows) and
  their output columns are zero, so they add nothing until trained.
- ``method="split"`` (Net2Net): the new neurons copy randomly chosen existing neurons, and the
  output column of each copied neuron is halved between it and its copy.

The new neurons are appended after the old ones; only they are marked trainable.
"""

from __future__ import annotations

import torch

from brickwork.errors import BrickworkError, check_choice
from brickwork.models.ffn import FfnWeights, build_ffn, neuron_dims, read_ffn
from brickwork.models.load import LoadedModel
from brickwork.ops.grow.record import (
    GrownModel,
    TrainSlice,
    check_positive,
    finish_growth,
    start_layer_growth,
)

WIDTH_METHODS = ("zero", "split")


def grow_width(
    source: LoadedModel | GrownModel,
    layers: list[int],
    neurons: int,
    *,
    method: str = "zero",
    seed: int = 0,
) -> GrownModel:
    """A copy of the model with ``neurons`` new FFN neurons in each of ``layers``."""
    check_positive(neurons, "the number of new neurons")
    check_choice(method, WIDTH_METHODS, "width method")
    loaded, base, history, modules, layers = start_layer_growth(source, layers)
    family = loaded.family
    generator = torch.Generator().manual_seed(seed)
    trainable, widths = {}, {}
    for index in layers:
        mlp = family.ffn(modules[index])
        if not hasattr(mlp, family.down):
            raise BrickworkError(f"layer {index}'s FFN is not a plain FFN (already experts?)")
        old = read_ffn(family, mlp)
        grown = (
            _split(old, neurons, generator) if method == "split" else _zero(old, neurons, generator)
        )
        setattr(modules[index], family.mlp, build_ffn(family, mlp, grown))
        widths[index] = grown.width
        prefix = _ffn_prefix(loaded, modules[index])
        for name, dim in neuron_dims(family).items():
            if _has_param(mlp, name):
                trainable[f"{prefix}{name}"] = TrainSlice(dim, old.width)
    entry = {
        "op": "width",
        "layers": layers,
        "neurons": neurons,
        "method": method,
        "seed": seed,
        "widths": widths,
    }
    return finish_growth(loaded, base, history, entry, trainable)


def _zero(old: FfnWeights, n: int, generator: torch.Generator) -> FfnWeights:
    """n neurons with random input rows (each projection's row scale) and zero output columns."""
    inputs = {}
    for name, weight in old.inputs.items():
        noise = torch.randn(n, weight.shape[1], generator=generator)
        inputs[name] = (noise * weight.float().std()).to(weight.dtype)
    biases = {
        k: None if b is None else torch.zeros(n, dtype=b.dtype) for k, b in old.input_biases.items()
    }
    down = torch.zeros(old.down.shape[0], n, dtype=old.down.dtype)
    return old.append(FfnWeights(inputs, biases, down, None))


def _split(old: FfnWeights, n: int, generator: torch.Generator) -> FfnWeights:
    """Net2Net: copy n distinct random neurons (with replacement when n > d_ff), halving the
    output column of each copied neuron between the original and the copy."""
    if n <= old.width:
        chosen = torch.randperm(old.width, generator=generator)[:n]
    else:
        chosen = torch.randint(old.width, (n,), generator=generator)
    copies = old.select(chosen)
    # A neuron copied c times keeps 1 / (c + 1) of its column, and so does each copy.
    share = 1.0 / (1.0 + torch.bincount(chosen, minlength=old.width).to(old.down.dtype))
    old = FfnWeights(old.inputs, old.input_biases, old.down * share, old.down_bias)
    copies.down = old.down[:, chosen].clone()
    return old.append(copies)


def _ffn_prefix(loaded: LoadedModel, layer: torch.nn.Module) -> str:
    """'model.layers.3.mlp.' for that layer's FFN, found by identity."""
    mlp = loaded.family.ffn(layer)
    for name, module in loaded.model.named_modules():
        if module is mlp:
            return f"{name}."
    raise BrickworkError("the FFN is not part of the model")  # cannot happen for a real layer


def _has_param(mlp: torch.nn.Module, name: str) -> bool:
    module_name, _, param = name.rpartition(".")
    return getattr(getattr(mlp, module_name), param, None) is not None
