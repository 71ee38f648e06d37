"""Token-level routers of neuron groups (``configure/moe.py``): each scores every group for each
token from the FFN input x [N, H]; the top-k groups run. A router names how ``MoEFFN``
(models/experts.py) scores its experts:

- "similarity": linear, x · c_g with c_g the mean of the group's gate (or, ungated, input) rows;
- "trained": the same linear form, with weights trained by ``train_group_routers`` on captured
  train-split activations to predict each group's share of the token's activation mass sum_i |a_i|;
- "oracle" (a reference, not a router: it needs the dense FFN): each group's activation mass;
- "random" (the naive control): seeded uniform scores.

Adding a router is one entry in ``ROUTERS`` (and, for a new score form, one ``MoEFFN`` scoring).
"""

from __future__ import annotations

from dataclasses import dataclass

from brickwork.registry import Registry


@dataclass(frozen=True)
class GroupRouter:
    """A registered router: the ``MoEFFN`` scoring it uses, and whether its weights come from
    ``train_group_routers``."""

    name: str
    scoring: str
    trained: bool = False


ROUTERS: Registry[GroupRouter] = Registry(
    "group router",
    (
        GroupRouter("similarity", "linear"),
        GroupRouter("trained", "linear", trained=True),
        GroupRouter("oracle", "oracle"),
        GroupRouter("random", "random"),
    ),
)
