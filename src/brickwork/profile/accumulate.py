"""Per-batch updates of a Profile's streaming statistics, one layer at a time.

Memory stays O(layers x d_ff x instances): a batch's [B, T, d_ff] activations are reduced to
per-instance means, per-functionality sums and fixed-bin histograms before the next layer runs.
Means and sums use every prompt token. The histograms, a sketch of the indicator distribution
for the CDFs, count every ``hist_stride``-th prompt token of a batch, which keeps the capture
overhead of the default model under 15% (benchmarks/profile_overhead.py).
"""

from __future__ import annotations

import torch
from torch.nn.functional import one_hot


class Batch:
    """Which instances a batch holds and which token positions are prompt content."""

    def __init__(
        self,
        rows: torch.Tensor,
        groups: torch.Tensor,
        content: torch.Tensor,
        n_functionalities: int,
        bins: int,
        hist_stride: int,
    ) -> None:
        self.rows = rows  # [B] instance indices into the profile
        self.content = content  # [B, T] bool: prompt tokens (no padding, no special tokens)
        self.n_tokens = content.sum(dim=1)  # [B]
        token_rows = torch.arange(len(rows), device=rows.device)[:, None].expand_as(content)
        token_rows = token_rows[content]
        self.instance_onehot = one_hot(token_rows, len(rows)).t().float()  # [B, tokens]
        self.group_onehot = one_hot(groups, n_functionalities).t().float()  # [F, B]
        self.hist_stride = hist_stride
        # Each histogram token's offset: its functionality's first bin.
        offsets = groups[token_rows[::hist_stride]] * bins
        self.bin_offsets = offsets.float()[:, None]  # [histogram tokens, 1]


def add_batch_counts(tensors: dict[str, torch.Tensor], batch: Batch) -> None:
    tensors["instance_tokens"][batch.rows] = batch.n_tokens
    tensors["covered"][batch.rows] = 1
    tensors["token_count"] += (batch.group_onehot @ batch.n_tokens.float()).long()


def add_layer(
    tensors: dict[str, torch.Tensor], layer: int, activation: torch.Tensor, batch: Batch
) -> None:
    """Fold one layer's activations [B, T, d_ff] for ``batch`` into the statistics."""
    tokens = activation[batch.content].float().abs()  # [tokens, d_ff]
    per_instance = batch.instance_onehot @ tokens  # [B, d_ff] sums over each prompt
    tensors["instance_mean_abs"][batch.rows, layer] = per_instance / batch.n_tokens[:, None]
    tensors["sum_abs"][:, layer] += (batch.group_onehot @ per_instance).double()
    sketched = tokens[:: batch.hist_stride]
    _add_histogram(tensors["hist_activation"], layer, sketched, batch.bin_offsets)
    output = sketched * tensors["down_norms"][layer]
    _add_histogram(tensors["hist_output"], layer, output, batch.bin_offsets)


def _add_histogram(
    hist: torch.Tensor, layer: int, values: torch.Tensor, bin_offsets: torch.Tensor
) -> None:
    """Count values / (their token's max) into equal bins over [0, 1], per functionality."""
    n_groups, _, bins = hist.shape
    # Just under `bins`, so each token's maximum lands in the last bin rather than past it.
    scale = (bins * (1 - 1e-6)) / values.amax(dim=1, keepdim=True).clamp_min(1e-30)
    index = torch.addcmul(bin_offsets, values, scale).to(torch.int32)
    counts = torch.bincount(index.flatten(), minlength=n_groups * bins)
    hist[:, layer] += counts.view(n_groups, bins)
