"""Shared pieces of the update operations: tokenising facts, finding the subject, batching and
the hooks that read or change one layer's FFN output projection (the "down" projection)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from brickwork.errors import BrickworkError
from brickwork.models.hooks import hooks
from brickwork.models.layers import check_layers
from brickwork.models.load import LoadedModel
from brickwork.models.tokens import pad

# Short neutral prefixes: a fact's key is averaged over them (ROME's "random prefixes"), so the
# edit does not depend on the prompt being the first thing in the context.
CONTEXTS = (
    "",
    "Here is a fact. ",
    "I read this in a book. ",
    "Quick note: ",
    "The following is true. ",
    "From the encyclopedia: ",
)


class StopForward(Exception):
    """Raised by a hook once the layer of interest has run: the rest of the model is not needed."""


def forward_until_stop(loaded: LoadedModel, ids: torch.Tensor) -> None:
    """Run the model on ``ids`` without grad until a hook raises ``StopForward`` (or the end)."""
    try:
        with torch.no_grad():
            loaded.model(input_ids=ids, use_cache=False)
    except StopForward:
        pass


def opens(text: str, subject: str) -> bool:
    """Whether ``text`` starts with ``subject`` (case-insensitive)."""
    return text.lower().startswith(subject.lower())


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text)["input_ids"]


def target_ids(tokenizer, target: str) -> list[int]:
    """The tokens of `` target`` as a continuation (leading space, no special tokens)."""
    ids = tokenizer(" " + target.strip(), add_special_tokens=False)["input_ids"]
    if not ids:
        raise BrickworkError(f"the target {target!r} is empty")
    return ids


def subject_index(tokenizer, text: str, subject: str) -> int:
    """Index of the last token of the last occurrence of ``subject`` in ``text``."""
    start = text.lower().rfind(subject.lower())
    if not subject.strip() or start < 0:
        raise BrickworkError(f"the subject {subject!r} does not occur in {text!r}")
    end = start + len(subject)
    offsets = tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
    inside = [i for i, (a, b) in enumerate(offsets) if b > a and a < end]
    return inside[-1]


def down_module(loaded: LoadedModel, layer: int) -> torch.nn.Module:
    layers = loaded.family.layer_modules(loaded.model)
    check_layers([layer], len(layers))
    return loaded.family.down_proj(layers[layer])


def ffn_module(loaded: LoadedModel, layer: int) -> torch.nn.Module:
    down_module(loaded, layer)  # range check
    return loaded.family.ffn(loaded.family.layer_modules(loaded.model)[layer])


@contextmanager
def read_inputs(module: torch.nn.Module, store: list) -> Iterator[None]:
    """Append the module's input [B, T, d] of every forward pass to ``store``."""
    with hooks([(module, "forward_pre", lambda m, args: store.append(args[0].detach()))]):
        yield


def token_inputs(
    loaded: LoadedModel, module: torch.nn.Module, rows: list[list[int]], cols: list[int]
) -> torch.Tensor:
    """``module``'s input [len(rows), d] at token ``cols[i]`` of each row of token ids
    ``rows[i]``, from one right-padded forward pass without grad."""
    ids, mask = pad(rows, loaded.tokenizer.pad_token_id)
    seen: list[torch.Tensor] = []
    with torch.no_grad(), read_inputs(module, seen):
        loaded.model(input_ids=ids, attention_mask=mask)
    return seen[0][torch.arange(len(rows)), torch.tensor(cols)]


@contextmanager
def through_update(module: torch.nn.Module, w: torch.Tensor, delta: torch.Tensor) -> Iterator[None]:
    """Run ``module`` (a down projection) as if its weight had the rank-one update δ wᵀ: every
    token's output gains (w·x)·δ, x its input."""
    w = w.float()

    def hook(m, args, output):
        return output + ((args[0].float() @ w)[..., None] * delta).to(output.dtype)

    with hooks([(module, "forward", hook)]):
        yield
