"""Continual plugins: grow one task brick per new task, and route each input to its brick.

The base model never changes, so a task learnt earlier keeps its brick untouched; what can hurt
an old task is only a wrong route. The router is a nearest-centroid classifier over the base
model's prompt embedding (the mean final hidden state over the prompt's tokens, L2-normalised):
each task's centroid is the mean embedding of its training prompts. Adding a task adds a brick
and a centroid and leaves the others as they were.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from brickwork.bricks.attach import attach
from brickwork.bricks.brick import Brick, check_name
from brickwork.bricks.format import load_brick, save_brick
from brickwork.bricks.train import LoraSettings, train_task_brick
from brickwork.bricks.train_eval import generate_answers
from brickwork.data.sample import Sample
from brickwork.errors import BrickworkError
from brickwork.io import read_marker_json, replace_atomically, write_text_atomically
from brickwork.models.load import LoadedModel
from brickwork.models.states import prompt_states

ROUTER_FILE = "router.json"
CENTROIDS_FILE = "centroids.safetensors"


@dataclass
class PluginTask:
    name: str
    brick: Brick
    centroid: torch.Tensor  # [d_model], unit length


@dataclass
class PluginSystem:
    """The task bricks grown so far on one base model, with their routing centroids."""

    base_model: str  # fingerprint of the frozen base model
    tasks: list[PluginTask] = field(default_factory=list)

    def names(self) -> list[str]:
        return [t.name for t in self.tasks]


def prompt_embeddings(loaded: LoadedModel, prompts: list[str], batch_size: int = 8) -> torch.Tensor:
    """[n, d_model]: each prompt's mean final hidden state over its (chat-formatted) tokens."""
    if not prompts:
        raise BrickworkError("no prompts to embed")
    states = prompt_states(loaded, prompts, [-1], chat=True, batch_size=batch_size)
    return torch.nn.functional.normalize(states[(-1, "mean")], dim=-1)


def add_task(
    system: PluginSystem,
    loaded: LoadedModel,
    name: str,
    train: list[Sample],
    heldout: list[Sample],
    *,
    purpose: str | None = None,
    settings: LoraSettings | None = None,
    progress: bool = True,
) -> PluginSystem:
    """A new system with one more task: a task brick trained on ``train`` (early-stopped on
    ``heldout``) and the centroid of the training prompts. The old tasks are kept as they are."""
    check_name(name)
    loaded.require_base(system.base_model, "this plugin system")
    if name in system.names():
        raise BrickworkError(f"task {name!r} is already in the plugin system")
    brick = train_task_brick(
        loaded,
        train,
        heldout,
        name,
        purpose or name,
        settings=settings or LoraSettings(),
        progress=progress,
    )
    centroid = prompt_embeddings(loaded, [s.prompt for s in train]).mean(dim=0)
    task = PluginTask(name, brick, torch.nn.functional.normalize(centroid, dim=0))
    return replace(system, tasks=[*system.tasks, task])


def route(system: PluginSystem, embeddings: torch.Tensor) -> list[int]:
    """The task index whose centroid is nearest (cosine) to each embedding."""
    if not system.tasks:
        raise BrickworkError("the plugin system has no tasks to route to")
    centroids = torch.stack([t.centroid for t in system.tasks])
    return (embeddings @ centroids.t()).argmax(dim=1).tolist()


def routed_answers(
    system: PluginSystem,
    loaded: LoadedModel,
    prompts: list[str],
    max_new_tokens: int = 32,
    batch_size: int = 8,
) -> tuple[list[str], list[str]]:
    """Greedy answers, each from the base model with the routed task's brick attached, and the
    task each prompt was routed to."""
    routes = route(system, prompt_embeddings(loaded, prompts, batch_size))
    answers: list[str] = [""] * len(prompts)
    for index, task in enumerate(system.tasks):
        chosen = [i for i, r in enumerate(routes) if r == index]
        if not chosen:
            continue
        with attach(loaded, [task.brick]) as model:
            outputs = generate_answers(
                model, loaded.tokenizer, [prompts[i] for i in chosen], max_new_tokens, batch_size
            )
        for i, output in zip(chosen, outputs, strict=True):
            answers[i] = output
    return answers, [system.tasks[r].name for r in routes]


def save_plugins(system: PluginSystem, folder: str | Path) -> Path:
    """Write the bricks (``bricks/<task>``), the centroids and router.json into ``folder``."""
    folder = Path(folder)
    (folder / "bricks").mkdir(parents=True, exist_ok=True)
    for task in system.tasks:
        save_brick(task.brick, folder / "bricks" / task.name)
    centroids = {t.name: t.centroid.contiguous() for t in system.tasks}
    replace_atomically(folder / CENTROIDS_FILE, lambda p: save_file(centroids, str(p)))
    meta = {
        "base_model": system.base_model,
        "tasks": system.names(),
        "router": "nearest centroid of the mean final hidden state over the prompt",
    }
    write_text_atomically(folder / ROUTER_FILE, json.dumps(meta, indent=1))
    return folder


def load_plugins(folder: str | Path) -> PluginSystem:
    folder = Path(folder)
    meta = read_marker_json(folder, ROUTER_FILE, "plugin system")
    centroids = load_file(str(folder / CENTROIDS_FILE))
    tasks = [PluginTask(n, load_brick(folder / "bricks" / n), centroids[n]) for n in meta["tasks"]]
    return PluginSystem(meta["base_model"], tasks)
