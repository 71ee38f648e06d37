"""Growth on the real default model (slow): logits unchanged, and a grown model reloads."""

import pytest
import torch

from brickwork import load_model
from brickwork.ops.grow import grow_depth, grow_experts, grow_width, load_grown, save_grown

pytestmark = pytest.mark.slow


def test_default_model_growth_keeps_logits_and_reloads(tmp_path):
    loaded = load_model()
    ids = loaded.tokenizer("Translate into German: a dog runs.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        before = loaded.model(ids).logits
    grown = grow_experts(grow_width(grow_depth(loaded, [15]), [3], 64), [29], 2)
    assert grown.loaded.model.config.num_hidden_layers == 31
    with torch.no_grad():
        after = grown.loaded.model(ids).logits
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    again = load_grown(save_grown(grown, tmp_path / "grown"))
    with torch.no_grad():
        assert torch.equal(again.loaded.model(ids).logits, after)
