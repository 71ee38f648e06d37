"""Per-functionality loss of the reference answers, given their prompts.

Each test sample becomes prompt + reference (in the chat template when the tokenizer has one);
the loss is the mean negative log-likelihood of the reference tokens only. The LM head runs on
those positions alone, which matters for large vocabularies (Gemma's is 262k).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn.functional import cross_entropy

from brickwork.data.sample import Sample
from brickwork.errors import BrickworkError
from brickwork.models.load import LoadedModel
from brickwork.models.tokens import batches, pad, prompt_tokens


@dataclass
class EvalBatch:
    input_ids: torch.Tensor  # [B, T]
    attention: torch.Tensor  # [B, T]
    positions: torch.Tensor  # [K, 2]: (row, position) whose next token is a reference token
    targets: torch.Tensor  # [K] the reference tokens
    groups: torch.Tensor  # [K] functionality index of each target
    samples: torch.Tensor  # [K] index (in the samples given) of the sample each target is from


def prompt_reference(
    tokenizer, sample: Sample, max_prompt_tokens: int, max_reference_tokens: int
) -> tuple[list[int], list[int]]:
    """The last ``max_prompt_tokens`` of the formatted prompt and the first
    ``max_reference_tokens`` of the reference, as token ids."""
    if not sample.reference:
        raise BrickworkError(f"sample {sample.id!r} has no reference")
    prefix = prompt_tokens(tokenizer, sample.prompt, chat=True, max_tokens=max_prompt_tokens)
    reference = tokenizer(sample.reference, add_special_tokens=False)["input_ids"]
    return prefix, reference[:max_reference_tokens]


def eval_format(tokenizer) -> str:
    return "chat template" if getattr(tokenizer, "chat_template", None) else "prompt + blank line"


def reference_batches(
    tokenizer,
    samples: list[Sample],
    functionalities: list[str],
    batch_size: int = 8,
    max_prompt_tokens: int = 192,
    max_reference_tokens: int = 64,
) -> list[EvalBatch]:
    """Right-padded batches of prompt + reference with the reference positions to score."""
    rows = [
        (
            *prompt_reference(tokenizer, s, max_prompt_tokens, max_reference_tokens),
            functionalities.index(s.functionality),
            i,
        )
        for i, s in enumerate(samples)
    ]
    rows.sort(key=lambda r: len(r[0]) + len(r[1]))
    return [_batch(chunk, tokenizer.pad_token_id) for chunk in batches(rows, batch_size)]


def _batch(rows: list, pad_id: int) -> EvalBatch:
    input_ids, attention = pad([prefix + reference for prefix, reference, *_ in rows], pad_id)
    positions, targets, groups, sample_of = [], [], [], []
    for b, (prefix, reference, group, sample) in enumerate(rows):
        for j, token in enumerate(reference):
            positions.append((b, len(prefix) + j - 1))  # the logits at t predict token t + 1
            targets.append(token)
            groups.append(group)
            sample_of.append(sample)
    return EvalBatch(
        input_ids,
        attention,
        torch.tensor(positions),
        torch.tensor(targets),
        torch.tensor(groups),
        torch.tensor(sample_of),
    )


def functionality_losses(
    loaded: LoadedModel, batches: list[EvalBatch], n_functionalities: int
) -> torch.Tensor:
    """Mean reference-token NLL per functionality [F] (run inside any masking context)."""
    total, count = nll_sums(loaded, batches, n_functionalities)
    return total / count.clamp_min(1)


def scored_logits(loaded: LoadedModel, batch: EvalBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits [K, vocab] at the batch's scored positions (on the LM head's device) and the
    target tokens [K] they predict; with gradients if enabled."""
    hidden = loaded.model.base_model(
        input_ids=batch.input_ids.to(loaded.device),
        attention_mask=batch.attention.to(loaded.device),
        use_cache=False,
    ).last_hidden_state
    rows, positions = batch.positions.to(hidden.device).unbind(1)
    logits = loaded.family.logits(loaded.model, hidden[rows, positions])
    return logits, batch.targets.to(logits.device)


def nll_sums(
    loaded: LoadedModel, batches: list[EvalBatch], n_groups: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed reference-token NLL and token counts per group [G], in float64."""
    ((total, count),) = nll_sums_by(loaded, batches, {"groups": n_groups}).values()
    return total, count


def nll_sums_by(
    loaded: LoadedModel, batches: list[EvalBatch], sizes: dict[str, int]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Summed reference-token NLL and token counts [n], in float64, in one pass, per index of
    each EvalBatch field named in ``sizes`` ("groups": per functionality, "samples": per
    sample) with its number of indices n."""
    device = loaded.device  # sums stay where the model runs until the end
    sums = {
        key: (
            torch.zeros(n, dtype=torch.float64, device=device),
            torch.zeros(n, dtype=torch.float64, device=device),
        )
        for key, n in sizes.items()
    }
    with torch.no_grad():
        for batch in batches:
            logits, targets = scored_logits(loaded, batch)
            nll = cross_entropy(logits.float(), targets, reduction="none").double().to(device)
            for key, (total, count) in sums.items():
                index = getattr(batch, key).to(device)
                total.index_add_(0, index, nll)
                count.index_add_(0, index, torch.ones_like(nll))
    return {key: (total.cpu(), count.cpu()) for key, (total, count) in sums.items()}
