"""Token-level routers of neuron groups (``configure/moe.py``): each scores every group for each
token from the FFN input x [N, H], giving [N, G]; the top-k groups run. The registered routers:

- "similarity": x · c_g, c_g the mean of the group's gate (or, ungated, input) weight rows;
- "trained": the same linear form, with weights trained by ``train_group_routers`` on captured
  train-split activations to predict each group's share of the token's activation mass sum_i |a_i|;
- "oracle" (a reference, not a router: it needs the dense FFN): each group's activation mass;
- "random" (the naive control): seeded uniform scores.

Adding a router is one score function and one entry in ``ROUTERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from brickwork.registry import Registry


@dataclass(frozen=True)
class GroupRouter:
    """A registered router: ``scores(moe, x)`` gives [N, G] from the grouped FFN ``moe`` (its
    ``router_weight``, ``router_bias``, ``group_activations``, ``groups`` and seeded
    ``generator``) and tokens x [N, H]. ``trained`` routers need ``train_group_routers``."""

    name: str
    scores: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    trained: bool = False


def _linear(moe: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x @ moe.router_weight.t() + moe.router_bias


def _oracle(moe: nn.Module, x: torch.Tensor) -> torch.Tensor:
    a = moe.group_activations(x, slice(None)).abs()
    return a.reshape(x.shape[0], moe.groups, -1).sum(dim=-1)


def _random(moe: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.rand(x.shape[0], moe.groups, generator=moe.generator)


ROUTERS: Registry[GroupRouter] = Registry(
    "group router",
    (
        GroupRouter("similarity", _linear),
        GroupRouter("trained", _linear, trained=True),
        GroupRouter("oracle", _oracle),
        GroupRouter("random", _random),
    ),
)
