"""Helpers for the growth tests: tiny loaded models of every family (built in memory)."""

from __future__ import annotations

import torch

from brickwork.models.families import family_for
from brickwork.models.load import LoadedModel, fingerprint
from tests.tiny import TINY_CONFIGS, build_tiny_model, tiny_tokenizer

FAMILY_NAMES = sorted(TINY_CONFIGS)


def tiny_loaded(family: str, seed: int = 0) -> LoadedModel:
    model = build_tiny_model(family, seed)
    tokenizer = tiny_tokenizer()
    return LoadedModel(model, tokenizer, family_for(model.config), fingerprint(model), family)


def some_token_ids() -> torch.Tensor:
    return torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))


def logits(loaded_or_model, ids: torch.Tensor) -> torch.Tensor:
    model = getattr(loaded_or_model, "loaded", loaded_or_model)
    model = getattr(model, "model", model)
    with torch.no_grad():
        return model(input_ids=ids).logits
