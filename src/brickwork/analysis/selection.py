"""Choosing neuron sets: top-FuncScore neurons, resident neurons, and random controls."""

from __future__ import annotations

import torch

RESIDENT_QUANTILE = 0.9
RESIDENT_RULE = (
    "a neuron is resident when, for every functionality, its mean |activation| over that "
    "functionality's train instances is in the top 10% of its layer"
)


def top_neurons(
    scores: torch.Tensor,
    fraction: float,
    per_layer: bool = True,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Boolean mask [L, D] of the top ``fraction`` of neurons by score.

    Per layer: the top share of every layer. Global: the top share of all L x D neurons.
    Excluded neurons are never chosen.
    """
    layers, d_ff = scores.shape
    ranked = scores.clone().float()
    if exclude is not None:
        ranked[exclude] = float("-inf")
    mask = torch.zeros(layers * d_ff, dtype=torch.bool)
    if per_layer:
        k = max(1, round(fraction * d_ff))
        index = ranked.topk(k, dim=1).indices + torch.arange(layers)[:, None] * d_ff
    else:
        index = ranked.flatten().topk(max(1, round(fraction * layers * d_ff))).indices
    mask[index.flatten()] = True
    return mask.view(layers, d_ff)


def random_neurons(layers: int, d_ff: int, fraction: float, seed: int) -> torch.Tensor:
    """A random mask [L, D] with the same per-layer count as a per-layer top selection."""
    generator = torch.Generator().manual_seed(seed)
    return top_neurons(torch.rand(layers, d_ff, generator=generator), fraction)


def resident_neurons(mean_activation: torch.Tensor) -> torch.Tensor:
    """Resident mask [L, D] from mean |activation| per functionality [F, L, D]: RESIDENT_RULE."""
    threshold = mean_activation.quantile(RESIDENT_QUANTILE, dim=-1, keepdim=True)
    return (mean_activation >= threshold).all(dim=0)


def set_similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    """|A ∩ B| / k per layer, averaged over layers, for per-layer sets of equal size k."""
    per_layer = (a & b).sum(dim=1).float() / a.sum(dim=1).clamp_min(1).float()
    return float(per_layer.mean())


def similarity_matrix(masks: list[torch.Tensor]) -> torch.Tensor:
    """Pairwise ``set_similarity`` of per-layer neuron sets [n, n] (paper Fig 10)."""
    return torch.tensor([[set_similarity(a, b) for b in masks] for a in masks])
