"""The KL-to-reference term: a locality constraint that keeps a trained model near a reference."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.nn.functional import kl_div, log_softmax

from brickwork.training.rng import batch_order
from brickwork.training.settings import TrainSettings

Logits = Callable[[list], torch.Tensor]  # a batch of rows -> logits [tokens, vocab]


def kl_to_reference(
    rows: Sequence,
    settings: TrainSettings,
    weight: float,
    reference: Logits,
    trained: Logits,
) -> Callable[[int], torch.Tensor]:
    """step -> ``weight`` x KL(reference || trained) on that step's half-size batch of ``rows``.

    The half batches follow their own seeded order (``settings.seed + 1``), so the term leaves
    the training batches as they were. ``reference`` runs without gradient.
    """
    half = max(1, settings.batch_size // 2)
    order = batch_order(len(rows), half, settings.steps, settings.seed + 1)

    def term(step: int) -> torch.Tensor:
        batch = [rows[i] for i in order[step - 1]]
        with torch.no_grad():
            base = reference(batch)
        return weight * kl(base, trained(batch))

    return term


def kl(reference_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(reference || trained) per token, averaged over the tokens (rows of [tokens, vocab])."""
    base = log_softmax(reference_logits.float(), dim=-1)
    now = log_softmax(logits.float(), dim=-1)
    return kl_div(now, base, log_target=True, reduction="batchmean")
