"""The output-vocabulary brick: greedy decoding with the sliced head equals the full head's, the
screen recomputes outside tokens that could win, and a brick of another base is refused."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from brickwork import BrickworkError
from brickwork.bricks import attach, load_brick, save_brick
from brickwork.bricks.vocabulary import (
    SlicedHead,
    collect_vocabulary,
    frequent_tokens,
    sliced_head,
    vocabulary_brick,
)


def _greedy(model, ids, n=24):
    with torch.no_grad():
        return model.generate(input_ids=ids, max_new_tokens=n, do_sample=False, pad_token_id=257)


@pytest.fixture
def brick(tiny_llama, tiny_samples):
    train = [s for s in tiny_samples if s.split == "train" and s.functionality == "coding"]
    tokens = collect_vocabulary(
        tiny_llama, [s.prompt for s in train], [s.reference for s in train], new_tokens=4
    )
    tokens = torch.cat([tokens, frequent_tokens(tiny_llama, [s.prompt for s in train], 8)])
    vocab = tiny_llama.model.config.vocab_size
    return vocabulary_brick("coding-vocab", "coding", tiny_llama.fingerprint, tokens, vocab, "t")


def test_greedy_decoding_with_the_slice_equals_the_full_head(tiny_llama, brick, tiny_samples):
    ids = torch.tensor([[256, *b"print(", *b" x)"]])
    full = _greedy(tiny_llama.model, ids)
    with attach(tiny_llama, [brick]) as model:
        head = model.get_output_embeddings()
        assert torch.equal(_greedy(model, ids), full)
    assert head.stats["positions"] > 0
    assert len(brick.tensors["tokens"]) < tiny_llama.model.config.vocab_size
    assert torch.equal(_greedy(tiny_llama.model, ids), full)  # the full head is back


@pytest.mark.parametrize("screen", ["bf16", "int8"])
def test_an_outside_winner_is_recomputed_exactly(tiny_llama, screen):
    """A slice of one token that never wins: every step falls back, and decoding is still exact."""
    ids = torch.tensor([[256, *b"def f"]])
    full = _greedy(tiny_llama.model, ids, 12)
    loser = int(tiny_llama.model(input_ids=ids).logits[0, -1].argmin())
    with sliced_head(tiny_llama.model, torch.tensor([loser]), screen) as head:
        assert torch.equal(_greedy(tiny_llama.model, ids, 12), full)
    assert head.stats["fallback"] == head.stats["positions"] > 0


@pytest.mark.parametrize("screen", ["bf16", "int8"])
def test_logits_outside_the_slice_stay_within_the_screen_bound(tiny_llama, brick, screen):
    ids = torch.tensor([[256, *b"for i in range"]])
    inside = brick.tensors["tokens"]
    with torch.no_grad():
        full = tiny_llama.model(input_ids=ids).logits
        with sliced_head(tiny_llama.model, inside, screen):
            sliced = tiny_llama.model(input_ids=ids).logits
            greedy = _greedy(tiny_llama.model, ids)
    assert torch.allclose(sliced[..., inside], full[..., inside], atol=1e-5)
    assert (sliced - full).abs().max() < 0.05 * full.abs().max()
    assert torch.equal(greedy, _greedy(tiny_llama.model, ids))


def test_the_int8_screen_bound_holds_on_wide_rows():
    """The int8 kernel's screened logits stay within the per-row bound (float64 truth)."""
    torch.manual_seed(0)
    head = torch.nn.Linear(640, 4096, bias=False)
    h = torch.randn(3, 640) * 20
    screened = SlicedHead(head, torch.tensor([0]), "int8")
    hb = h.bfloat16()
    c = torch.ops.aten._weight_int8pack_mm(hb, screened.screen, screened.scale).float()
    truth = h.double() @ head.weight.detach().double().T
    bound = (
        screened.round_norm * h.norm(dim=1, keepdim=True)
        + screened.screen_norm * (h - hb.float()).norm(dim=1, keepdim=True)
        + c.abs() * 2**-7
        + 640 * 2**-23 * screened.screen_norm * hb.float().norm(dim=1, keepdim=True)
    )
    assert ((truth - c.double()).abs() <= bound.double()).all()


def test_an_unknown_screen_is_refused(tiny_llama):
    with pytest.raises(BrickworkError, match="unknown screen"):
        SlicedHead(tiny_llama.model.get_output_embeddings(), torch.tensor([0]), "fp8")


def test_round_trip_and_another_base_is_refused(tiny_llama, brick, tmp_path):
    again = load_brick(save_brick(brick, tmp_path / "v"))
    assert torch.equal(again.tensors["tokens"], brick.tensors["tokens"])
    assert again.spec.n_tokens == len(brick.tensors["tokens"])
    foreign = dataclasses.replace(brick, base_model="sha256:other")
    with pytest.raises(BrickworkError, match="sha256:other"), attach(tiny_llama, [foreign]):
        pass
