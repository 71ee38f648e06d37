"""Token-level sparsity: calibrated budgets hold on the calibration data, budget 1 is dense, and the
gathered decode FFN equals the masked dense FFN."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from brickwork import BrickworkError
from brickwork.configure.sparse_ffn import SparseFfn, sparse_decode
from brickwork.configure.token_sparsity import (
    METHODS,
    apply_sparsity,
    calibrate,
    calibration_ids,
    kept_share,
)
from brickwork.models import load_model


def _train(samples):
    return [s for s in samples if s.split == "train"]


def _logits(loaded, ids):
    with torch.no_grad():
        return loaded.model(input_ids=ids).logits


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("budget", [0.7, 0.3])
def test_each_method_keeps_about_its_budget_on_calibration_data(
    method, budget, tiny_llama, tiny_samples
):
    train = _train(tiny_samples)
    sparsity = calibrate(tiny_llama, method, [budget], train)[budget]
    assert kept_share(tiny_llama, sparsity, train) == pytest.approx(budget, abs=0.03)


@pytest.mark.parametrize("method", METHODS)
def test_budget_one_leaves_the_model_exactly_dense(method, tiny_llama, tiny_samples):
    sparsity = calibrate(tiny_llama, method, [1.0, 0.5], _train(tiny_samples))
    ids = calibration_ids(tiny_llama, tiny_samples[-1:])[0]
    dense = _logits(tiny_llama, ids)
    with apply_sparsity(tiny_llama, sparsity[1.0]):
        assert torch.equal(_logits(tiny_llama, ids), dense)
    with apply_sparsity(tiny_llama, sparsity[0.5]):
        assert not torch.allclose(_logits(tiny_llama, ids), dense)
    assert torch.equal(_logits(tiny_llama, ids), dense)  # the hooks are gone


@pytest.mark.parametrize("family", ["llama", "gemma3_text"])
@pytest.mark.parametrize("method", ["teal", "cats"])
def test_gathered_ffn_equals_the_masked_dense_ffn(family, method, tiny_model_dirs, tiny_samples):
    loaded = load_model(tiny_model_dirs[family])
    sparsity = calibrate(loaded, method, [0.4], _train(tiny_samples))[0.4]
    layer = loaded.family.layer_modules(loaded.model)[1]
    module = SparseFfn(loaded, loaded.family.ffn(layer), sparsity, 1)
    x = torch.randn(5, loaded.model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    for row in x:
        assert torch.allclose(module.gathered(row), module.dense(row), atol=1e-5)
    kept = module.dense(x) != 0  # the same active set: some but not all outputs are sparse
    assert kept.any()


@pytest.mark.parametrize("method", ["teal", "cats"])
def test_swapped_model_equals_the_hooked_model_in_prefill_and_decode(
    method, tiny_llama, tiny_samples
):
    sparsity = calibrate(tiny_llama, method, [0.5], _train(tiny_samples))[0.5]
    ids = calibration_ids(tiny_llama, tiny_samples[-1:])[0]
    with apply_sparsity(tiny_llama, sparsity):
        hooked = _logits(tiny_llama, ids)
        hooked_one = _logits(tiny_llama, ids[:, :1])
    with sparse_decode(tiny_llama, sparsity) as model:
        assert torch.allclose(model(input_ids=ids).logits, hooked, atol=1e-5)
        assert torch.allclose(model(input_ids=ids[:, :1]).logits, hooked_one, atol=1e-5)
    assert not any(isinstance(m, SparseFfn) for m in tiny_llama.model.modules())


def test_thresholds_of_another_model_are_refused(tiny_llama, tiny_samples):
    sparsity = calibrate(tiny_llama, "teal", [0.5], _train(tiny_samples))[0.5]
    foreign = dataclasses.replace(sparsity, base_model="sha256:someone-else")
    with pytest.raises(BrickworkError, match="someone-else"), apply_sparsity(tiny_llama, foreign):
        pass
    with pytest.raises(BrickworkError, match="unknown token-sparsity method"):
        calibrate(tiny_llama, "nope", [0.5], _train(tiny_samples))
