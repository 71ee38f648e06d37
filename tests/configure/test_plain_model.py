"""A saved configured model directory loads in plain transformers (and brickwork --model) and
computes what brickwork's own loader does (tiny llama, layers of unequal width)."""

import json

import torch
from transformers import AutoModelForCausalLM

from brickwork.configure.build import load_configured, save_configured
from brickwork.configure.compact import gather_ffn
from brickwork.configure.recover import recover
from brickwork.models import load_model
from tests.configure.test_recover import FAST, logits


def test_configured_directory_loads_in_plain_transformers_with_the_same_logits(
    tiny_llama, tiny_samples, tmp_path
):
    kept = [torch.arange(0, 64, 2), torch.arange(1, 64, 4)]  # 32 and 16 neurons
    info = {"functionality": "math", "budget": 0.375}
    compact = gather_ffn(tiny_llama, kept, info)
    train = [s for s in tiny_samples if s.split == "train"]
    brick = recover(tiny_llama, compact, train, FAST)
    folder = save_configured(compact, brick, tmp_path / "math-37")
    expected = logits(load_configured(folder).loaded.model)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert config["intermediate_size"] == 32  # the widest kept layer, not the dense 64
    plain = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    assert plain.model.layers[1].mlp.down_proj.weight[:, 16:].abs().max() == 0  # padding
    assert torch.allclose(logits(plain), expected, atol=1e-5, rtol=0)
    assert not torch.allclose(logits(tiny_llama.model), expected, atol=1e-3)  # not the dense
    ours = load_model(str(folder))  # brickwork --model DIR
    assert torch.allclose(logits(ours.model), expected, atol=1e-5, rtol=0)
    assert not list(folder.glob(".plain-model.tmp"))
