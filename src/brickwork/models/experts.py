"""An FFN as a mixture of experts: its neuron groups (MoEfication, configure/moe.py) or copies
of it (sparse upcycling, ops/grow/experts.py), and a router that picks the top-k per token.

How the chosen experts are mixed (``mix``):
- "softmax": output = scale x sum over the top-k experts of softmax(score) x expert output.
  Every expert runs as the family's FFN module: a differentiable reference, not a fast kernel.
- "sum": output = the sum of the chosen experts' outputs, computed on their neurons alone, plus
  the FFN's output bias once. With every expert chosen it is the dense FFN.

How experts are scored (``scoring``):
- "linear": the router, x W^T (+ b);
- "oracle": each expert's activation mass sum_i |a_i| (needs every expert's activations and
  equal-sized groups; a reference, not a router);
- "random": seeded uniform scores (the naive control).
"""

from __future__ import annotations

import torch
from torch import nn

from brickwork.errors import BrickworkError
from brickwork.models.families import Family
from brickwork.models.ffn import build_ffn, down_matrix, input_matrix, input_names, read_ffn

MIXES = ("softmax", "sum")
SCORINGS = ("linear", "oracle", "random")


class MoEFFN(nn.Module):
    """Experts (FFN modules of the family) plus a router; runs the top ``top_k`` per token."""

    def __init__(
        self,
        family: Family,
        experts: list[nn.Module],
        router: nn.Linear,
        top_k: int,
        *,
        mix: str = "softmax",
        scale: float = 1.0,
        scoring: str = "linear",
        act: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if mix not in MIXES or scoring not in SCORINGS:
            raise BrickworkError(f"mix must be one of {MIXES} and scoring one of {SCORINGS}")
        if act is None and (mix == "sum" or scoring == "oracle"):
            raise BrickworkError("computing experts' neurons directly needs the activation")
        self.experts = nn.ModuleList(experts)
        self.router = router
        self.family, self.top_k, self.scale, self.mix, self.scoring = (
            family,
            top_k,
            scale,
            mix,
            scoring,
        )
        if act is not None:
            self.act = act
        if scoring == "random":
            self.generator = torch.Generator().manual_seed(0)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Expert scores [..., E] for tokens x [..., H]."""
        n = len(self.experts)
        if self.scoring == "random":
            return torch.rand(*x.shape[:-1], n, generator=self.generator)
        if self.scoring == "oracle":
            a = self.activations(x, list(range(n))).abs()
            return a.reshape(*x.shape[:-1], n, -1).sum(dim=-1)
        scores = x @ self.router.weight.t()
        return scores if self.router.bias is None else scores + self.router.bias

    def activations(self, x: torch.Tensor, chosen: list[int]) -> torch.Tensor:
        """Activations [..., neurons] of the ``chosen`` experts' neurons, in that order."""
        pre = []
        for name in input_names(self.family):
            rows = [input_matrix(self.family, self.experts[e], name) for e in chosen]
            pre.append(x @ torch.cat(rows).contiguous().t())
            biases = [getattr(getattr(self.experts[e], name), "bias", None) for e in chosen]
            if biases[0] is not None:
                pre[-1] = pre[-1] + torch.cat(biases)
        return self.act(pre[0]) * pre[1] if self.family.gate else self.act(pre[0])

    def _down(self, chosen: list[int]) -> torch.Tensor:
        """The chosen experts' output columns side by side, [d_model, neurons]."""
        columns = [down_matrix(self.family, self.experts[e]) for e in chosen]
        return torch.cat(columns, dim=1).contiguous()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self._softmax(hidden) if self.mix == "softmax" else self._sum(hidden)

    def _softmax(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.scores(hidden)
        top, chosen = logits.topk(self.top_k, dim=-1)
        weights = torch.zeros_like(logits).scatter(-1, chosen, torch.softmax(top, dim=-1))
        outputs = torch.stack([expert(hidden) for expert in self.experts], dim=-1)
        return self.scale * (outputs * weights.unsqueeze(-2)).sum(dim=-1)

    def _sum(self, hidden: torch.Tensor) -> torch.Tensor:
        x = hidden.reshape(-1, hidden.shape[-1])
        chosen = self.scores(x).topk(self.top_k, dim=-1).indices
        if x.shape[0] == 1:  # decode: gather the chosen experts' weights into one small FFN
            groups = chosen[0].tolist()
            out = self.activations(x, groups) @ self._down(groups).t()
        else:  # prefill: loop over experts, each on the tokens routed to it
            out = torch.zeros_like(x)
            for g in range(len(self.experts)):
                rows = (chosen == g).any(dim=-1).nonzero().flatten()
                if len(rows):
                    out.index_add_(0, rows, self.activations(x[rows], [g]) @ self._down([g]).t())
        bias = getattr(getattr(self.experts[0], self.family.down), "bias", None)
        if bias is not None:
            out = out + bias
        return out.reshape(hidden.shape)


def group_experts(
    family: Family, mlp: nn.Module, groups: torch.Tensor, n_experts: int
) -> list[nn.Module]:
    """One expert FFN per neuron group (``groups``: [d_ff] ids in 0..n_experts-1), neurons in
    ascending order; the FFN's output bias goes to the first expert only, so the experts'
    outputs sum to the FFN's."""
    weights = read_ffn(family, mlp)
    groups = torch.as_tensor(groups).long()
    if groups.shape != (weights.width,) or groups.min() < 0 or groups.max() >= n_experts:
        raise BrickworkError(f"a group assignment needs {weights.width} ids in 0..{n_experts - 1}")
    experts = []
    for group in range(n_experts):
        index = torch.nonzero(groups == group).flatten()
        if not len(index):
            raise BrickworkError(f"neuron group {group} is empty")
        part = weights.select(index)
        if group and part.down_bias is not None:
            part.down_bias = torch.zeros_like(part.down_bias)
        experts.append(build_ffn(family, mlp, part))
    return experts


def zero_router(family: Family, experts: list[nn.Module]) -> nn.Linear:
    """A bias-free linear router from the FFN input to one logit per expert, all zero."""
    param = next(experts[0].parameters())
    d_model = down_matrix(family, experts[0]).shape[0]
    router = nn.Linear(d_model, len(experts), bias=False, dtype=param.dtype)
    router.to(param.device)
    nn.init.zeros_(router.weight)
    return router


def centroid_router(family: Family, experts: list[nn.Module]) -> nn.Linear:
    """A linear router whose row e is the mean of expert e's first input projection's rows and
    whose bias is zero (drawing no random numbers)."""
    first = input_names(family)[0]
    with torch.no_grad():
        rows = torch.stack([input_matrix(family, e, first) for e in experts]).mean(dim=1)
    router = nn.utils.skip_init(nn.Linear, rows.shape[1], rows.shape[0], device=rows.device)
    router.weight = nn.Parameter(rows, requires_grad=False)
    router.bias = nn.Parameter(torch.zeros(len(experts), device=rows.device), requires_grad=False)
    return router
