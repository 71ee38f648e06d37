"""Sparse upcycling: turn a dense FFN into a mixture of experts with a router.

- ``mode="copies"`` (Komatsuzaki et al.): every expert is a copy of the FFN. The router's top-k
  weights sum to one, so whatever it starts as, the output equals the dense FFN's.
- ``mode="groups"``: the experts are the FFN's neuron groups (the bricks issue's neuron-group
  bricks, or contiguous equal groups), which together are the FFN. With all experts active
  (top_k = n_experts) and the router at zero, each gets weight 1/n, scaled back by n, so the sum
  is the dense output; a smaller top_k makes it sparse (and no longer equal at init).

The router is a zero-initialised linear map from the FFN input to expert logits; the module is
models/experts.py's ``MoEFFN`` with softmax mixing. Every expert is computed (a reference
implementation for small models, not a fast kernel).
"""

from __future__ import annotations

import torch
from torch import nn

from brickwork.errors import BrickworkError, check_choice
from brickwork.models.experts import MoEFFN, group_experts, zero_router
from brickwork.models.ffn import build_ffn, ffn_width, read_ffn
from brickwork.models.load import LoadedModel
from brickwork.ops.grow.record import (
    GrownModel,
    TrainSlice,
    check_positive,
    finish_growth,
    start_layer_growth,
)

EXPERT_MODES = ("copies", "groups")


def grow_experts(
    source: LoadedModel | GrownModel,
    layers: list[int],
    n_experts: int,
    *,
    mode: str = "copies",
    top_k: int | None = None,
    assignments: dict[int, torch.Tensor] | None = None,
) -> GrownModel:
    """A copy of the model whose FFN in each of ``layers`` is an MoE of ``n_experts`` experts.

    ``assignments`` (mode "groups") maps a layer to its [d_ff] group ids, e.g. a neuron-group
    brick's ``tensors["assignment"]``; layers without one get contiguous equal groups.
    """
    check_positive(n_experts, "the number of experts")
    check_choice(mode, EXPERT_MODES, "expert mode")
    top_k = _top_k(top_k, n_experts, mode)
    loaded, base, history, modules, layers = start_layer_growth(source, layers)
    family = loaded.family
    for index in layers:
        mlp = family.ffn(modules[index])
        if isinstance(mlp, MoEFFN):
            raise BrickworkError(f"layer {index}'s FFN is already a mixture of experts")
        groups = (assignments or {}).get(index)
        experts = (
            _group_experts(loaded, mlp, n_experts, groups)
            if mode == "groups"
            else [build_ffn(family, mlp, read_ffn(family, mlp)) for _ in range(n_experts)]
        )
        scale = float(n_experts) if mode == "groups" else 1.0
        moe = MoEFFN(family, experts, zero_router(family, experts), top_k, scale=scale)
        setattr(modules[index], family.mlp, moe)
    trainable = {
        name: TrainSlice()
        for name, _ in loaded.model.named_parameters()
        if any(name.startswith(f"{family.layers}.{i}.{family.mlp}.") for i in layers)
    }
    entry = {
        "op": "experts",
        "layers": layers,
        "n_experts": n_experts,
        "mode": mode,
        "top_k": top_k,
        "widths": _expert_widths(loaded, layers),
    }
    return finish_growth(loaded, base, history, entry, trainable)


def _top_k(top_k: int | None, n_experts: int, mode: str) -> int:
    if top_k is None:
        return n_experts if mode == "groups" else min(2, n_experts)
    check_positive(top_k, "top_k")
    if top_k > n_experts:
        raise BrickworkError(f"top_k ({top_k}) cannot exceed the number of experts ({n_experts})")
    return top_k


def _group_experts(
    loaded: LoadedModel, mlp: nn.Module, n_experts: int, groups: torch.Tensor | None
) -> list[nn.Module]:
    """One expert per neuron group (contiguous equal groups unless ``groups`` is given)."""
    if groups is None:
        width = ffn_width(loaded.family, mlp)
        groups = torch.arange(width) * n_experts // width
    return group_experts(loaded.family, mlp, groups, n_experts)


def _expert_widths(loaded: LoadedModel, layers: list[int]) -> dict[int, list[int]]:
    family = loaded.family
    modules = family.layer_modules(loaded.model)
    return {i: [ffn_width(family, e) for e in family.ffn(modules[i]).experts] for i in layers}
