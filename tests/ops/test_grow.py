"""Width, depth and expert growth: output unchanged at init for every family, input untouched,
shapes, layer indices and trainable parameters as recorded, and bad input refused."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, OPTConfig

from brickwork.errors import BrickworkError
from brickwork.models import MoEFFN
from brickwork.models.ffn import read_ffn
from brickwork.models.load import LoadedModel, fingerprint
from brickwork.ops.grow import grow_depth, grow_experts, grow_width
from tests.ops.test_grow_support import FAMILY_NAMES, logits, some_token_ids, tiny_loaded
from tests.tiny import tiny_tokenizer


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def any_family(request) -> LoadedModel:
    return tiny_loaded(request.param)


@pytest.fixture(scope="module")
def token_ids() -> torch.Tensor:
    return some_token_ids()


GROWTHS = {
    "width-zero": lambda m: grow_width(m, [0, 1], 8),
    "width-split": lambda m: grow_width(m, [1], 100, method="split"),
    "depth": lambda m: grow_depth(m, [0, 1, 2]),
    "experts-copies": lambda m: grow_experts(m, [0], 3),
    "experts-groups": lambda m: grow_experts(m, [1], 4, mode="groups"),
}


@pytest.mark.parametrize("growth", sorted(GROWTHS))
def test_growth_keeps_logits_and_input(any_family, token_ids, growth):
    before, print_before = logits(any_family, token_ids), fingerprint(any_family.model)
    grown = GROWTHS[growth](any_family)
    assert grown.loaded.model is not any_family.model
    assert fingerprint(any_family.model) == print_before  # the input model is untouched
    assert grown.loaded.fingerprint != any_family.fingerprint  # but the grown one differs
    torch.testing.assert_close(logits(grown, token_ids), before, rtol=1e-5, atol=1e-5)
    assert grown.trainable_count() > 0
    assert grown.history[-1]["op"] == growth.split("-")[0]


@pytest.mark.parametrize("growth", sorted(GROWTHS))
def test_growth_generates_like_the_original(any_family, token_ids, growth):
    """Greedy generation with the KV cache (per-layer slots) gives the original's tokens."""
    grown = GROWTHS[growth](any_family)
    ids = token_ids[:1]
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=257)
    expected = any_family.model.generate(ids, **kwargs)
    assert torch.equal(grown.loaded.model.generate(ids, **kwargs), expected)


def test_width_adds_neurons_and_marks_only_them(token_ids):
    loaded = tiny_loaded("llama")
    grown = grow_width(loaded, [1], 8)
    family = grown.loaded.family
    layers = family.layer_modules(grown.loaded.model)
    assert read_ffn(family, family.ffn(layers[0])).width == 64
    assert read_ffn(family, family.ffn(layers[1])).width == 72
    assert grown.trainable_count() == 8 * 32 * 3  # gate and up rows, down columns
    down = grown.trainable["model.layers.1.mlp.down_proj.weight"]
    assert (down.dim, down.start) == (1, 64)
    assert torch.count_nonzero(layers[1].mlp.down_proj.weight[:, 64:]) == 0


def test_width_split_gpt2_halves_copied_columns():
    loaded = tiny_loaded("gpt2")
    grown = grow_width(loaded, [0], 4, method="split", seed=3)
    family = grown.loaded.family
    old = read_ffn(family, family.ffn(family.layer_modules(loaded.model)[0]))
    new = read_ffn(family, family.ffn(family.layer_modules(grown.loaded.model)[0]))
    copied = [i for i in range(64) if not torch.equal(new.down[:, i], old.down[:, i])]
    assert len(copied) == 4
    for k, i in enumerate(copied):
        assert torch.equal(new.inputs["c_fc"][64 + k], old.inputs["c_fc"][i]) or any(
            torch.equal(new.inputs["c_fc"][64 + j], old.inputs["c_fc"][i]) for j in range(4)
        )
        torch.testing.assert_close(new.down[:, i], old.down[:, i] / 2)


def test_depth_updates_layer_count_indices_and_types():
    loaded = tiny_loaded("gemma2")  # layer types alternate sliding / full
    assert loaded.model.config.layer_types == ["sliding_attention", "full_attention"]
    grown = grow_depth(loaded, [2, 1])
    config = grown.loaded.model.config
    assert config.num_hidden_layers == 4
    assert config.layer_types == [
        "sliding_attention",
        "sliding_attention",
        "full_attention",
        "full_attention",
    ]
    layers = grown.loaded.family.layer_modules(grown.loaded.model)
    assert [layer.self_attn.layer_idx for layer in layers] == [0, 1, 2, 3]
    assert grown.history[-1]["new_layers"] == [1, 3]
    # Gemma: the new block's post-norms scale by 1 + weight = 0; the copied projections stay.
    assert torch.all(layers[1].post_attention_layernorm.weight == -1)
    assert torch.count_nonzero(layers[1].self_attn.o_proj.weight) > 0
    assert loaded.model.config.num_hidden_layers == 2  # the input's config is untouched


def test_depth_llama_zeroes_output_projections():
    grown = grow_depth(tiny_loaded("llama"), [1])
    block = grown.loaded.family.layer_modules(grown.loaded.model)[1]
    assert torch.count_nonzero(block.self_attn.o_proj.weight) == 0
    assert torch.count_nonzero(block.mlp.down_proj.weight) == 0
    assert all(name.startswith("model.layers.1.") for name in grown.trainable)


def test_experts_router_and_chained_growth(token_ids):
    loaded = tiny_loaded("qwen2")
    grown = grow_experts(grow_width(loaded, [0], 8), [0, 1], 2, mode="groups")
    moe = grown.loaded.family.ffn(grown.loaded.family.layer_modules(grown.loaded.model)[0])
    assert isinstance(moe, MoEFFN) and [len(e.up_proj.weight) for e in moe.experts] == [36, 36]
    assert [h["op"] for h in grown.history] == ["width", "experts"]
    assert grown.base_model == loaded.fingerprint
    torch.testing.assert_close(logits(grown, token_ids), logits(loaded, token_ids))
    with torch.no_grad():  # a trained-looking router changes the output: the router matters
        moe.router.weight.normal_()
    assert not torch.allclose(logits(grown, token_ids), logits(loaded, token_ids), atol=1e-4)


def test_experts_from_group_assignment(token_ids):
    loaded = tiny_loaded("llama")
    assignment = torch.arange(64) % 4  # interleaved, as a neuron-group brick might give
    grown = grow_experts(loaded, [0], 4, mode="groups", assignments={0: assignment})
    torch.testing.assert_close(logits(grown, token_ids), logits(loaded, token_ids))
    with pytest.raises(BrickworkError, match="group assignment"):
        grow_experts(loaded, [0], 4, mode="groups", assignments={0: torch.arange(64) % 5})


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: grow_width(m, [2], 8), "out of range"),
        (lambda m: grow_width(m, [-1], 8), "out of range"),
        (lambda m: grow_width(m, [0], 0), "positive integer"),
        (lambda m: grow_width(m, [0], -3), "positive integer"),
        (lambda m: grow_width(m, [], 8), "at least one"),
        (lambda m: grow_width(m, [0, 0], 8), "must not repeat"),
        (lambda m: grow_width(m, [0], 8, method="grow"), "width method"),
        (lambda m: grow_depth(m, [3]), "out of range"),
        (lambda m: grow_depth(m, []), "at least one"),
        (lambda m: grow_experts(m, [5], 2), "out of range"),
        (lambda m: grow_experts(m, [0], 0), "positive integer"),
        (lambda m: grow_experts(m, [0], 2, top_k=3), "cannot exceed"),
        (lambda m: grow_experts(grow_experts(m, [0], 2), [0], 2), "already a mixture"),
        (lambda m: grow_width(grow_experts(m, [0], 2), [0], 2), "not a plain FFN"),
    ],
)
def test_bad_input_is_refused(call, message):
    with pytest.raises(BrickworkError, match=message):
        call(tiny_loaded("llama"))


def test_unsupported_family_is_refused():
    config = OPTConfig(
        vocab_size=260,
        hidden_size=32,
        ffn_dim=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        word_embed_proj_dim=32,
    )
    model = AutoModelForCausalLM.from_config(config)
    llama_family = tiny_loaded("llama").family  # even if the caller claims a known family
    loaded = LoadedModel(model, tiny_tokenizer(), llama_family, "sha256:opt", "opt")
    for grow in (
        lambda: grow_width(loaded, [0], 4),
        lambda: grow_depth(loaded, [0]),
        lambda: grow_experts(loaded, [0], 2),
    ):
        with pytest.raises(BrickworkError, match="unsupported model family 'opt'"):
            grow()
