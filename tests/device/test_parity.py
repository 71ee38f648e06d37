"""Logit parity per family: the model brickwork loads gives transformers' own logits for the same
saved weights, in float32 and in bfloat16."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from brickwork import load_model
from tests.tiny import TINY_CONFIGS

IDS = torch.randint(0, 256, (2, 11), generator=torch.Generator().manual_seed(5))


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS, attention_mask=torch.ones_like(IDS)).logits


@pytest.mark.parametrize("family", sorted(TINY_CONFIGS))
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_logits_match_transformers_loader(tiny_model_dirs, family, dtype):
    path = tiny_model_dirs[family]
    ours = load_model(path, dtype=dtype, device="cpu").model
    theirs = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).eval()
    assert next(ours.parameters()).dtype == getattr(torch, dtype)
    assert torch.equal(_logits(ours), _logits(theirs))
