"""Token helpers every package uses: chat formatting, padding and batching, one of each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import torch

from brickwork.errors import BrickworkError, check_choice

T = TypeVar("T")
SIDES = ("right", "left")


def prompt_prefix(tokenizer, prompt: str) -> list[int]:
    """Token ids that precede an answer: the chat-formatted user turn (with the generation
    prompt) when the tokenizer has a chat template, else the prompt and a blank line."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": prompt}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(prompt + "\n\n")["input_ids"]


def prompt_tokens(
    tokenizer, prompt: str, *, chat: bool = False, max_tokens: int | None = None
) -> list[int]:
    """A prompt's token ids: ``chat`` formats it with ``prompt_prefix`` and keeps its last
    ``max_tokens`` (the end holds the assistant turn's opening); plain text keeps its first."""
    if chat:
        ids = prompt_prefix(tokenizer, prompt)
        return ids if max_tokens is None else ids[-max_tokens:]
    return tokenizer(prompt)["input_ids"][:max_tokens]


def pad(
    rows: Sequence[Sequence[int]], pad_id: int, side: str = "right"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of token ids as one [B, T] tensor padded on ``side`` with ``pad_id``, and the
    attention mask (1 on the rows' own tokens)."""
    check_choice(side, SIDES, "padding side")
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(0, len(row)) if side == "right" else slice(width - len(row), width)
        ids[i, span] = torch.tensor(row)
        mask[i, span] = 1
    return ids, mask


def batches(items: Sequence[T], batch_size: int) -> list[Sequence[T]]:
    """``items`` cut in order into consecutive batches of ``batch_size`` (the last may be short)."""
    if batch_size < 1:
        raise BrickworkError(f"batch size must be positive, got {batch_size}")
    return [items[i : i + batch_size] for i in range(0, len(items), batch_size)]


def greedy_generate(
    model, input_ids: torch.Tensor, max_new_tokens: int, pad_id: int | None, **options
) -> torch.Tensor:
    """HF ``generate`` without sampling or gradients: the [B, T + new] token ids. ``options``
    (``attention_mask``, ``min_new_tokens``, ``past_key_values`` ...) go to ``generate``."""
    with torch.no_grad():
        return model.generate(
            input_ids=input_ids,
            do_sample=False,
            max_new_tokens=max_new_tokens,
            pad_token_id=pad_id,
            **options,
        )
