"""Quality of configured models: reference perplexity per sample group; decode and prefill speed.

Each sample is scored by the model configured for it: the static selection of the functionality
the router chose for it, or (prompted.py) the selection its own prompt made.
"""

from __future__ import annotations

import time

import torch

from brickwork.analysis.loss import nll_sums as batch_nll_sums
from brickwork.analysis.loss import reference_batches
from brickwork.configure.compact import gather_ffn
from brickwork.configure.select import SelectionStats, functionality_selection
from brickwork.data.sample import Sample
from brickwork.models.load import LoadedModel
from brickwork.models.tokens import greedy_generate


def nll_sums(
    loaded: LoadedModel, samples: list[Sample], groups: list[str], batch_size: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed reference-token NLL and token counts per group [G] (groups name functionalities)."""
    batches = reference_batches(loaded.tokenizer, samples, groups, batch_size) if samples else []
    return batch_nll_sums(loaded, batches, len(groups))


def mean_nll(loaded: LoadedModel, samples: list[Sample], groups: list[str]) -> torch.Tensor:
    total, count = nll_sums(loaded, samples, groups)
    return total / count.clamp_min(1)


def routed_static_nll(
    loaded: LoadedModel,
    stats: SelectionStats,
    samples: list[Sample],
    routed: list[str],
    groups: list[str],
    budget: float,
) -> torch.Tensor:
    """Mean NLL per group when each sample runs on the static compact model of its routed
    functionality (one compact model per routed functionality)."""
    total = torch.zeros(len(groups), dtype=torch.float64)
    count = torch.zeros(len(groups), dtype=torch.float64)
    for functionality in sorted(set(routed)):
        chosen = [s for s, r in zip(samples, routed, strict=True) if r == functionality]
        compact = gather_ffn(loaded, functionality_selection(stats, {functionality: 1.0}, budget))
        t, c = nll_sums(compact.loaded, chosen, groups)
        total, count = total + t, count + c
    return total / count.clamp_min(1)


def parameter_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's parameters and buffers (tied tensors counted once)."""
    seen, size = set(), 0
    for t in (*model.parameters(), *model.buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            size += t.numel() * t.element_size()
    return size


def decode_speed(model, input_ids: torch.Tensor, new_tokens: int = 64, pad: int = 0) -> float:
    """Tokens/s of greedy HF generate at batch 1, forced to ``new_tokens`` new tokens."""
    greedy_generate(model, input_ids, 4, pad, min_new_tokens=4)  # warm-up
    start = time.perf_counter()
    greedy_generate(model, input_ids, new_tokens, pad, min_new_tokens=new_tokens)
    return new_tokens / (time.perf_counter() - start)


def prefill_speed(model, input_ids: torch.Tensor, repeats: int = 3) -> float:
    """Tokens/s of one forward pass over ``input_ids`` [B, T] (best of ``repeats``); the LM head
    runs on the last position only, as in generation's prefill."""
    best = float("inf")
    with torch.no_grad():
        model(input_ids=input_ids[:, :8], use_cache=False, logits_to_keep=1)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model(input_ids=input_ids, use_cache=False, logits_to_keep=1)
            best = min(best, time.perf_counter() - start)
    return input_ids.numel() / best
