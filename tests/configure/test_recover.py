"""Recovery by self-distillation, the recovery brick and prebuilt configured models (tiny llama)."""

import dataclasses

import pytest
import torch

from brickwork.bricks import attach, load_brick, save_brick
from brickwork.bricks.recovery import apply_recovery
from brickwork.configure.build import (
    build_configured,
    configured_dirs,
    load_configured,
    prebuilt_for,
    save_configured,
)
from brickwork.configure.compact import gather_ffn
from brickwork.configure.recover import RecoverySettings, recover
from brickwork.errors import BrickworkError
from tests.configure.conftest import tiny_stats

FAST = RecoverySettings(
    steps=4, batch_size=4, lr=1e-3, seq_len=48, continuation_tokens=6, mode="ffn"
)
IDS = torch.tensor([[256, 72, 101, 108, 108, 111, 32, 119, 111, 114]])


def logits(model):
    with torch.no_grad():
        return model(input_ids=IDS).logits


@pytest.fixture
def stats(tiny_llama):
    return tiny_stats(tiny_llama, with_set=1)


def half(loaded, offset=0):
    return [torch.arange(offset, 64, 2) for _ in loaded.family.layer_modules(loaded.model)]


@pytest.fixture
def train(tiny_samples):
    return [s for s in tiny_samples if s.split == "train"]


@pytest.mark.parametrize(("mode", "lr"), [("ffn", 1e-3), ("lora", 1e-4)])
def test_recovery_trains_the_compact_model_and_never_changes_the_dense_one(
    tiny_llama, train, mode, lr
):
    dense = {k: v.clone() for k, v in tiny_llama.model.state_dict().items()}
    flags = [p.requires_grad for p in tiny_llama.model.parameters()]
    compact = gather_ffn(tiny_llama, half(tiny_llama))
    before = logits(compact.loaded.model)
    brick = recover(
        tiny_llama, compact, train, dataclasses.replace(FAST, mode=mode, lr=lr, eval_every=1)
    )
    assert all(torch.equal(v, dense[k]) for k, v in tiny_llama.model.state_dict().items())
    assert [p.requires_grad for p in tiny_llama.model.parameters()] == flags
    assert torch.equal(logits(compact.loaded.model), before)  # recovery trained a copy
    assert brick.kind == "recovery" and brick.base_model == compact.loaded.fingerprint
    assert brick.metrics["heldout_loss_after"] <= brick.metrics["heldout_loss_before"]
    with attach(compact.loaded, [brick]) as model:
        assert not torch.allclose(logits(model), before)
    assert torch.equal(logits(compact.loaded.model), before)
    if mode == "ffn":
        assert all(".mlp." in name for name in brick.tensors)


def test_recovered_brick_refuses_another_compact_model(tiny_llama, train):
    compact = gather_ffn(tiny_llama, half(tiny_llama))
    other = gather_ffn(tiny_llama, half(tiny_llama, offset=1))  # same shapes, other neurons
    brick = recover(tiny_llama, compact, train, FAST)
    refused = pytest.raises(BrickworkError, match="was made for base model")
    with refused, attach(other.loaded, [brick]):
        pass
    with pytest.raises(BrickworkError, match="recover this compact model itself"):
        apply_recovery(other.loaded, brick)
    refused = pytest.raises(BrickworkError, match="was made for base model")
    with refused, attach(tiny_llama, [brick]):  # nor the dense model
        pass


def test_bad_settings_refused(tiny_llama, train):
    compact = gather_ffn(tiny_llama, half(tiny_llama))
    for bad in ({"mode": "full"}, {"steps": 0}, {"seq_len": 4}, {"continuation_tokens": -1}):
        with pytest.raises(BrickworkError):
            recover(tiny_llama, compact, train, dataclasses.replace(FAST, **bad))
    with pytest.raises(BrickworkError, match="train samples"):
        recover(tiny_llama, compact, [], FAST)


def test_build_is_deterministic_and_round_trips(tiny_llama, stats, train, tmp_path):
    first = build_configured(tiny_llama, stats, "math", 0.5, train, FAST, cache_dir=tmp_path)
    second = build_configured(tiny_llama, stats, "math", 0.5, train, FAST)
    assert first[1].tensors.keys() == second[1].tensors.keys()
    assert all(torch.equal(v, second[1].tensors[k]) for k, v in first[1].tensors.items())
    assert list((tmp_path).glob("continuations-*.json"))  # the dense continuations were cached
    compact, brick = first
    with attach(compact.loaded, [brick]) as model:
        expected = logits(model)
    save_configured(compact, brick, tmp_path / "built" / "math-50")
    found = configured_dirs(tmp_path / "built")
    assert set(found) == {("math", 0.5)}
    again = prebuilt_for(found, "math", 0.5)
    assert torch.equal(logits(again.loaded.model), expected)
    assert "prebuilt recovered model" in again.info["rule"]
    assert prebuilt_for(found, "coding", 0.5) is None and prebuilt_for(found, "math", 0.3) is None
    assert torch.equal(logits(load_configured(found["math", 0.5]).loaded.model), expected)


def test_recovery_brick_round_trips(tiny_llama, train, tmp_path):
    compact = gather_ffn(tiny_llama, half(tiny_llama))
    brick = recover(tiny_llama, compact, train, FAST)
    again = load_brick(save_brick(brick, tmp_path / "r"))
    assert again.spec.to_json() == brick.spec.to_json()
    assert all(torch.equal(v, again.tensors[k]) for k, v in brick.tensors.items())


def test_missing_configured_directory_refused(tmp_path):
    with pytest.raises(BrickworkError, match="no configured model directory"):
        configured_dirs(tmp_path / "absent")
    with pytest.raises(BrickworkError, match="holds no configured model"):
        configured_dirs(tmp_path)


def test_cli_refuses_bad_input_before_loading_a_model(tiny_llama, tiny_samples, tmp_path, capsys):
    from brickwork.cli import main
    from brickwork.configure.router import save_router, train_router

    router = tmp_path / "router.safetensors"
    save_router(train_router(tiny_llama, tiny_samples), router)
    absent = str(tmp_path / "no-model")  # loading it would fail with another message
    cases = {
        "budget": ["generate", "--model", absent, "--budget", "1.5", "Hi"],
        "unknown functionality 'poetry'": [
            *("generate", "--model", absent, "--router", str(router)),
            *("--configure", "poetry", "Hi"),
        ],
        "no configured model directory": [
            *("generate", "--model", absent, "--configured", str(tmp_path / "none"), "Hi"),
        ],
        "(0, 1]": [
            *("configure", "build", "--model", absent, "--functionality", "math"),
            *("--budget", "0", "--analysis", str(tmp_path), "--out", str(tmp_path / "o")),
        ],
        "no analysis directory": [
            *("configure", "build", "--model", absent, "--functionality", "math"),
            *("--budget", "0.5", "--analysis", str(tmp_path / "x"), "--out", str(tmp_path / "o")),
        ],
    }
    for message, argv in cases.items():
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and message in err and err.count("\n") == 1, err


def test_generate_uses_the_prebuilt_recovered_model(
    tiny_llama, tiny_model_dirs, stats, train, tmp_path, capsys
):
    from brickwork.cli import main

    compact, brick = build_configured(tiny_llama, stats, "math", 0.5, train, FAST)
    save_configured(compact, brick, tmp_path / "built" / "math-50")
    common = ["generate", "--model", tiny_model_dirs["llama"], "--max-new-tokens", "2"]
    common += ["--configured", str(tmp_path / "built"), "--configure", "math"]
    assert main([*common, "--budget", "0.5", "Hi"]) == 0
    out = capsys.readouterr().out
    assert "selection: prebuilt (prebuilt recovered model" in out
    assert compact.loaded.fingerprint in out
    assert main([*common, "--budget", "0.25", "Hi"]) == 0  # none at 25%: gathered as before
    out = capsys.readouterr().out
    assert "prebuilt" not in out and "selection: prompt" in out
