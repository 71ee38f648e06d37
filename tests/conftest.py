"""Session fixtures: tiny random models of every family, saved locally; a small labelled dataset."""

from __future__ import annotations

import pytest

from brickwork.data import Sample
from brickwork.models import load_model
from tests.tiny import TINY_CONFIGS, build_tiny_model, tiny_tokenizer


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict[str, str]:
    """A saved tiny model directory (weights + tokenizer) for every supported family."""
    root = tmp_path_factory.mktemp("tiny_models")
    dirs = {}
    for family in TINY_CONFIGS:
        path = root / family
        build_tiny_model(family).save_pretrained(path)
        tiny_tokenizer().save_pretrained(path)
        dirs[family] = str(path)
    return dirs


@pytest.fixture(scope="session")
def tiny_llama(tiny_model_dirs):
    return load_model(tiny_model_dirs["llama"])


@pytest.fixture(scope="session")
def tiny_samples() -> list[Sample]:
    """Prompts of varied length over three functionalities, with a fixed split."""
    texts = {
        "coding": ["def f(x): return x", "print(1)", "for i in range(3): pass", "x = [1, 2]"],
        "math": ["2 + 2 = 4", "what is 7 times 8?", "solve x + 1 = 3", "17 is prime"],
        "writing": ["Once upon a time", "Dear hiring manager,", "A poem about rain", "Hi"],
    }
    return [
        Sample(
            f"{f}-{i}",
            text,
            f,
            reference=f"answer {i} for {f}",
            split="test" if i == 3 else "train",
        )
        for f, prompts in texts.items()
        for i, text in enumerate(prompts)
    ]
