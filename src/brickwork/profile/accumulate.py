"""Per-batch updates of a Profile's streaming statistics, one layer at a time.

Memory stays O(layers x d_ff x instances): a batch's [B, T, d_ff] activations are reduced to
per-instance means, per-functionality sums and fixed-bin histograms before the next layer runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """Which instances a batch holds and which of its token positions are prompt content."""

    rows: torch.Tensor  # [B] instance indices into the profile
    groups: torch.Tensor  # [B] functionality indices
    content: torch.Tensor  # [B, T] bool: real prompt tokens (no padding, no special tokens)
    n_functionalities: int

    def __post_init__(self) -> None:
        self.weights = self.content.float()
        self.n_tokens = self.content.sum(dim=1)
        self.token_groups = self.groups[:, None].expand_as(self.content)[self.content]
        self.onehot = torch.nn.functional.one_hot(self.token_groups, self.n_functionalities)
        self.onehot = self.onehot.t().float()  # [F, tokens]


def add_batch_counts(tensors: dict[str, torch.Tensor], batch: Batch) -> None:
    tensors["instance_tokens"][batch.rows] = batch.n_tokens
    tensors["covered"][batch.rows] = 1
    tensors["token_count"] += batch.onehot.sum(dim=1).long()


def add_layer(
    tensors: dict[str, torch.Tensor], layer: int, activation: torch.Tensor, batch: Batch
) -> None:
    """Fold one layer's activations [B, T, d_ff] for ``batch`` into the statistics."""
    magnitude = activation.float().abs()
    per_instance = torch.einsum("btd,bt->bd", magnitude, batch.weights)
    tensors["instance_mean_abs"][batch.rows, layer] = per_instance / batch.n_tokens[:, None]
    tokens = magnitude[batch.content]  # [tokens, d_ff]
    tensors["sum_abs"][:, layer] += (batch.onehot @ tokens).double()
    _add_histogram(tensors["hist_activation"], layer, tokens, batch.token_groups)
    output = tokens * tensors["down_norms"][layer]
    _add_histogram(tensors["hist_output"], layer, output, batch.token_groups)


def _add_histogram(
    hist: torch.Tensor, layer: int, values: torch.Tensor, token_groups: torch.Tensor
) -> None:
    """Count values / (per-token max) into equal bins over [0, 1], per functionality."""
    n_groups, _, bins = hist.shape
    peak = values.amax(dim=1, keepdim=True).clamp_min(torch.finfo(values.dtype).tiny)
    index = (values / peak * bins).long().clamp_(max=bins - 1)
    index += (token_groups * bins)[:, None]
    counts = torch.bincount(index.flatten(), minlength=n_groups * bins)
    hist[:, layer] += counts.view(n_groups, bins)
