"""Token helpers: chat formatting, truncation, padding on either side, batching."""

import pytest
import torch

from brickwork.errors import BrickworkError
from brickwork.models.tokens import batches, greedy_generate, pad, prompt_prefix, prompt_tokens
from tests.tiny import tiny_tokenizer


def test_pad_right_and_left():
    ids, mask = pad([[1, 2, 3], [4]], 0)
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    ids, mask = pad([[1, 2, 3], [4]], 9, "left")
    assert ids.tolist() == [[1, 2, 3], [9, 9, 4]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert ids.dtype == mask.dtype == torch.long
    with pytest.raises(BrickworkError, match="padding side"):
        pad([[1]], 0, "middle")


def test_batches_keep_order_and_refuse_zero():
    assert batches(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
    with pytest.raises(BrickworkError, match="batch size must be positive"):
        batches([1], 0)


def test_plain_prompt_keeps_its_start_and_chat_prompt_its_end():
    tok = tiny_tokenizer()
    text = "abcdefgh"
    assert prompt_tokens(tok, text, max_tokens=3) == tok(text)["input_ids"][:3]
    assert prompt_prefix(tok, text) == tok(text + "\n\n")["input_ids"]  # no chat template
    tok.chat_template = "{% for m in messages %}<u>{{ m['content'] }}{% endfor %}<a>"
    chat = prompt_prefix(tok, text)
    assert tok.decode(chat) == "<u>abcdefgh<a>"
    assert prompt_tokens(tok, text, chat=True, max_tokens=4) == chat[-4:]


def test_greedy_generate_is_hf_greedy_generate_without_grad():
    from tests.tiny import build_tiny_model

    model = build_tiny_model("llama")
    ids = torch.tensor([[256, 72, 105], [256, 65, 66]])
    mask = torch.ones_like(ids)
    out = greedy_generate(model, ids, 5, 257, attention_mask=mask)
    with torch.no_grad():
        expected = model.generate(
            input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=5, pad_token_id=257
        )
    assert torch.equal(out, expected) and not out.requires_grad
    forced = greedy_generate(model, ids[:1], 4, 257, min_new_tokens=4)
    assert forced.shape == (1, 3 + 4)
