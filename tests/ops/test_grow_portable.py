"""Saved grown models load in plain transformers and through ``load_model`` (brickwork generate
--model DIR), with the logits of the in-memory grown model; upcycled experts are refused by
transformers instead of being silently re-initialized."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM

from brickwork.cli import main
from brickwork.models import load_model
from brickwork.models.ffn import ffn_width
from brickwork.ops.grow import grow_depth, grow_experts, grow_width, save_grown
from brickwork.ops.grow.portable import UPCYCLED_WEIGHTS
from tests.ops.test_grow_support import FAMILY_NAMES, logits, some_token_ids, tiny_loaded
from tests.tiny import tiny_tokenizer

GROWTHS = {
    "width, one layer": lambda m: grow_width(m, [1], 8),
    "width, two layers unequal": lambda m: grow_width(grow_width(m, [0], 4), [1], 12),
    "depth": lambda m: grow_depth(m, [1]),
    "width then depth": lambda m: grow_depth(grow_width(m, [0], 6, method="split"), [2]),
}


def _grown(family: str, growth: str):
    loaded = tiny_loaded(family)
    loaded.tokenizer = tiny_tokenizer()
    return GROWTHS[growth](loaded)


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("growth", GROWTHS)
def test_plain_transformers_loads_the_grown_shapes(tmp_path, family, growth):
    grown = _grown(family, growth)
    save_grown(grown, tmp_path / "g")
    ids = some_token_ids()
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "g").eval()
    family = grown.loaded.family
    layers = family.layer_modules(grown.loaded.model)
    assert len(family.layer_modules(plain)) == len(layers)  # the config's layer count
    widest = max(ffn_width(family, family.ffn(layer)) for layer in layers)
    assert family.d_ff(plain.config) == widest  # the config's FFN width
    # zero padding adds exact zeros; only the summation order of the wider matmul may differ
    torch.testing.assert_close(
        logits(SimpleNamespace(model=plain), ids), logits(grown, ids), rtol=1e-5, atol=1e-5
    )
    again = load_model(str(tmp_path / "g"))
    assert again.fingerprint == grown.loaded.fingerprint
    assert torch.equal(logits(again, ids), logits(grown, ids))


def test_upcycled_experts_load_through_brickwork_only(tmp_path):
    grown = grow_experts(_grown("llama", "width, one layer"), [0], 2)
    save_grown(grown, tmp_path / "g")
    assert (tmp_path / "g" / UPCYCLED_WEIGHTS).is_file()
    assert "brickwork" in (tmp_path / "g" / "README.md").read_text()
    with pytest.raises(OSError):  # no model.safetensors: refused, not re-initialized
        AutoModelForCausalLM.from_pretrained(tmp_path / "g")
    again = load_model(str(tmp_path / "g"))
    ids = some_token_ids()
    assert torch.equal(logits(again, ids), logits(grown, ids))


@pytest.mark.parametrize("growth", ["width, two layers unequal", "depth", "experts"])
def test_generate_runs_on_a_grown_model_directory(tmp_path, capsys, growth):
    if growth == "experts":
        grown = grow_experts(_grown("llama", "depth"), [0], 2)
    else:
        grown = _grown("llama", growth)
    save_grown(grown, tmp_path / "g")
    argv = ["generate", "hi", "--model", str(tmp_path / "g"), "--configure", "none"]
    assert main([*argv, "--max-new-tokens", "2"]) == 0, capsys.readouterr().err
    assert "configure: none" in capsys.readouterr().out
