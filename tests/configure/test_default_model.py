"""On the real default model: the 100% slice equals dense and a 30% slice has the right widths."""

import pytest
import torch

from brickwork.configure.compact import gather_ffn
from brickwork.configure.select import baseline_selection


@pytest.mark.slow
def test_default_model_slices():
    from brickwork.models import load_model

    loaded = load_model("smollm2-135m-instruct")
    ids = loaded.tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    d_ff = loaded.family.d_ff(loaded.model.config)
    layers = len(loaded.family.layer_modules(loaded.model))
    full = gather_ffn(loaded, [torch.arange(d_ff)] * layers)
    with torch.no_grad():
        dense = loaded.model(input_ids=ids).logits
        assert torch.equal(full.loaded.model(input_ids=ids).logits, dense)
        small = gather_ffn(loaded, baseline_selection("magnitude", 0.3, loaded))
        assert small.widths == [round(0.3 * d_ff)] * layers
        assert small.loaded.model(input_ids=ids).logits.shape == dense.shape
