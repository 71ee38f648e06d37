"""A LoRA brick whose A and B ranks disagree is refused before anything is combined."""

import pytest

from brickwork import BrickworkError
from brickwork.ops.combine.lora import B_SUFFIX, lora_factors
from tests.ops.test_combine import make_lora


def test_lora_with_mismatched_ranks_is_refused(tiny_llama):
    brick = make_lora(tiny_llama, "a", seed=0)
    assert lora_factors(brick)  # a plain LoRA passes
    key = next(k for k in brick.tensors if k.endswith(B_SUFFIX))
    brick.tensors[key] = brick.tensors[key][:, :-1]
    with pytest.raises(BrickworkError, match="ranks must match"):
        lora_factors(brick)
