"""The brick directory format: exact round trips, PEFT compatibility, and clear errors."""

import json

import pytest
import torch
from peft import PeftModel

from brickwork import BrickworkError
from brickwork.bricks.brick import Brick, layer_brick, model_brick
from brickwork.bricks.format import load_brick, save_brick, verify_brick
from tests.tiny import build_tiny_model


@pytest.mark.parametrize("fixture", ["neuron_brick", "lora_brick", "steer_brick"])
def test_save_load_round_trip_is_bit_exact(fixture, request, tmp_path):
    brick = request.getfixturevalue(fixture)
    loaded = load_brick(save_brick(brick, tmp_path / brick.name))
    assert loaded.tensors.keys() == brick.tensors.keys()
    assert all(torch.equal(loaded.tensors[k], v) for k, v in brick.tensors.items())
    assert (loaded.name, loaded.kind, loaded.origin, loaded.purpose, loaded.base_model) == (
        brick.name,
        brick.kind,
        brick.origin,
        brick.purpose,
        brick.base_model,
    )
    assert (
        loaded.spec.to_json() == json.loads(json.dumps(brick.spec.to_json()))
        and loaded.provenance == brick.provenance
    )
    assert verify_brick(tmp_path / brick.name) == []


def test_peft_loads_a_plugin_brick_unchanged(lora_brick, tmp_path):
    folder = save_brick(lora_brick, tmp_path / "toy-task")
    peft_model = PeftModel.from_pretrained(build_tiny_model("llama"), folder)
    ids = torch.randint(0, 256, (1, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plugged = peft_model(input_ids=ids).logits
        plain = build_tiny_model("llama")(input_ids=ids).logits
    assert not torch.allclose(plugged, plain)  # the adapter does something
    state = {k: v for k, v in peft_model.state_dict().items() if "lora_" in k}
    assert len(state) == len(lora_brick.tensors) == 8  # 2 layers x (q, v) x (A, B)


def test_layer_and_model_bricks_round_trip(tiny_llama, tmp_path):
    layer = tiny_llama.family.layer_modules(tiny_llama.model)[1]
    brick = layer_brick("layer-1", "depth", tiny_llama.fingerprint, layer, 1)
    loaded = load_brick(save_brick(brick, tmp_path / "l"))
    assert loaded.spec == {"layer": 1}
    assert all(torch.equal(loaded.tensors[k], v) for k, v in layer.state_dict().items())
    ref = model_brick("helper-model", "math", tiny_llama.fingerprint, "someone/math-model")
    assert load_brick(save_brick(ref, tmp_path / "m")).spec == {"reference": "someone/math-model"}


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", ".hidden", "", "x" * 200])
def test_bad_names_are_rejected(name, tiny_llama):
    with pytest.raises(BrickworkError, match="invalid brick name"):
        Brick(name, "neuron_set", "emergent", "coding", tiny_llama.fingerprint)


def test_corrupt_truncated_missing_or_future_bricks_are_clear_errors(neuron_brick, tmp_path):
    folder = save_brick(neuron_brick, tmp_path / "b")
    weights = folder / "weights.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(BrickworkError, match="corrupt: checksum mismatch in weights.safetensors"):
        load_brick(folder)
    assert verify_brick(folder) == ["weights.safetensors"]
    weights.write_bytes(data)
    meta = json.loads((folder / "brick.json").read_text())
    (folder / "brick.json").write_text(json.dumps(dict(meta, format_version=99)))
    with pytest.raises(BrickworkError, match="format version 99"):
        load_brick(folder)
    (folder / "brick.json").write_text("{")
    with pytest.raises(BrickworkError, match="not JSON"):
        load_brick(folder)
    (folder / "brick.json").unlink()
    with pytest.raises(BrickworkError, match="brick.json is missing"):
        load_brick(folder)


def test_resaving_replaces_the_old_brick_whole(neuron_brick, tmp_path):
    save_brick(neuron_brick, tmp_path / "b")
    neuron_brick.metrics = {"ppl": 1.5}
    save_brick(neuron_brick, tmp_path / "b")
    assert load_brick(tmp_path / "b").metrics == {"ppl": 1.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
