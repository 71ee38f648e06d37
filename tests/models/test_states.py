"""The prompt-state reader: the right layers and poolings, bit-exact, and no hooks left behind."""

import pytest
import torch

from brickwork.errors import BrickworkError
from brickwork.models.states import prompt_states

PROMPTS = ["hello there", "a", "a longer prompt, padded less"]


def _no_hooks(model) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def _alone(loaded, prompt):
    """Every hidden state of one unpadded prompt, by hand: the decoder layers' outputs."""
    ids = loaded.tokenizer(prompt, return_tensors="pt")["input_ids"]
    layers = loaded.family.layer_modules(loaded.model)
    outs = []
    handles = [m.register_forward_hook(lambda m, a, o: outs.append(o)) for m in layers]
    with torch.no_grad():
        final = loaded.model.base_model(input_ids=ids).last_hidden_state[0]
    for handle in handles:
        handle.remove()
    return [o[0] if isinstance(o, tuple) else o for o in outs], final


def test_mean_and_last_match_each_prompt_alone(tiny_llama):
    states = prompt_states(tiny_llama, PROMPTS, [1, -1], ("mean", "last"), batch_size=2)
    assert _no_hooks(tiny_llama.model)
    for row, prompt in enumerate(PROMPTS):
        outs, final = _alone(tiny_llama, prompt)
        for key, hidden in ((1, outs[0][0]), (-1, final)):
            assert torch.allclose(states[(key, "mean")][row], hidden.mean(0), atol=1e-5)
            assert torch.allclose(states[(key, "last")][row], hidden[-1], atol=1e-5)


def test_skip_first_drop_last_and_final_norm(tiny_llama):
    outs, final = _alone(tiny_llama, PROMPTS[0])
    skip = prompt_states(tiny_llama, PROMPTS[:1], [2], skip_first=True)[(2, "mean")][0]
    assert torch.allclose(skip, final[1:].mean(0), atol=1e-5)
    dropped = prompt_states(tiny_llama, PROMPTS[:1], [2], ("last",), drop_last=True)
    assert torch.allclose(dropped[(2, "last")][0], final[-2], atol=1e-5)
    raw = prompt_states(tiny_llama, PROMPTS[:1], [2], ("last",), final_norm=False)
    assert torch.equal(raw[(2, "last")][0], outs[1][0, -1])  # the last layer's own output


def test_bad_inputs_are_refused(tiny_llama):
    with pytest.raises(BrickworkError, match="out of range"):
        prompt_states(tiny_llama, PROMPTS, [3])
    with pytest.raises(BrickworkError, match="pooling"):
        prompt_states(tiny_llama, PROMPTS, [1], ("max",))
    with pytest.raises(BrickworkError, match="no prompts"):
        prompt_states(tiny_llama, [], [1])
    assert _no_hooks(tiny_llama.model)
