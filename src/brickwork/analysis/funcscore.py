"""FuncScore(n, f): how well a neuron's instance activations rank instances needing f (paper §4.3).

It is the average precision (AP) of the instance activations against the binary label "needs f",
computed for all neurons at once: one sort per neuron column, no Python loop over neurons.
"""

from __future__ import annotations

import torch

PERMILLE_QUANTILE = 0.995  # "best-5‰": the score of the neuron at the top 5‰ of its layer


def average_precision(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """AP of every column of ``scores`` [N, M] against boolean ``labels`` [N], as sklearn does.

    Tied scores form one threshold: every instance in a tie gets the precision at its end.
    """
    n = scores.shape[0]
    positives = labels.sum()
    if positives == 0:
        raise ValueError("average precision needs at least one positive label")
    values, order = torch.sort(scores, dim=0, descending=True, stable=True)
    hits = labels.to(torch.float64)[order]  # [N, M] label of the instance at each rank
    cum_hits = hits.cumsum(dim=0)
    # For each rank, the last rank of its tie block: the threshold it is counted at.
    last_of_block = torch.ones_like(values, dtype=torch.bool)
    last_of_block[:-1] = values[:-1] != values[1:]
    ranks = torch.arange(n).unsqueeze(1).expand_as(values)
    block_end = torch.where(last_of_block, ranks, torch.full_like(ranks, n))
    block_end = block_end.flip(0).cummin(dim=0).values.flip(0)
    precision = cum_hits.gather(0, block_end) / (block_end + 1)
    return ((hits * precision).sum(dim=0) / positives).float()


def funcscores(
    instance_activations: torch.Tensor, functionality_index: torch.Tensor, n_functionalities: int
) -> torch.Tensor:
    """FuncScore [F, L, D] from per-instance activations [N, L, D] and labels [N] in 0..F-1."""
    n, layers, d_ff = instance_activations.shape
    flat = instance_activations.reshape(n, layers * d_ff)
    scores = [
        average_precision(flat, functionality_index == f).reshape(layers, d_ff)
        for f in range(n_functionalities)
    ]
    return torch.stack(scores)


def layer_statistics(scores: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per layer of FuncScores [..., L, D]: the best, the best-5‰ and the mean."""
    return {
        "best": scores.amax(dim=-1),
        "best_5permille": scores.quantile(PERMILLE_QUANTILE, dim=-1),
        "mean": scores.mean(dim=-1),
    }
