"""Instruction router and the configured pipeline with its trace, on the tiny llama."""

import pytest
import torch

from brickwork.configure.pipeline import configured_generate
from brickwork.configure.router import load_router, route, save_router, train_router
from brickwork.errors import BrickworkError
from brickwork.models import load_model
from tests.configure.conftest import tiny_stats


@pytest.fixture(scope="module")
def router(tiny_llama, tiny_samples):
    return train_router(tiny_llama, [s for s in tiny_samples if s.split == "train"])


@pytest.fixture
def stats(tiny_llama):
    return tiny_stats(tiny_llama, with_set=0)


def test_router_fits_train_and_round_trips(router, tiny_llama, tiny_samples, tmp_path):
    train = [s for s in tiny_samples if s.split == "train"]
    probs = route(router, tiny_llama, [s.prompt for s in train])
    assert probs.shape == (len(train), 3)
    torch.testing.assert_close(probs.sum(dim=-1), torch.ones(len(train)))
    save_router(router, tmp_path / "r.safetensors")
    again = load_router(tmp_path / "r.safetensors")
    torch.testing.assert_close(
        route(again, tiny_llama, ["print(1)"]), route(router, tiny_llama, ["print(1)"])
    )


def test_router_for_another_model_refused(router, tiny_model_dirs):
    other = load_model(tiny_model_dirs["qwen2"])
    with pytest.raises(BrickworkError, match="router was made for base model"):
        route(router, other, ["hello"])


@pytest.mark.parametrize("selection", ["prompt", "static"])
def test_configured_generate_traces_the_selection(tiny_llama, router, stats, selection):
    answer, trace = configured_generate(
        tiny_llama,
        "print(1)",
        configure="auto",
        budget=0.25,
        selection=selection,
        router=router,
        stats=stats,
        max_new_tokens=4,
    )
    assert isinstance(answer, str)
    assert trace.functionality in ("coding", "math", "writing")
    assert trace.neurons_per_layer == [16, 16] and trace.d_ff == 64
    assert abs(sum(trace.probabilities.values()) - 1) < 1e-5
    assert trace.compact_model and trace.compact_model != tiny_llama.fingerprint
    assert any("neurons per layer: 16 16" in line for line in trace.lines())


def test_configure_none_is_dense_and_full_budget_matches_dense(tiny_llama, stats):
    dense, trace = configured_generate(tiny_llama, "Hi", configure="none", max_new_tokens=6)
    assert trace.neurons_per_layer == [] and trace.selection == "none"
    full, trace = configured_generate(
        tiny_llama, "Hi", configure="math", budget=1.0, stats=stats, max_new_tokens=6
    )
    assert full == dense and trace.neurons_per_layer == [64, 64]


def test_configured_generate_with_a_lora_plugin(tiny_llama, stats, lora_brick):
    plain, _ = configured_generate(
        tiny_llama, "Hi", configure="math", budget=1.0, stats=stats, max_new_tokens=6
    )
    adapted, trace = configured_generate(
        tiny_llama,
        "Hi",
        configure="math",
        budget=1.0,
        stats=stats,
        plugins=[lora_brick],
        max_new_tokens=6,
    )
    assert trace.plugins == ["toy-task"]
    assert adapted != plain  # the non-identity adapter changes the greedy answer


def test_bad_inputs_refused(tiny_llama, tiny_model_dirs, stats):
    with pytest.raises(BrickworkError, match="budget"):
        configured_generate(tiny_llama, "Hi", configure="math", budget=0, stats=stats)
    with pytest.raises(BrickworkError, match="needs a router"):
        configured_generate(tiny_llama, "Hi", configure="auto", stats=stats)
    with pytest.raises(BrickworkError, match="unknown functionality"):
        configured_generate(tiny_llama, "Hi", configure="poetry", stats=stats)
    other = load_model(tiny_model_dirs["mistral"])
    with pytest.raises(BrickworkError, match="made for base model"):
        configured_generate(other, "Hi", configure="math", stats=stats)
