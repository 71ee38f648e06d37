"""The kind registry and typed specs: wrong specs are one clear error, when built and when read;
a kind registered from outside saves, loads and attaches like a built-in one."""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import torch

from brickwork import BrickworkError
from brickwork.bricks import (
    Brick,
    BrickSpec,
    attach,
    kinds,
    load_brick,
    register_brick_kind,
    save_brick,
    steering_brick,
)
from brickwork.bricks.specs import DeltaSpec, SteeringSpec


def test_a_spec_with_missing_and_wrongly_typed_fields_is_one_error(tiny_llama):
    with pytest.raises(BrickworkError) as error:
        Brick("s", "steering", "customized", "p", tiny_llama.fingerprint, spec={"scale": "big"})
    assert str(error.value) == (
        "invalid steering brick spec: missing 'layers'; 'scale' must be a float, not 'big'"
    )
    with pytest.raises(BrickworkError, match="'layers' must be a list of int, not \\[1, 'x'\\]"):
        SteeringSpec(layers=[1, "x"])
    with pytest.raises(BrickworkError, match="unknown field 'plugin_type'"):
        SteeringSpec.from_json({"layers": [1], "plugin_type": "steering"})
    with pytest.raises(BrickworkError, match="update 'inject' needs 'neurons'"):
        DeltaSpec(update="inject", layer=0, facts=[])
    with pytest.raises(BrickworkError, match="'growth' must be plain JSON"):
        Brick("g", "grown", "customized", "p", "f", spec={"slices": {}, "growth": {0: 1}})


def test_a_brick_json_with_a_wrong_spec_is_refused_on_read(tiny_llama, tmp_path):
    brick = steering_brick("s", "p", tiny_llama.fingerprint, torch.ones(1, 32), layers=[1])
    folder = save_brick(brick, tmp_path / "s")
    meta = json.loads((folder / "brick.json").read_text())
    meta["spec"]["layers"] = "1"
    (folder / "brick.json").write_text(json.dumps(meta))
    with pytest.raises(BrickworkError, match="'layers' must be a list of int, not '1'"):
        load_brick(folder)


def test_a_spec_reads_as_its_json_object_and_writes_through_attributes():
    spec = SteeringSpec(layers=(0, 1), scale=2)
    assert spec == {"layers": [0, 1], "scale": 2.0} and spec.scale == 2.0
    assert "prompt_template" not in spec and spec.get("prompt_template") is None
    spec.prompt_template = "Q: {input}"
    assert {**spec}["prompt_template"] == "Q: {input}" == spec.to_json()["prompt_template"]


def test_unknown_kinds_and_double_registrations_are_refused():
    with pytest.raises(BrickworkError, match="unknown brick kind 'plugin'; kinds: neuron_set, "):
        Brick("x", "plugin", "customized", "p", "f", spec={"plugin_type": "lora"})
    with pytest.raises(BrickworkError, match="'lora' is already registered"):
        register_brick_kind("lora", SteeringSpec)


@dataclass(eq=False, kw_only=True)
class BiasSpec(BrickSpec):
    layer: int


def test_a_kind_registered_from_outside_saves_loads_and_attaches(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setattr(kinds, "_REGISTRY", dict(kinds._REGISTRY))  # leave the real one alone

    @contextmanager
    def add_bias(loaded, bricks, mode):
        ffn = loaded.family.ffn(loaded.family.layer_modules(loaded.model)[bricks[0].spec.layer])
        handle = ffn.register_forward_hook(lambda m, a, out: out + bricks[0].tensors["bias"])
        try:
            yield None
        finally:
            handle.remove()

    register_brick_kind("bias", BiasSpec, attach=add_bias, tensors=("bias",))
    with pytest.raises(BrickworkError, match="bias brick 'b' lacks tensor"):
        Brick("b", "bias", "customized", "p", tiny_llama.fingerprint, spec={"layer": 1})
    brick = Brick(
        "b",
        "bias",
        "customized",
        "p",
        tiny_llama.fingerprint,
        {"bias": torch.ones(32)},
        {"layer": 1},
    )
    loaded = load_brick(save_brick(brick, tmp_path / "b"))
    assert isinstance(loaded.spec, BiasSpec) and loaded.spec.layer == 1
    ids = torch.tensor([[1, 2, 3]])
    before = tiny_llama.model(input_ids=ids).logits.detach()
    with attach(tiny_llama, [loaded]) as model:
        assert not torch.allclose(model(input_ids=ids).logits, before)
    assert torch.equal(tiny_llama.model(input_ids=ids).logits, before)
