"""Token-level routing of neuron groups (MoEfication): each FFN becomes G experts, top-k per token.

The groups are the neuron-group bricks (bricks/extract.py: one layer's FFN neurons split into equal
groups). Registered routers (configure/group_routers.py) score the groups from the FFN input x.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers.activations import ACT2FN

from brickwork.configure.group_routers import ROUTERS
from brickwork.errors import BrickworkError
from brickwork.models.experts import MoEFFN, centroid_router, group_experts
from brickwork.models.hooks import hooks
from brickwork.models.load import LoadedModel
from brickwork.profile.capture import capture_activations


def _grouped_ffn(
    loaded: LoadedModel, layer: nn.Module, assignment: torch.Tensor, top_k: int, router: str
) -> MoEFFN:
    """The layer's FFN as one expert per neuron group, running the top-k groups per token."""
    family = loaded.family
    with torch.random.fork_rng(devices=[]):  # moefy draws no numbers from the global RNG
        experts = group_experts(family, family.ffn(layer), assignment, int(assignment.max()) + 1)
    act = ACT2FN[family.activation_name(loaded.model.config)]
    routing = dict(mix="sum", scoring=ROUTERS[router].scoring, act=act)
    moe = MoEFFN(family, experts, centroid_router(family, experts), top_k, **routing)
    return moe.requires_grad_(False)


def moefy(
    loaded: LoadedModel,
    group_bricks: list,
    top_k: int,
    router: str = "similarity",
    trained: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> LoadedModel:
    """A new model whose FFNs run the top ``top_k`` neuron groups per token.

    ``group_bricks`` hold one neuron-group brick per layer, built for this model. ``trained``
    maps a layer to its trained router (weight [G, H], bias [G]) for ``router="trained"``.
    """
    trainable = ROUTERS[router].trained
    assignments = group_assignments(loaded, group_bricks)
    groups = {int(a.max()) + 1 for a in assignments}
    if not 1 <= top_k <= min(groups):
        raise BrickworkError(f"top_k must be in [1, {min(groups)}], not {top_k}")
    if trainable and not trained:
        raise BrickworkError("the trained router needs weights: call train_group_routers first")
    memo = {id(t): t for t in (*loaded.model.parameters(), *loaded.model.buffers())}
    model = copy.deepcopy(loaded.model, memo)
    family = loaded.family
    for index, layer in enumerate(family.layer_modules(model)):
        moe = _grouped_ffn(loaded, layer, assignments[index], top_k, router)
        if trainable:
            moe.router.weight.data, moe.router.bias.data = trained[index]
        setattr(layer, family.mlp, moe)
    return LoadedModel(model, loaded.tokenizer, family, loaded.fingerprint, loaded.source)


def group_assignments(loaded: LoadedModel, group_bricks: list) -> list[torch.Tensor]:
    """Per-layer group ids [d_ff] from one neuron-group brick per layer (checked)."""
    layers = len(loaded.family.layer_modules(loaded.model))
    d_ff = loaded.family.d_ff(loaded.model.config)
    by_layer = {}
    for brick in group_bricks:
        if brick.kind != "neuron_group":
            raise BrickworkError(f"brick {brick.name!r} is a {brick.kind}, not a neuron group")
        loaded.require_base(brick.base_model, f"brick {brick.name!r}")
        by_layer[brick.spec["layer"]] = brick.tensors["assignment"].long()
    if sorted(by_layer) != list(range(layers)):
        raise BrickworkError(f"need one neuron-group brick for each of the {layers} layers")
    for layer, a in by_layer.items():
        sizes = torch.bincount(a)
        if len(a) != d_ff or int(sizes.min()) != int(sizes.max()):
            raise BrickworkError(f"layer {layer}: groups must cover {d_ff} neurons equally")
    return [by_layer[i] for i in range(layers)]


def train_group_routers(
    loaded: LoadedModel,
    group_bricks: list,
    input_ids: list[torch.Tensor],
    steps: int = 300,
    max_tokens: int = 4096,
    seed: int = 0,
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Train one linear router per layer to predict each group's share of |activation| mass.

    ``input_ids``: token id rows [1, T] from the train split. Soft-target cross entropy, Adam.
    """
    assignments = group_assignments(loaded, group_bricks)
    inputs, masses = _capture(loaded, assignments, input_ids, max_tokens, seed)
    routers = {}
    for layer in range(len(assignments)):
        x, target = inputs[layer], masses[layer]
        target = target / target.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        linear = nn.Linear(x.shape[1], target.shape[1])
        optimizer = torch.optim.Adam(linear.parameters(), lr=1e-2)
        mu, sd = x.mean(dim=0), x.std(dim=0).clamp_min(1e-6)
        z = (x - mu) / sd
        for _ in range(steps):
            loss = -(target * torch.log_softmax(linear(z), dim=-1)).sum(dim=-1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        w = linear.weight.detach() / sd  # fold the standardization into the router
        routers[layer] = (w, linear.bias.detach() - w @ mu)
    return routers


def _capture(loaded, assignments, input_ids, max_tokens, seed):
    """FFN inputs [N, H] and per-group activation mass [N, G] per layer, for up to
    ``max_tokens`` random token positions spread evenly over the rows (same ones in every layer)."""
    family = loaded.family
    inputs = {i: [] for i in range(len(assignments))}
    masses = {i: [] for i in range(len(assignments))}
    generator = torch.Generator().manual_seed(seed)
    per_row = -(-max_tokens // max(1, len(input_ids)))
    keep = torch.arange(0)
    specs = []
    for index, layer in enumerate(family.layer_modules(loaded.model)):

        def hook(module, args, i=index):
            inputs[i].append(args[0].detach().reshape(-1, args[0].shape[-1])[keep])

        specs.append((family.ffn(layer), "forward_pre", hook))

    def on_activation(i: int, a: torch.Tensor) -> None:
        groups = int(assignments[i].max()) + 1
        flat = a.reshape(-1, a.shape[-1])[keep].abs()
        masses[i].append(torch.zeros(flat.shape[0], groups).index_add_(1, assignments[i], flat))

    with hooks(specs), torch.no_grad(), capture_activations(loaded.model, family, on_activation):
        for ids in input_ids:
            keep = torch.randperm(ids.numel(), generator=generator)[:per_row]
            loaded.model.base_model(input_ids=ids, use_cache=False)
    return (
        {i: torch.cat(v)[:max_tokens] for i, v in inputs.items()},
        {i: torch.cat(v)[:max_tokens] for i, v in masses.items()},
    )
