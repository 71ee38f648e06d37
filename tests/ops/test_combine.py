"""Combining LoRA bricks on the tiny llama: exactness, PEFT parity, TIES/DARE, search, errors."""

from dataclasses import replace

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from brickwork import BrickworkError
from brickwork.bricks import BrickRepository, attach, load_brick, save_brick
from brickwork.bricks.plugins import lora_brick_from_peft
from brickwork.cli import main
from brickwork.data import Sample
from brickwork.ops.combine import (
    SearchSettings,
    content_hash,
    lora_deltas,
    merge_dare,
    merge_linear,
    merge_ties,
    search_weights,
    task_arithmetic,
    weighted_mixture,
)
from tests.tiny import build_tiny_model

TARGETS = ["q_proj", "v_proj", "down_proj"]


def make_lora(loaded, name, seed, rank=4, alpha=8, targets=TARGETS, rslora=False):
    """A non-identity LoRA brick for ``loaded`` (the tiny llama), random A and B from ``seed``."""
    config = LoraConfig(
        r=rank, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0, use_rslora=rslora
    )
    peft_model = get_peft_model(build_tiny_model("llama"), config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param_name, param in peft_model.named_parameters():
            if "lora_" in param_name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    return lora_brick_from_peft(peft_model, name, f"task {name}", loaded.fingerprint)


@pytest.fixture
def parents(tiny_llama):
    return [
        make_lora(tiny_llama, "alpha", 1),
        make_lora(tiny_llama, "beta", 2, rank=2, alpha=3),
        make_lora(tiny_llama, "gamma", 3, rank=3, alpha=5, rslora=True),
    ]


@pytest.fixture
def ids():
    return torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(0))


def logits_with(loaded, bricks, ids):
    with attach(loaded, bricks) as model, torch.no_grad():
        return model(input_ids=ids).logits


def weighted_sum(bricks, weights):
    deltas = [lora_deltas(b) for b in bricks]
    return {m: sum(w * d[m] for w, d in zip(weights, deltas, strict=True)) for m in deltas[0]}


def assert_deltas_close(got, want, rtol=1e-5):
    assert got.keys() == want.keys()
    for module in want:
        scale = want[module].abs().max().item()
        assert torch.allclose(got[module], want[module], atol=rtol * scale, rtol=0), module


def test_linear_merge_is_the_weighted_delta_sum(parents):
    weights = [0.5, -1.25, 2.0]
    merged = merge_linear(parents, weights, "merged")
    assert merged.metrics["rank"] == 4 + 2 + 3
    assert_deltas_close(lora_deltas(merged), weighted_sum(parents, weights))


def test_one_brick_with_weight_one_is_the_identity(tiny_llama, parents, ids):
    merged = merge_linear(parents[:1], [1.0], "same")
    assert_deltas_close(lora_deltas(merged), lora_deltas(parents[0]), rtol=1e-6)
    expected = logits_with(tiny_llama, parents[:1], ids)
    assert torch.allclose(logits_with(tiny_llama, [merged], ids), expected, atol=1e-5)


def test_saved_merge_is_a_peft_adapter_naming_its_parents(tiny_llama, parents, ids, tmp_path):
    merged = merge_linear(parents, [1.0, 0.5, -0.5], "merged")
    folder = save_brick(merged, tmp_path / "merged")
    peft_model = PeftModel.from_pretrained(build_tiny_model("llama"), folder)
    with torch.no_grad():
        direct = peft_model(input_ids=ids).logits
    assert torch.allclose(direct, logits_with(tiny_llama, [merged], ids), atol=1e-5)
    recorded = load_brick(folder).provenance["parents"]
    assert [p["name"] for p in recorded] == ["alpha", "beta", "gamma"]
    assert [p["content_hash"] for p in recorded] == [content_hash(p) for p in parents]
    assert [p["weight"] for p in recorded] == [1.0, 0.5, -0.5]


def peft_combined_deltas(parents, weights, combination_type):
    """PEFT's add_weighted_adapter on the same inputs, read back as ΔW per module."""
    model = build_tiny_model("llama")
    with_peft = None
    for brick in parents:
        keep = ("r", "lora_alpha", "target_modules", "use_rslora")
        config = LoraConfig(**{k: v for k, v in brick.spec["peft_config"].items() if k in keep})
        if with_peft is None:
            with_peft = get_peft_model(model, config, adapter_name=brick.name)
        else:
            with_peft.add_adapter(brick.name, config)
        state = {k.replace(".weight", f".{brick.name}.weight"): v for k, v in brick.tensors.items()}
        with_peft.load_state_dict(state, strict=False)
    with_peft.add_weighted_adapter(
        [b.name for b in parents], weights, "combined", combination_type=combination_type
    )
    deltas = {}
    for name, module in with_peft.named_modules():
        if hasattr(module, "lora_A") and "combined" in module.lora_A:
            a, b = module.lora_A["combined"].weight, module.lora_B["combined"].weight
            key = name.replace("base_model.model.", "base_model.model.", 1)
            deltas[key] = module.scaling["combined"] * (b.double() @ a.double())
    return deltas


def test_matches_peft_cat_and_peft_linear_is_not_the_delta_sum(parents):
    same_rank = [parents[0], replace(make_lora_like(parents[0], 7), name="delta")]
    weights = [0.7, 0.4]
    ours = lora_deltas(merge_linear(same_rank, weights, "ours"))
    assert_deltas_close(ours, peft_combined_deltas(same_rank, weights, "cat"))
    linear = peft_combined_deltas(same_rank, weights, "linear")
    gap = max((linear[m] - ours[m]).abs().max().item() for m in ours)
    assert gap > 1e-2  # PEFT "linear" mixes A and B, adding cross terms B_i A_j


def make_lora_like(brick, seed):
    generator = torch.Generator().manual_seed(seed)
    tensors = {k: torch.randn(v.shape, generator=generator) * 0.3 for k, v in brick.tensors.items()}
    return replace(brick, tensors=tensors)


def test_svd_recompression_is_the_best_low_rank_approximation(parents):
    weights = [1.0, 1.0, 1.0]
    exact = weighted_sum(parents, weights)
    merged = merge_linear(parents, weights, "small", rank=2)
    assert merged.metrics["rank"] == 2
    got = lora_deltas(merged)
    lost = total = 0.0
    for module, delta in exact.items():
        u, s, vh = torch.linalg.svd(delta)
        best = (u[:, :2] * s[:2]) @ vh[:2]
        assert torch.allclose(got[module], best, atol=1e-5 * s[0].item())
        lost, total = lost + float((s[2:] ** 2).sum()), total + float((s**2).sum())
    assert merged.metrics["recompression_error"] == pytest.approx((lost / total) ** 0.5, rel=1e-6)
    assert 0 < merged.metrics["recompression_error"] < 1


def test_task_arithmetic_subtracts_a_skill(tiny_llama, parents, ids):
    gone = task_arithmetic([parents[0], parents[0]], [1.0, -1.0], "gone")
    assert all(d.abs().max() < 1e-6 for d in lora_deltas(gone).values())
    base = logits_with(tiny_llama, [], ids)
    assert torch.allclose(logits_with(tiny_llama, [gone], ids), base, atol=1e-5)
    half = task_arithmetic(parents[:2], [1.0, -1.0], "half", scale=0.5)
    assert_deltas_close(lora_deltas(half), weighted_sum(parents[:2], [0.5, -0.5]))
    assert half.provenance["method"] == "task_arithmetic"


def reference_ties(parents, weights, density):
    """TIES written out plainly: trim, elect the sign, disjoint mean."""
    merged = {}
    for module, deltas in zip(
        lora_deltas(parents[0]),
        zip(*[lora_deltas(p).values() for p in parents], strict=True),
        strict=True,
    ):
        trimmed = []
        for d in deltas:
            keep = int(-(-density * d.numel() // 1))
            cut = d.abs().flatten().sort(descending=True).values[keep - 1]
            trimmed.append(torch.where(d.abs() >= cut, d, 0.0))
        weighted = torch.stack([w * t for w, t in zip(weights, trimmed, strict=True)])
        sign = weighted.sum(0).sign()
        agree = (weighted.sign() == sign) & (weighted != 0)
        norm = sum(abs(w) * agree[i] for i, w in enumerate(weights))
        merged[module] = torch.where(norm > 0, (weighted * agree).sum(0) / norm.clamp_min(1e-30), 0)
    return merged


def test_ties_matches_a_plain_implementation(parents):
    merged = merge_ties(parents, [1.0, 0.5, 2.0], "ties", density=0.3, rank=32)
    assert merged.metrics["recompression_error"] < 1e-6  # full rank: nothing lost
    assert_deltas_close(lora_deltas(merged), reference_ties(parents, [1.0, 0.5, 2.0], 0.3))
    default = merge_ties(parents, [1.0, 0.5, 2.0], "ties9", density=0.3)
    assert default.metrics["rank"] == 9 and default.metrics["recompression_error"] > 0


def test_dare_is_seeded_and_unbiased_at_full_density(parents):
    first = merge_dare(parents, [1.0, 1.0, 1.0], "d1", density=0.5, seed=3, rank=32)
    again = merge_dare(parents, [1.0, 1.0, 1.0], "d2", density=0.5, seed=3, rank=32)
    other = merge_dare(parents, [1.0, 1.0, 1.0], "d3", density=0.5, seed=4, rank=32)
    assert all(torch.equal(first.tensors[k], again.tensors[k]) for k in first.tensors)
    assert any(not torch.equal(first.tensors[k], other.tensors[k]) for k in first.tensors)
    full = merge_dare(parents, [1.0, -0.5, 1.0], "d4", density=1.0, rank=32)
    assert_deltas_close(lora_deltas(full), weighted_sum(parents, [1.0, -0.5, 1.0]))
    ties = merge_dare(parents, [1.0, 1.0, 1.0], "d5", density=0.5, seed=3, variant="ties")
    assert ties.provenance["method"] == "dare_ties" and ties.provenance["parameters"]["seed"] == 3


def test_weighted_mixture_equals_the_merge_and_restores(tiny_llama, parents, ids):
    base = logits_with(tiny_llama, [], ids)
    weights = [0.3, -0.8, 1.1]
    merged = logits_with(tiny_llama, [merge_linear(parents, weights, "m")], ids)
    with weighted_mixture(tiny_llama, parents) as set_weights, torch.no_grad():
        set_weights(weights)
        mixed = tiny_llama.model(input_ids=ids).logits
    assert torch.allclose(mixed, merged, atol=1e-5)
    assert torch.equal(logits_with(tiny_llama, [], ids), base)


def test_search_weights_is_seeded_bounded_and_never_worse(tiny_llama, parents, tiny_samples):
    examples = [Sample("s", "2 + 2 =", "math", reference=" 4")] + tiny_samples[:3]
    settings = SearchSettings(budget=8, seed=0, bound=1.0)
    first = search_weights(tiny_llama, parents, examples, settings=settings)
    again = search_weights(tiny_llama, parents, examples, settings=settings)
    assert first.weights == again.weights and first.evaluations == 8
    assert all(-1.0 <= w <= 1.0 for w in first.weights)
    assert first.loss <= first.start_loss + 0.05 * 1.0  # objective includes the L1 term
    assert min(first.history) <= first.history[0]


def test_bad_input_is_refused(tiny_llama, parents):
    with pytest.raises(BrickworkError, match="empty"):
        merge_linear([], [], "x")
    with pytest.raises(BrickworkError, match="2 weights for 3 bricks"):
        merge_ties(parents, [1.0, 1.0], "x")
    with pytest.raises(BrickworkError, match="finite"):
        merge_dare(parents, [1.0, float("nan"), 1.0], "x")
    other_base = replace(parents[1], base_model="sha256:other")
    with pytest.raises(BrickworkError, match="different base models"):
        merge_linear([parents[0], other_base], [1, 1], "x")
    other_targets = make_lora(tiny_llama, "v-only", 4, targets=["v_proj"])
    with pytest.raises(BrickworkError, match="different modules"):
        merge_linear([parents[0], other_targets], [1, 1], "x")
    key = next(k for k in parents[1].tensors if k.endswith("lora_A.weight"))
    misshapen = replace(parents[1], tensors={**parents[1].tensors, key: torch.zeros(2, 16)})
    with pytest.raises(BrickworkError, match="different shapes"):
        merge_linear([parents[0], misshapen], [1, 1], "x")
    poisoned = replace(
        parents[1], tensors={**parents[1].tensors, key: parents[1].tensors[key] * float("inf")}
    )
    with pytest.raises(BrickworkError, match="NaN or inf"):
        merge_linear([parents[0], poisoned], [1, 1], "x")
    with pytest.raises(BrickworkError, match="produced NaN or inf"):
        merge_linear(parents, [1e300, 1e300, 1e300], "x")
    with pytest.raises(BrickworkError, match="density"):
        merge_ties(parents, [1, 1, 1], "x", density=0)
    with pytest.raises(BrickworkError, match="rank must be at least 1"):
        merge_linear(parents, [1, 1, 1], "x", rank=0)


def test_cli_combines_and_writes_nothing_on_error(tiny_llama, parents, tmp_path, capsys):
    repo = BrickRepository(tmp_path / "repo")
    for brick in parents:
        repo.add(brick)
    repo.add(replace(make_lora(tiny_llama, "v-only", 4, targets=["v_proj"])))
    code = main(
        [
            "combine",
            "linear",
            "--repo",
            str(repo.root),
            "--bricks",
            "alpha,beta",
            "--weights",
            "1,-0.5",
            "--name",
            "mix",
            "--rank",
            "3",
        ]
    )
    assert code == 0
    assert repo.get("mix").provenance["parents"][1]["name"] == "beta"
    before = sorted(p.name for p in repo.bricks_dir.iterdir())
    code = main(
        ["combine", "ties", "--repo", str(repo.root), "--bricks", "alpha,v-only", "--name", "bad"]
    )
    assert code == 2
    assert "different modules" in capsys.readouterr().err
    assert sorted(p.name for p in repo.bricks_dir.iterdir()) == before
