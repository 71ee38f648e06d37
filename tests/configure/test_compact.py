"""Compact models: physical slicing equals masking, 100% equals dense, save/load, plugins."""

import pytest
import torch

from brickwork.analysis.masking import zero_neurons
from brickwork.bricks.attach import attach
from brickwork.configure.compact import (
    attach_plugins,
    check_budget,
    gather_ffn,
    kept_from_mask,
    load_compact,
    save_compact,
)
from brickwork.errors import BrickworkError
from brickwork.models import load_model
from tests.tiny import TINY_CONFIGS

IDS = torch.tensor([[256, 72, 101, 108, 108, 111, 32, 119, 111, 114]])


def logits(model, ids=IDS):
    with torch.no_grad():
        return model(input_ids=ids).logits


def half_mask(loaded, seed=0):
    layers = loaded.family.layer_modules(loaded.model)
    d_ff = loaded.family.d_ff(loaded.model.config)
    generator = torch.Generator().manual_seed(seed)
    scores = torch.rand(len(layers), d_ff, generator=generator)
    widths = [d_ff // 2, d_ff // 4][: len(layers)]  # layers get different widths
    return torch.stack([s >= s.topk(w).values[-1] for s, w in zip(scores, widths, strict=True)])


@pytest.mark.parametrize("family", sorted(TINY_CONFIGS))
def test_full_selection_equals_dense(tiny_model_dirs, family):
    loaded = load_model(tiny_model_dirs[family])
    d_ff = loaded.family.d_ff(loaded.model.config)
    kept = [torch.arange(d_ff) for _ in loaded.family.layer_modules(loaded.model)]
    compact = gather_ffn(loaded, kept)
    assert torch.equal(logits(compact.loaded.model), logits(loaded.model))
    assert compact.fraction == 1.0


@pytest.mark.parametrize("family", sorted(TINY_CONFIGS))
def test_sliced_model_equals_masked_dense_and_has_sliced_shapes(tiny_model_dirs, family):
    loaded = load_model(tiny_model_dirs[family])
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    mask = half_mask(loaded)
    compact = gather_ffn(loaded, kept_from_mask(mask))
    with zero_neurons(loaded, ~mask):
        masked = logits(loaded.model)
    torch.testing.assert_close(logits(compact.loaded.model), masked, rtol=1e-4, atol=1e-5)
    family_ = loaded.family
    for layer, width in zip(
        family_.layer_modules(compact.loaded.model), compact.widths, strict=True
    ):
        assert family_.input_weight(layer).shape[0] == width
        assert family_.down_weight(layer).shape[1] == width
        hidden = loaded.model.config.hidden_size
        assert family_.down_weight(layer).shape[0] == hidden
    assert compact.widths == mask.sum(dim=1).tolist()
    # The input model is untouched.
    after = loaded.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma2"])
def test_save_load_round_trip(tiny_model_dirs, family, tmp_path):
    loaded = load_model(tiny_model_dirs[family])
    compact = gather_ffn(loaded, kept_from_mask(half_mask(loaded, seed=1)), info={"budget": 0.4})
    save_compact(compact, tmp_path / "c")
    again = load_compact(tmp_path / "c")
    assert torch.equal(logits(again.loaded.model), logits(compact.loaded.model))
    assert again.loaded.fingerprint == compact.loaded.fingerprint
    assert again.base_fingerprint == loaded.fingerprint
    assert again.widths == compact.widths and again.info == {"budget": 0.4}


def test_corrupt_save_is_refused(tiny_llama, tmp_path):
    compact = gather_ffn(tiny_llama, kept_from_mask(half_mask(tiny_llama)))
    save_compact(compact, tmp_path / "c")
    from safetensors.torch import load_file, save_file

    kept = load_file(str(tmp_path / "c" / "kept_neurons.safetensors"))
    kept["layer000"] = kept["layer000"].flip(0)  # same shapes, other neurons
    save_file(kept, str(tmp_path / "c" / "kept_neurons.safetensors"))
    with pytest.raises(BrickworkError, match="fingerprint"):
        load_compact(tmp_path / "c")


def test_generate_works_on_compact(tiny_llama):
    compact = gather_ffn(tiny_llama, kept_from_mask(half_mask(tiny_llama)))
    out = compact.loaded.model.generate(
        input_ids=IDS, max_new_tokens=5, do_sample=False, pad_token_id=257
    )
    assert out.shape == (1, IDS.shape[1] + 5)


@pytest.mark.parametrize("budget", [0, -0.1, 1.5, "half"])
def test_bad_budgets_refused(budget):
    with pytest.raises(BrickworkError, match="budget"):
        check_budget(budget)


def test_empty_layer_and_bad_indices_refused(tiny_llama):
    mask = half_mask(tiny_llama)
    mask[1] = False
    with pytest.raises(BrickworkError, match="no neuron"):
        kept_from_mask(mask)
    with pytest.raises(BrickworkError, match="indices"):
        gather_ffn(tiny_llama, [torch.tensor([0, 64]), torch.tensor([1])])
    with pytest.raises(BrickworkError, match="layers"):
        gather_ffn(tiny_llama, [torch.tensor([0])])


def test_lora_plugin_attaches_to_compact(tiny_llama, lora_brick):
    compact = gather_ffn(tiny_llama, kept_from_mask(half_mask(tiny_llama)))
    plain = logits(compact.loaded.model)
    with attach_plugins(compact, [lora_brick]) as model:
        adapted = logits(model)
    assert not torch.allclose(adapted, plain)
    assert torch.equal(logits(compact.loaded.model), plain)  # detached again
    # The same LoRA on the masked dense model gives the same logits.
    mask = half_mask(tiny_llama)
    with attach(tiny_llama, [lora_brick]) as model, zero_neurons(tiny_llama, ~mask):
        torch.testing.assert_close(adapted, logits(model), rtol=1e-4, atol=1e-5)


def test_plugin_for_another_base_refused(tiny_llama, lora_brick):
    from dataclasses import replace

    compact = gather_ffn(tiny_llama, kept_from_mask(half_mask(tiny_llama)))
    foreign = replace(lora_brick, base_model="sha256:" + "0" * 32)
    with (
        pytest.raises(BrickworkError, match="made for base model"),
        attach_plugins(compact, [foreign]),
    ):
        pass
