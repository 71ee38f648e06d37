"""Attach and detach: bricks change the model inside the context, and nothing after it."""

import pytest
import torch

from brickwork import BrickworkError
from brickwork.bricks.attach import attach
from brickwork.profile import record_activations


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.fixture
def ids():
    return torch.randint(0, 256, (2, 7), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("fixture", ["neuron_brick", "lora_brick", "steer_brick"])
def test_attach_changes_and_detach_restores_exactly(tiny_llama, ids, fixture, request):
    brick = request.getfixturevalue(fixture)
    before = logits(tiny_llama.model, ids)
    with attach(tiny_llama, [brick]) as model:
        assert not torch.allclose(logits(model, ids), before)
    assert torch.equal(logits(tiny_llama.model, ids), before)
    assert all(
        not m._forward_hooks and not m._forward_pre_hooks for m in tiny_llama.model.modules()
    )


def test_all_kinds_together_restore_exactly(tiny_llama, ids, neuron_brick, lora_brick, steer_brick):
    before = logits(tiny_llama.model, ids)
    with attach(tiny_llama, [neuron_brick, lora_brick, steer_brick], mode="ablate") as model:
        logits(model, ids)
    assert torch.equal(logits(tiny_llama.model, ids), before)
    names = {type(m).__name__ for m in tiny_llama.model.modules()}
    assert not any("Lora" in n for n in names)


def test_keep_and_ablate_zero_the_right_neurons(tiny_llama, ids, neuron_brick):
    for mode, zeroed in (("keep", slice(8, None)), ("ablate", slice(0, 8))):
        with attach(tiny_llama, [neuron_brick], mode=mode):
            acts = record_activations(tiny_llama.model, tiny_llama.family, input_ids=ids)
        assert all((a[..., zeroed] == 0).all() for a in acts), mode


def test_brick_for_another_base_model_is_refused(tiny_llama, neuron_brick):
    neuron_brick.base_model = "sha256:someone-else"
    refused = pytest.raises(BrickworkError, match="made for base model sha256:someone-else")
    with refused, attach(tiny_llama, [neuron_brick]):
        pass
