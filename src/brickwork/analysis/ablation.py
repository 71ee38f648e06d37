"""Specialization ablation (paper Fig 9): zero a neuron set, measure every functionality's PPL."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from brickwork.analysis.loss import EvalBatch, functionality_losses
from brickwork.analysis.masking import zero_neurons
from brickwork.models.load import LoadedModel


def ablation_losses(
    loaded: LoadedModel,
    batches: list[EvalBatch],
    n_functionalities: int,
    neuron_sets: dict[str, torch.Tensor],
    progress: bool = True,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The unablated loss [F] and, per named neuron set, the loss [F] with that set zeroed.

    Sets that are equal share one evaluation.
    """
    baseline = functionality_losses(loaded, batches, n_functionalities)
    done: list[tuple[torch.Tensor, torch.Tensor]] = []
    losses = {}
    for name, mask in tqdm(neuron_sets.items(), desc="ablations", disable=not progress):
        previous = next((loss for m, loss in done if torch.equal(m, mask)), None)
        if previous is None:
            with zero_neurons(loaded, mask):
                previous = functionality_losses(loaded, batches, n_functionalities)
            done.append((mask, previous))
        losses[name] = previous
    return baseline, losses


def perplexity_increase(baseline: torch.Tensor, ablated: torch.Tensor) -> torch.Tensor:
    """(PPL_ablated - PPL) / PPL with PPL = exp(mean NLL)."""
    return torch.exp(ablated - baseline) - 1


def diagonal_dominance(matrix: torch.Tensor) -> list[bool]:
    """For each column f of a square [F, F] matrix: is the diagonal its largest value?"""
    return [bool(matrix[f, f] >= matrix[:, f].max()) for f in range(matrix.shape[0])]
