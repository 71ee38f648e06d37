"""Bricks written in format version 1 (five kinds, plugins and edits told apart by their spec)
still load, as the version 2 kinds, from directories crafted here as the old code wrote them."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import save_file

from brickwork import BrickworkError
from brickwork.bricks import BrickRepository, attach, load_brick, verify_brick
from brickwork.ops.update.store import delta_brick
from tests.tiny import build_tiny_model


def write_v1(folder: Path, kind: str, spec: dict, tensors: dict, base: str) -> Path:
    """A brick directory exactly as brickwork's format version 1 wrote it."""
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "weights.safetensors"), metadata={"format": "brickwork-brick"})
    if spec.get("plugin_type") == "lora":
        (folder / "adapter_config.json").write_text(json.dumps(spec["peft_config"], indent=1))
        shutil.copyfile(folder / "weights.safetensors", folder / "adapter_model.safetensors")
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}
    meta = {
        "format": "brickwork-brick",
        "format_version": 1,
        "name": folder.name,
        "kind": kind,
        "origin": "customized",
        "purpose": "test",
        "base_model": base,
        "description": "",
        "spec": spec,
        "provenance": {"method": "test"},
        "metrics": {},
        "files": files,
    }
    (folder / "brick.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    return folder


def v1_cases(tiny, lora_brick) -> dict[str, tuple[str, dict, dict, str]]:
    """name -> (v1 kind, v1 spec, tensors, the version 2 kind it becomes)."""
    edit = delta_brick(tiny, "e", {1: (torch.ones(32, 1), torch.ones(1, 64))}, "rank_one", [], {})
    fact = {"prompt": "p", "subject": "s", "target_new": "t"}
    inject = {"update": "inject", "layer": 1, "neurons": 1, "facts": [fact]}
    trace = {"layer": 1, "ranking": [1, 0], "p_clean": 0.5, "p_corrupt": 0.1}
    trace |= {"restored": "subject last token", "noise": 3.0, "samples": 8}
    return {
        "set": (
            "neuron_set",
            {"n_layers": 2, "d_ff": 64, "rule": "r", "neurons_per_layer": [1, 1]},
            {"mask": torch.zeros(2, 64, dtype=torch.uint8).index_fill_(1, torch.tensor([0]), 1)},
            "neuron_set",
        ),
        "lora": (
            "plugin",
            {"plugin_type": "lora", "peft_config": lora_brick.spec.peft_config},
            dict(lora_brick.tensors),
            "lora",
        ),
        "steer": (
            "plugin",
            {"plugin_type": "steering", "layers": [1], "scale": 2.0},
            {"vectors": torch.ones(1, 32)},
            "steering",
        ),
        "edit": ("layer", dict(edit.spec), dict(edit.tensors), "delta"),
        "inject": ("layer", inject, {"keys": torch.ones(1, 32)}, "delta"),
        "trace": (
            "layer",
            trace,
            {"hidden_scores": torch.ones(2), "mlp_scores": torch.ones(2)},
            "trace",
        ),
        "grown": ("layer", {"slices": {}, "growth": {"op": "width"}}, {}, "grown"),
        "layer": ("layer", {"layer": 1}, {"w": torch.ones(2)}, "layer"),
        "model": ("model", {"reference": "someone/model"}, {}, "model"),
    }


def test_every_v1_brick_loads_as_its_version_2_kind(tiny_llama, lora_brick, tmp_path):
    for name, (kind, spec, tensors, new_kind) in v1_cases(tiny_llama, lora_brick).items():
        folder = write_v1(tmp_path / name, kind, spec, tensors, tiny_llama.fingerprint)
        brick = load_brick(folder)
        assert brick.kind == new_kind, name
        assert dict(brick.spec) == {k: v for k, v in spec.items() if k != "plugin_type"}, name
        assert all(torch.equal(brick.tensors[k], v) for k, v in tensors.items()), name
        assert verify_brick(folder) == [], name
        assert json.loads((folder / "brick.json").read_text())["format_version"] == 1  # untouched


def test_v1_plugins_and_edits_still_attach_and_peft_still_loads_the_lora(
    tiny_llama, lora_brick, tmp_path
):
    cases = v1_cases(tiny_llama, lora_brick)
    ids = torch.randint(0, 256, (1, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = tiny_llama.model(input_ids=ids).logits
    for name in ("lora", "steer", "edit"):
        kind, spec, tensors, _ = cases[name]
        brick = load_brick(write_v1(tmp_path / name, kind, spec, tensors, tiny_llama.fingerprint))
        with attach(tiny_llama, [brick]) as model, torch.no_grad():
            assert not torch.allclose(model(input_ids=ids).logits, before), name
        with torch.no_grad():
            assert torch.equal(tiny_llama.model(input_ids=ids).logits, before), name
    assert PeftModel.from_pretrained(build_tiny_model("llama"), tmp_path / "lora") is not None


def test_a_repository_of_v1_bricks_lists_and_filters_version_2_kinds(
    tiny_llama, lora_brick, tmp_path
):
    repo = BrickRepository(tmp_path / "repo")
    for name, (kind, spec, tensors, _) in v1_cases(tiny_llama, lora_brick).items():
        write_v1(repo.bricks_dir / name, kind, spec, tensors, tiny_llama.fingerprint)
    kinds = {m["name"]: m["kind"] for m in repo.list()}
    assert kinds["lora"] == "lora" and kinds["edit"] == kinds["inject"] == "delta"
    assert [m["name"] for m in repo.search(kind="plugin")] == ["lora", "steer"]
    assert "plugin_type" not in repo.get("steer").spec


def test_a_v1_brick_of_an_unknown_plugin_type_is_a_clear_error(tiny_llama, tmp_path):
    spec = {"plugin_type": "ia3", "peft_config": {}}
    folder = write_v1(tmp_path / "x", "plugin", spec, {}, tiny_llama.fingerprint)
    with pytest.raises(BrickworkError, match="unknown brick kind 'ia3'; kinds: neuron_set"):
        load_brick(folder)
