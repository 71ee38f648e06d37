"""Bricks on the tiny llama: a neuron set, a non-identity LoRA plugin and a steering vector."""

import pytest
import torch
from peft import LoraConfig, get_peft_model

from brickwork.bricks.brick import neuron_set_brick
from brickwork.bricks.plugins import lora_brick_from_peft, steering_brick
from tests.tiny import build_tiny_model


@pytest.fixture
def neuron_brick(tiny_llama):
    mask = torch.zeros(2, 64, dtype=torch.bool)
    mask[:, :8] = True
    return neuron_set_brick(
        "coding-neurons",
        "coding",
        tiny_llama.fingerprint,
        mask,
        rule="top 12.5% FuncScore per layer (test)",
    )


@pytest.fixture
def lora_brick(tiny_llama):
    model = build_tiny_model("llama")  # same weights as tiny_llama (same seed)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    peft_model = get_peft_model(model, config)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)  # a trained-looking, non-identity adapter
    return lora_brick_from_peft(
        peft_model, "toy-task", "toy task", tiny_llama.fingerprint, provenance={"method": "test"}
    )


@pytest.fixture
def steer_brick(tiny_llama):
    vectors = torch.randn(1, 32, generator=torch.Generator().manual_seed(0))
    return steering_brick("polite", "politeness", tiny_llama.fingerprint, vectors, layers=[1])


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and lose a lot to contention on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
