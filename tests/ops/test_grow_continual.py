"""Continual plugins: each task adds a brick and a centroid; routing sends inputs to their brick;
old tasks' bricks and centroids are untouched by later additions."""

from __future__ import annotations

import pytest
import torch

from brickwork.bricks.train import LoraSettings
from brickwork.data import Sample
from brickwork.errors import BrickworkError
from brickwork.ops.grow.continual import (
    PluginSystem,
    add_task,
    load_plugins,
    prompt_embeddings,
    route,
    routed_answers,
    save_plugins,
)

TASKS = {  # prompts that differ in form, so their embeddings separate
    "shout": ("HELLO {i} WORLD!!! LOUD", "AAA"),
    "digits": ("0123 {i} 4567 89", "123"),
}


def _samples(task: str, start: int, n: int) -> list[Sample]:
    prompt, reference = TASKS[task]
    return [
        Sample(f"{task}{i}", prompt.format(i=i), task, reference=reference)
        for i in range(start, start + n)
    ]


@pytest.fixture(scope="module")
def two_tasks(tiny_llama):
    system = PluginSystem(tiny_llama.fingerprint)
    options = dict(
        settings=LoraSettings(rank=2, steps=4, batch_size=4, eval_every=2), progress=False
    )
    first = add_task(
        system, tiny_llama, "shout", _samples("shout", 0, 8), _samples("shout", 50, 4), **options
    )
    second = add_task(
        first, tiny_llama, "digits", _samples("digits", 0, 8), _samples("digits", 50, 4), **options
    )
    return system, first, second


def test_tasks_are_added_without_touching_old_ones(two_tasks):
    empty, first, second = two_tasks
    assert empty.names() == [] and first.names() == ["shout"]
    assert second.names() == ["shout", "digits"]
    assert second.tasks[0] is first.tasks[0]  # the old brick and centroid are kept as they were


def test_routing_sends_held_out_prompts_to_their_task(tiny_llama, two_tasks):
    _, _, system = two_tasks
    prompts = [s.prompt for s in _samples("shout", 90, 3) + _samples("digits", 90, 3)]
    assert route(system, prompt_embeddings(tiny_llama, prompts)) == [0, 0, 0, 1, 1, 1]
    answers, routes = routed_answers(system, tiny_llama, prompts, max_new_tokens=3)
    assert routes == ["shout"] * 3 + ["digits"] * 3 and len(answers) == 6


def test_embeddings_ignore_padding(tiny_llama):
    alone = prompt_embeddings(tiny_llama, ["hi"])
    padded = prompt_embeddings(tiny_llama, ["hi", "a much longer prompt than hi"])[:1]
    torch.testing.assert_close(alone, padded, rtol=1e-4, atol=1e-5)


def test_save_load_and_bad_input(tmp_path, tiny_llama, two_tasks):
    _, _, system = two_tasks
    again = load_plugins(save_plugins(system, tmp_path / "plugins"))
    assert again.names() == system.names()
    assert torch.equal(again.tasks[1].centroid, system.tasks[1].centroid)
    with pytest.raises(BrickworkError, match="already in the plugin system"):
        add_task(system, tiny_llama, "shout", _samples("shout", 0, 2), _samples("shout", 9, 1))
    with pytest.raises(BrickworkError, match="no tasks"):
        route(PluginSystem(tiny_llama.fingerprint), torch.zeros(1, 32))
    with pytest.raises(BrickworkError, match="plugin system was made for base model"):
        add_task(
            PluginSystem("sha256:other"),
            tiny_llama,
            "x",
            _samples("shout", 0, 2),
            _samples("shout", 9, 1),
        )
