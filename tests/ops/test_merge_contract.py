"""The contract every registered merge method keeps, on every tiny family: one brick with weight 1
is the identity (same ΔW, same logits once attached), and the parents are recorded."""

import pytest
import torch
from peft import LoraConfig, get_peft_model

from brickwork import BrickworkError
from brickwork.bricks import BrickRepository, attach
from brickwork.bricks.plugins import lora_brick_from_peft
from brickwork.cli import main
from brickwork.models import load_model
from brickwork.ops.combine import (
    MERGE_METHODS,
    content_hash,
    generalized_task_arithmetic,
    lora_deltas,
    merge,
    merge_dare,
    merge_ties,
    register_merge_method,
)
from tests.tiny import TINY_CONFIGS, build_tiny_model

IDS = torch.tensor([[256, 72, 101, 108, 108, 111, 32, 119, 111, 114]])
FULL = {"density": 1.0}  # options that make a method keep every entry


def identity_options(method: str) -> dict:
    return {k: v for k, v in FULL.items() if k in MERGE_METHODS[method].options}


@pytest.fixture(scope="module", params=sorted(TINY_CONFIGS))
def family_loras(request, tiny_model_dirs):
    """The tiny model of one family and two LoRA bricks on its attention and FFN projections."""
    loaded = load_model(tiny_model_dirs[request.param])
    targets = [loaded.family.down, "v_proj" if request.param != "gpt2" else "c_attn"]
    bricks = []
    for seed, rank in ((1, 4), (2, 2)):
        config = LoraConfig(r=rank, lora_alpha=2 * rank + 1, target_modules=targets)
        peft_model = get_peft_model(build_tiny_model(request.param), config)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_" in name:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
        bricks.append(lora_brick_from_peft(peft_model, f"p{seed}", "task", loaded.fingerprint))
    return loaded, bricks


def logits_with(loaded, bricks):
    with attach(loaded, bricks) as model, torch.no_grad():
        return model(input_ids=IDS).logits


@pytest.mark.parametrize("method", sorted(MERGE_METHODS))
def test_one_brick_with_weight_one_is_the_identity(family_loras, method):
    loaded, (brick, _) = family_loras
    merged = merge(method, [brick], [1.0], "same", **identity_options(method))
    want, got = lora_deltas(brick), lora_deltas(merged)
    assert got.keys() == want.keys()
    for module in want:
        scale = want[module].abs().max().item()
        assert torch.allclose(got[module], want[module], atol=1e-6 * scale, rtol=0), module
    expected = logits_with(loaded, [brick])
    assert not torch.allclose(expected, logits_with(loaded, []), atol=1e-4)  # the brick acts
    assert torch.allclose(logits_with(loaded, [merged]), expected, atol=1e-5)


@pytest.mark.parametrize("method", sorted(MERGE_METHODS))
def test_parents_are_recorded(family_loras, method):
    _, parents = family_loras
    merged = merge(method, parents, [0.75, -0.5], "child", **identity_options(method))
    recorded = merged.provenance["parents"]
    assert [p["name"] for p in recorded] == ["p1", "p2"]
    assert [p["content_hash"] for p in recorded] == [content_hash(p) for p in parents]
    assert [p["weight"] for p in recorded] == [0.75, -0.5]
    assert merged.provenance["parameters"]["weights"] == [0.75, -0.5]
    assert merged.base_model == parents[0].base_model


@pytest.mark.parametrize("method", sorted(MERGE_METHODS))
def test_every_registered_method_is_a_cli_choice(tiny_llama, method, tmp_path):
    from tests.ops.test_combine import make_lora

    repo = BrickRepository(tmp_path / "repo")
    parent = make_lora(tiny_llama, "alpha", 1)
    repo.add(parent)
    argv = ["combine", method, "--repo", str(repo.root), "--bricks", "alpha", "--weights", "1"]
    assert main([*argv, "--name", "same", "--density", "1"]) == 0
    saved = repo.get("same")
    assert saved.provenance["parents"][0]["content_hash"] == content_hash(parent)
    for module, delta in lora_deltas(parent).items():
        scale = delta.abs().max().item()
        assert torch.allclose(lora_deltas(saved)[module], delta, atol=1e-6 * scale, rtol=0)


def test_named_methods_are_settings_of_the_core(tiny_llama):
    from tests.ops.test_combine import make_lora

    parents = [make_lora(tiny_llama, "a", 1), make_lora(tiny_llama, "b", 2, rank=2)]
    weights = [1.0, -0.7]
    ties = merge_ties(parents, weights, "t", density=0.3)
    core = generalized_task_arithmetic(
        parents, weights, "t", sparsification="magnitude", density=0.3, sign_consensus=True
    )
    assert all(torch.equal(ties.tensors[k], core.tensors[k]) for k in ties.tensors)
    dare = merge_dare(parents, weights, "d", density=0.4, seed=5)
    core = generalized_task_arithmetic(
        parents, weights, "d", sparsification="random", density=0.4, seed=5
    )
    assert all(torch.equal(dare.tensors[k], core.tensors[k]) for k in dare.tensors)
    assert core.provenance["parameters"]["sparsification"] == "random"


def test_registry_refuses_unknown_names_and_options(tiny_llama):
    from tests.ops.test_combine import make_lora

    brick = make_lora(tiny_llama, "a", 1)
    with pytest.raises(BrickworkError, match="unknown merge method 'nope'; known: linear"):
        merge("nope", [brick], [1.0], "x")
    with pytest.raises(BrickworkError, match="takes no option 'density'"):
        merge("linear", [brick], [1.0], "x", density=0.5)
    with pytest.raises(BrickworkError, match="already registered"):
        register_merge_method("ties", merge_ties)
    with pytest.raises(BrickworkError, match="sparsification must be one of"):
        generalized_task_arithmetic([brick], [1.0], "x", sparsification="top-k")
