"""How typical a query is of a brick's training prompts: a calibrated retrieval confidence.

Scorings rank bricks against each other (``lda``'s posterior sums to one over the bricks searched),
so an instruction far from every brick still gets a best brick with a score near 1. ``fit``
answers the other question: the share of the brick's own training prompts that lie at least as far
from the brick's mean as the query does. Distances are root-mean-square over dimensions after
dividing by the within-brick spread of the training prompts' states, pooled over the bricks. A
query like a brick's training prompts gets a fit well above 0; one farther than all of them gets
0. The prompts' distances include their own contribution to the mean, so fits lean slightly low.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

LEVELS = torch.linspace(0.0, 1.0, 21, dtype=torch.float64)  # quantile levels kept per brick
NO_FIT = 0.05  # a best fit below this: no brick fits the instruction


@dataclass(frozen=True)
class Typicality:
    centres: torch.Tensor  # [N, hidden] the bricks' mean prompt states
    spread: torch.Tensor  # [hidden] pooled within-brick standard deviation
    quantiles: torch.Tensor  # [N, len(LEVELS)] quantiles of the training prompts' distances

    def fit(self, vector: torch.Tensor, brick: int) -> float:
        """Share of the brick's training prompts at least as far from its mean as ``vector``."""
        distance = float(self.distances(vector[None], brick)[0])
        return float(1.0 - np.interp(distance, self.quantiles[brick].numpy(), LEVELS.numpy()))

    def distances(self, states: torch.Tensor, brick: int) -> torch.Tensor:
        scaled = (states.double() - self.centres[brick]) / self.spread
        return scaled.pow(2).mean(dim=1).sqrt()


def typicality(states: list[torch.Tensor | None], means: torch.Tensor) -> Typicality | None:
    """The typicality statistics of bricks with prompt states ``states`` and means ``means``
    [N, hidden]; None when a brick has no stored states or no brick has two prompts."""
    if any(s is None for s in states):
        return None
    states = [s.double() for s in states]
    residuals = torch.cat([s - m for s, m in zip(states, means.double(), strict=True)])
    if len(residuals) <= len(states):
        return None
    spread = residuals.pow(2).mean(dim=0).sqrt()
    if float(spread.max()) == 0.0:
        return None
    spread = spread.clamp_min(1e-6 * float(spread.mean()))
    partial = Typicality(means.double().clone(), spread, torch.empty(0))
    quantiles = torch.stack(
        [torch.quantile(partial.distances(s, i), LEVELS) for i, s in enumerate(states)]
    )
    return Typicality(partial.centres, spread, quantiles)
