"""Depth growth (LLaMA Pro): insert identity-initialised copies of decoder blocks.

A new block at position p copies the block before it (block 0 for p = 0) and then writes nothing
to the residual stream: its attention-output and FFN-output projections are zeroed. In families
that normalise those outputs before adding them (Gemma's post-attention and post-FFN norms), the
norms' scale is zeroed instead: zeroing the projections there would leave the block without any
gradient, since a norm of zeros passes none back. Layer indices (the KV-cache slots), the layer
count and any per-layer attention types (sliding or full) are updated to match.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from brickwork.errors import BrickworkError
from brickwork.models.families import Family
from brickwork.models.load import LoadedModel
from brickwork.ops.grow.record import GrownModel, TrainSlice, finish_growth, start_growth


def grow_depth(source: LoadedModel | GrownModel, positions: list[int]) -> GrownModel:
    """A copy of the model with an identity block inserted before each layer index in
    ``positions`` (indices of the input model; ``n_layers`` appends at the end)."""
    loaded, base, history = start_growth(source)
    family, model = loaded.family, loaded.model
    n_layers = len(family.layer_modules(model))
    positions = _check_positions(positions, n_layers)
    if getattr(model.config, "scale_attn_by_inverse_layer_idx", False):
        raise BrickworkError("depth growth is not supported when attention scales by layer index")
    original = list(family.layer_list(model))
    original_types = getattr(model.config, "layer_types", None)
    layers = list(original)
    types = list(original_types) if isinstance(original_types, list) else None
    new_indices, sources = [], []
    for offset, position in enumerate(positions):
        source_index = max(position - 1, 0)
        at = position + offset  # earlier insertions shift later positions by one each
        layers.insert(at, identity_block(family, original[source_index]))
        if types is not None:
            types.insert(at, original_types[source_index])
        new_indices.append(at)
        sources.append(source_index)
    _replace_layers(family, model, layers)
    if types is not None:
        model.config.layer_types = types
    model.config.num_hidden_layers = len(layers)
    family.renumber_layers(model)
    trainable = {}
    for name, _ in model.named_parameters():
        if any(name.startswith(f"{family.layers}.{i}.") for i in new_indices):
            trainable[name] = TrainSlice()
    entry = {
        "op": "depth",
        "positions": positions,
        "new_layers": new_indices,
        "copied_from": sources,
        "n_layers": len(layers),
    }
    return finish_growth(loaded, base, history, entry, trainable)


def identity_block(family: Family, layer: nn.Module) -> nn.Module:
    """A copy of ``layer`` whose output equals its input."""
    block = copy.deepcopy(layer)
    with torch.no_grad():
        if family.residual_norms:
            for path in family.residual_norms:
                block.get_submodule(path).weight.fill_(-family.norm_offset)
        else:
            for path in family.residual_writers:
                writer = block.get_submodule(path)
                writer.weight.zero_()
                if getattr(writer, "bias", None) is not None:
                    writer.bias.zero_()
    return block


def _check_positions(positions: list[int], n_layers: int) -> list[int]:
    if not positions:
        raise BrickworkError("give at least one position to insert a block at")
    bad = [p for p in positions if not isinstance(p, int) or not 0 <= p <= n_layers]
    if bad:
        raise BrickworkError(
            f"position {bad[0]} is out of range: blocks go before layer 0..{n_layers - 1} "
            f"or at the end ({n_layers})"
        )
    if len(set(positions)) != len(positions):
        raise BrickworkError(f"positions must not repeat: {positions}")
    return sorted(positions)


def _replace_layers(family: Family, model: nn.Module, layers: list[nn.Module]) -> None:
    parent_path, _, attr = family.layers.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, nn.ModuleList(layers))
