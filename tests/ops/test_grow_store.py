"""Grown models save and load: same weights, logits and record; damage and foreign dirs refused."""

from __future__ import annotations

import json

import pytest
import torch

from brickwork.bricks.format import load_brick
from brickwork.errors import BrickworkError
from brickwork.ops.grow import (
    grow_depth,
    grow_experts,
    grow_width,
    load_any,
    load_grown,
    save_grown,
)
from tests.ops.test_grow_support import FAMILY_NAMES, logits, some_token_ids, tiny_loaded


@pytest.fixture(scope="module")
def token_ids() -> torch.Tensor:
    return some_token_ids()


def _grown_everything(family: str):
    """Width, then depth, then experts: the record must carry all three through a reload."""
    loaded = tiny_loaded(family)
    return grow_experts(grow_depth(grow_width(loaded, [1], 8), [1]), [2], 2, mode="groups")


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_save_load_round_trip(tmp_path, token_ids, family):
    grown = _grown_everything(family)
    save_grown(grown, tmp_path / "grown")
    again = load_grown(tmp_path / "grown")
    assert again.loaded.fingerprint == grown.loaded.fingerprint
    assert again.history == json.loads(json.dumps(grown.history))
    assert again.trainable == grown.trainable and again.base_model == grown.base_model
    assert torch.equal(logits(again, token_ids), logits(grown, token_ids))
    kwargs = dict(max_new_tokens=4, do_sample=False, pad_token_id=257)
    ids = token_ids[:1]
    assert torch.equal(
        again.loaded.model.generate(ids, **kwargs), grown.loaded.model.generate(ids, **kwargs)
    )


def test_saved_record_and_grown_brick(tmp_path):
    grown = grow_width(tiny_loaded("llama"), [0], 8)
    folder = save_grown(grown, tmp_path / "g")
    record = json.loads((folder / "grown.json").read_text())
    assert record["structure"]["ffn_widths"] == {"0": 72}
    assert record["trainable_parameters"] == grown.trainable_count() == 8 * 32 * 3
    brick = load_brick(folder / "grown-brick")
    assert brick.kind == "grown" and brick.base_model == grown.base_model
    assert brick.tensors["model.layers.0.mlp.down_proj.weight"].shape == (32, 8)
    assert isinstance(load_any(str(folder)), type(grown))


def test_damaged_or_foreign_directories_are_refused(tmp_path):
    grown = grow_depth(tiny_loaded("gpt2"), [2])
    folder = save_grown(grown, tmp_path / "g")
    record = json.loads((folder / "grown.json").read_text())
    record["fingerprint"] = "sha256:0"
    (folder / "grown.json").write_text(json.dumps(record))
    with pytest.raises(BrickworkError, match="corrupt"):
        load_grown(folder)
    (folder / "grown.json").write_text("{not json")
    with pytest.raises(BrickworkError, match="not JSON"):
        load_grown(folder)
    with pytest.raises(BrickworkError, match="grown.json is missing"):
        load_grown(tmp_path)
    other = tmp_path / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(BrickworkError, match="not a grown model"):
        save_grown(grown, other)
    assert (other / "notes.txt").read_text() == "keep me"
