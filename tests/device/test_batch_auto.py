"""``--batch-size auto`` and the free-memory checks, with the free memory monkeypatched."""

from __future__ import annotations

import json

import pytest
import torch

from brickwork import BrickworkError, load_model
from brickwork.cli import main
from brickwork.models import estimate
from brickwork.models.estimate import (
    BATCH_CAP,
    SAFETY,
    activation_bytes,
    auto_batch_size,
    model_config,
    parameter_count,
)
from brickwork.profile import load_profile

CPU = torch.device("cpu")


def _free(monkeypatch, free: int) -> None:
    monkeypatch.setattr(estimate, "available_memory", lambda device: free)


def _room_for(config, prompts: int, seq_len: int, reserved: int = 0, training=False) -> int:
    """Free bytes in which exactly ``prompts`` prompts of activations fit."""
    per_prompt = activation_bytes(config, torch.float32, 1, seq_len, training)
    return int((reserved + (prompts + 0.5) * per_prompt) / SAFETY)


def test_the_largest_batch_that_fits_at_least_one_and_capped(tiny_model_dirs, monkeypatch):
    config = model_config(tiny_model_dirs["llama"])
    _free(monkeypatch, _room_for(config, 5, 64, reserved=1000))
    size, free, per_prompt = auto_batch_size(config, torch.float32, CPU, 64, reserved=1000)
    assert size == 5 and per_prompt == activation_bytes(config, torch.float32, 1, 64)
    _free(monkeypatch, _room_for(config, 5, 64, training=True))
    assert auto_batch_size(config, torch.float32, CPU, 64, training=True)[0] == 5
    _free(monkeypatch, 10)
    assert auto_batch_size(config, torch.float32, CPU, 64)[0] == 1
    _free(monkeypatch, 2**50)
    assert auto_batch_size(config, torch.float32, CPU, 64)[0] == BATCH_CAP["cpu"]


def test_training_activations_per_prompt_exceed_inference(tiny_model_dirs):
    config = model_config(tiny_model_dirs["llama"])
    one = activation_bytes(config, torch.float32, 1, 32)
    assert activation_bytes(config, torch.float32, 4, 32) == 4 * one
    assert activation_bytes(config, torch.float32, 1, 32, training=True) > one
    assert activation_bytes(config, torch.bfloat16, 1, 32) < one


def test_without_psutil_the_free_ram_comes_from_proc_meminfo(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_psutil(name, *args, **kwargs):
        if name == "psutil":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_psutil)
    free = estimate.available_memory(CPU)
    assert free == estimate._meminfo_available() > 0


def _data(tiny_samples, tmp_path) -> str:
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(s.__dict__) + "\n" for s in tiny_samples))
    return str(data)


def test_profile_batch_size_auto_prints_and_uses_the_size(
    tiny_model_dirs, tiny_samples, tmp_path, monkeypatch, capsys
):
    config = model_config(tiny_model_dirs["llama"])
    statistics = estimate.statistics_bytes(config, len(tiny_samples), 3)
    _free(monkeypatch, _room_for(config, 3, 16, reserved=statistics))
    out = tmp_path / "p"
    command = [
        "profile",
        "--model",
        tiny_model_dirs["llama"],
        "--data",
        _data(tiny_samples, tmp_path),
    ]
    command += ["--out", str(out), "--batch-size", "auto", "--max-tokens", "16", "--quiet"]
    assert main(command) == 0
    assert "--batch-size auto: 3 (" in capsys.readouterr().out
    assert load_profile(out).meta["batch_size"] == 3


def test_train_batch_size_auto_is_a_training_batch(
    tiny_model_dirs, tiny_samples, tmp_path, monkeypatch, capsys
):
    config = model_config(tiny_model_dirs["llama"])
    _free(monkeypatch, _room_for(config, 2, 256, training=True))
    command = ["train", "task", "--name", "t", "--purpose", "p", "--repo", str(tmp_path / "r")]
    command += ["--model", tiny_model_dirs["llama"], "--data", _data(tiny_samples, tmp_path)]
    command += ["--batch-size", "auto", "--steps", "1", "--quiet"]
    assert main(command) == 0
    assert "--batch-size auto: 2 (" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["0", "many"])
def test_a_bad_batch_size_is_one_error(value, capsys):
    assert main(["profile", "--model", "x", "--out", "y", "--batch-size", value]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error:") and "--batch-size" in error and "\n" not in error


def test_a_model_whose_weights_will_not_fit_is_refused_before_loading(
    tiny_model_dirs, tmp_path, monkeypatch, capsys
):
    path = tiny_model_dirs["llama"]
    weights = parameter_count(model_config(path)) * 4
    _free(monkeypatch, weights - 1)
    with pytest.raises(BrickworkError, match="float32 weights but cpu has"):
        load_model(path)
    assert main(["profile", "--model", path, "--out", str(tmp_path / "o"), "--device", "cpu"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error:") and "needs about" in error and "\n" not in error
    _free(monkeypatch, weights)
    assert load_model(path).model is not None
