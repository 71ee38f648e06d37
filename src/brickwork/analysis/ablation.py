"""Specialization ablation (paper Fig 9): zero a neuron set, measure every functionality's PPL."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from brickwork.analysis.loss import EvalBatch, nll_sums_by
from brickwork.analysis.masking import zero_neurons
from brickwork.models.load import LoadedModel


@dataclass
class AblationLosses:
    """Mean reference NLL per functionality [F] and summed NLL per sample [S], unablated
    (``baseline``) and per named neuron set; ``tokens`` [S] counts reference tokens."""

    baseline: torch.Tensor
    losses: dict[str, torch.Tensor]
    tokens: torch.Tensor
    sample_baseline: torch.Tensor
    sample_losses: dict[str, torch.Tensor]


def ablation_losses(
    loaded: LoadedModel,
    batches: list[EvalBatch],
    n_functionalities: int,
    n_samples: int,
    neuron_sets: dict[str, torch.Tensor],
    progress: bool = True,
) -> AblationLosses:
    """The unablated losses and, per named neuron set, the losses with that set zeroed.

    Sets that are equal share one evaluation.
    """
    sizes = {"groups": n_functionalities, "samples": n_samples}

    def evaluate() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sums = nll_sums_by(loaded, batches, sizes)
        (total, count), (per_sample, tokens) = sums["groups"], sums["samples"]
        return total / count.clamp_min(1), per_sample, tokens

    baseline, sample_baseline, tokens = evaluate()
    done: list[tuple[torch.Tensor, tuple]] = []
    losses, sample_losses = {}, {}
    for name, mask in tqdm(neuron_sets.items(), desc="ablations", disable=not progress):
        previous = next((loss for m, loss in done if torch.equal(m, mask)), None)
        if previous is None:
            with zero_neurons(loaded, mask):
                previous = evaluate()
            done.append((mask, previous))
        losses[name], sample_losses[name], _ = previous
    return AblationLosses(baseline, losses, tokens, sample_baseline, sample_losses)


def perplexity_increase(baseline: torch.Tensor, ablated: torch.Tensor) -> torch.Tensor:
    """(PPL_ablated - PPL) / PPL with PPL = exp(mean NLL)."""
    return torch.exp(ablated - baseline) - 1


def diagonal_dominance(matrix: torch.Tensor) -> list[bool]:
    """For each column f of a square [F, F] matrix: is the diagonal its largest value?"""
    return [bool(matrix[f, f] >= matrix[:, f].max()) for f in range(matrix.shape[0])]
