"""The dequantized-model cache: checksummed, re-created when damaged, optional when unwritable.
GGUF reading is replaced by the tiny llama (no GGUF file is needed to test the cache)."""

import pytest

from brickwork.models import load, load_model
from tests.tiny import build_tiny_model, tiny_tokenizer


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch):
    calls = []

    def dequantize(path):
        calls.append(path)
        return build_tiny_model("llama"), tiny_tokenizer()

    monkeypatch.setattr(load, "_dequantize", dequantize)
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF stand-in")
    return path, calls


def _weights(cache):
    (folder,) = (cache / "models").iterdir()
    return folder / "model.safetensors"


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[:1000])


@pytest.mark.parametrize("damage", [_flip, _truncate, lambda p: p.unlink()])
def test_damaged_cache_is_recreated(fake_gguf, tmp_path, capsys, damage):
    path, calls = fake_gguf
    cache = tmp_path / "cache"
    first = load_model(str(path), cache_dir=cache)
    assert load_model(str(path), cache_dir=cache).fingerprint == first.fingerprint
    assert len(calls) == 1  # the second load used the cache
    damage(_weights(cache))
    again = load_model(str(path), cache_dir=cache)
    assert again.fingerprint == first.fingerprint and len(calls) == 2
    assert "warning: damaged model cache" in capsys.readouterr().err
    assert [p.name for p in (cache / "models").iterdir() if p.name.startswith(".")] == []


def test_unusable_cache_dir_falls_back_to_no_cache(fake_gguf, tmp_path, capsys):
    path, calls = fake_gguf
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    loaded = load_model(str(path), cache_dir=not_a_dir)
    assert loaded.family.name == "llama"
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "cannot cache the dequantized model" in warnings[0]
