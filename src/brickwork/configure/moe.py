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
from brickwork.models.load import LoadedModel
from brickwork.profile.capture import capture_activations


class GroupedFFN(nn.Module):
    """One FFN with its neurons regrouped into G experts of equal size; runs top-k per token."""

    def __init__(
        self,
        loaded: LoadedModel,
        layer: nn.Module,
        assignment: torch.Tensor,
        top_k: int,
        router: str,
    ) -> None:
        super().__init__()
        family, ffn = loaded.family, loaded.family.ffn(layer)
        groups = int(assignment.max()) + 1
        order = torch.argsort(assignment, stable=True)
        size = len(order) // groups
        weights = [getattr(ffn, n).weight for n in (family.gate, family.up) if n]
        weights = [(w.t() if family.conv1d else w).detach()[order] for w in weights]
        self.w_in = nn.Parameter(
            torch.stack(weights).reshape(len(weights), groups, size, -1), requires_grad=False
        )  # [P, G, s, H]
        biases = [getattr(getattr(ffn, n), "bias", None) for n in (family.gate, family.up) if n]
        self.b_in = None
        if any(b is not None for b in biases):
            self.b_in = torch.stack(
                [torch.zeros(len(order)) if b is None else b.detach()[order] for b in biases]
            ).reshape(len(biases), groups, size)  # [P, G, s]
        down = family.down_weight(layer).detach()[:, order]  # [H, D]
        self.w_down = nn.Parameter(
            down.reshape(down.shape[0], groups, size).permute(1, 0, 2).contiguous(),
            requires_grad=False,
        )  # [G, H, s]
        down_bias = getattr(family.down_proj(layer), "bias", None)
        self.b_down = None if down_bias is None else down_bias.detach()
        self.act = ACT2FN[family.activation_name(loaded.model.config)]
        self.gated = family.gate is not None
        self.groups, self.top_k, self.router = groups, top_k, router
        self.router_weight = nn.Parameter(self.w_in[0].mean(dim=1).clone(), requires_grad=False)
        self.router_bias = nn.Parameter(torch.zeros(groups), requires_grad=False)
        self.generator = torch.Generator().manual_seed(0)

    def group_activations(self, x: torch.Tensor, g) -> torch.Tensor:
        """Activations [N, s·|g|] of the neurons in group(s) ``g`` for tokens x [N, H]."""
        w = self.w_in[:, g].reshape(self.w_in.shape[0], -1, self.w_in.shape[-1])
        pre = [x @ w_p.t() for w_p in w]
        if self.b_in is not None:
            bias = self.b_in[:, g].reshape(self.b_in.shape[0], -1)
            pre = [p + b for p, b in zip(pre, bias, strict=True)]
        return self.act(pre[0]) * pre[1] if self.gated else self.act(pre[0])

    def choose(self, x: torch.Tensor) -> torch.Tensor:
        """Top-k group ids [N, k] per token."""
        scores = ROUTERS[self.router].scores(self, x)
        return scores.topk(self.top_k, dim=-1).indices

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = hidden.reshape(-1, hidden.shape[-1])
        chosen = self.choose(x)
        if x.shape[0] == 1:  # decode: gather the chosen experts' weights into one small FFN
            g = chosen[0]
            a = self.group_activations(x, g)
            out = a @ self.w_down[g].permute(1, 0, 2).reshape(x.shape[1], -1).t()
        else:  # prefill: loop over experts, each on the tokens routed to it
            out = torch.zeros_like(x)
            for g in range(self.groups):
                rows = (chosen == g).any(dim=-1).nonzero().flatten()
                if len(rows):
                    a = self.group_activations(x[rows], torch.tensor([g]))
                    out.index_add_(0, rows, a @ self.w_down[g].t())
        if self.b_down is not None:
            out = out + self.b_down
        return out.reshape(hidden.shape)


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
        moe = GroupedFFN(loaded, layer, assignments[index], top_k, router)
        if trainable:
            moe.router_weight.data, moe.router_bias.data = trained[index]
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
        if brick.base_model != loaded.fingerprint:
            raise BrickworkError(
                f"brick {brick.name!r} was built for base model {brick.base_model}, "
                f"not this model ({loaded.fingerprint})"
            )
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
    handles = []
    for index, layer in enumerate(family.layer_modules(loaded.model)):

        def hook(module, args, i=index):
            inputs[i].append(args[0].detach().reshape(-1, args[0].shape[-1])[keep])

        handles.append(family.ffn(layer).register_forward_pre_hook(hook))

    def on_activation(i: int, a: torch.Tensor) -> None:
        groups = int(assignments[i].max()) + 1
        flat = a.reshape(-1, a.shape[-1])[keep].abs()
        masses[i].append(torch.zeros(flat.shape[0], groups).index_add_(1, assignments[i], flat))

    try:
        with torch.no_grad(), capture_activations(loaded.model, family, on_activation):
            for ids in input_ids:
                keep = torch.randperm(ids.numel(), generator=generator)[:per_row]
                loaded.model.base_model(input_ids=ids, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return (
        {i: torch.cat(v)[:max_tokens] for i, v in inputs.items()},
        {i: torch.cat(v)[:max_tokens] for i, v in masses.items()},
    )
