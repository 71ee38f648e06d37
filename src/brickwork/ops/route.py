"""Purpose embeddings for customized brick retrieval (paper §3.1.2, LoraRetriever style).

Each plugin brick can carry a *purpose embedding*: the mean, over its training prompts, of the base
model's hidden state for each prompt (one layer, pooled over the prompt's tokens or taken at its
last token). The prompt is embedded as raw text, without the chat template, so the template's
shared tokens do not dominate. The embedding is stored in the brick's weights.safetensors under
``brickwork.purpose_embedding`` (kept out of PEFT's adapter file) with its settings in
``spec["purpose_embedding"]``, so it survives save/load.

Beside the mean, each brick stores its prompts' states themselves
(``brickwork.purpose_states``, [n_prompts, hidden]) and the per-dimension mean of their squares
(``brickwork.purpose_embedding_sq``), so an index can compute statistics of all its bricks'
training prompts. A query (one instruction, or several averaged: task level) is embedded the
same way.

The bricks are retrieved through a ``RetrievalIndex`` (ops/retrieval.py) with a registered
scoring (ops/scorings.py).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from brickwork.bricks.brick import Brick
from brickwork.bricks.format import EXTRA_PREFIX
from brickwork.data.sample import Sample, dataset_hash
from brickwork.errors import BrickworkError
from brickwork.models.load import LoadedModel
from brickwork.models.states import POOLINGS, prompt_states

EMBEDDING_KEY = f"{EXTRA_PREFIX}purpose_embedding"
SECOND_MOMENT_KEY = f"{EXTRA_PREFIX}purpose_embedding_sq"  # mean over prompts of x², per dim
STATES_KEY = f"{EXTRA_PREFIX}purpose_states"  # [n_prompts, hidden] the prompts' states
MAX_EMBED_TOKENS = 128
DEFAULT_LAYER = -1  # hidden_states index: -1 is the final (normed) layer
DEFAULT_POOLING = "mean"


def prompt_features(
    loaded: LoadedModel,
    prompts: list[str],
    layers: list[int],
    poolings: tuple[str, ...] = POOLINGS,
    batch_size: int = 8,
) -> dict[tuple[int, str], torch.Tensor]:
    """Per-prompt base-model states [n, hidden] for each (layer index, pooling), as retrieval
    embeds prompts: the raw text (no chat template), at most ``MAX_EMBED_TOKENS`` tokens, ``mean``
    leaving out the first token (see ``brickwork.models.states``)."""
    _check_prompts(prompts)
    return prompt_states(
        loaded,
        prompts,
        layers,
        poolings,
        max_tokens=MAX_EMBED_TOKENS,
        skip_first=True,
        batch_size=batch_size,
    )


def embed_prompts(
    loaded: LoadedModel,
    prompts: list[str],
    layer: int = DEFAULT_LAYER,
    pooling: str = DEFAULT_POOLING,
    batch_size: int = 8,
) -> torch.Tensor:
    """One embedding [n, hidden] per prompt (see ``prompt_features``)."""
    return prompt_features(loaded, prompts, [layer], (pooling,), batch_size)[(layer, pooling)]


def with_embedding(
    loaded: LoadedModel,
    brick: Brick,
    prompts: list[str],
    description: str,
    *,
    layer: int = DEFAULT_LAYER,
    pooling: str = DEFAULT_POOLING,
    template: str | None = None,
) -> Brick:
    """A copy of ``brick`` carrying its purpose embedding (mean over ``prompts``) and description.

    Pass the prompts the brick was trained on, never the ones you will evaluate retrieval with.
    ``template`` (with ``{input}``), if given, is how a stitched pipeline should prompt the brick.
    """
    loaded.require_base(brick.base_model, f"brick {brick.name!r}")
    if not isinstance(description, str) or not description.strip():
        raise BrickworkError("a purpose embedding needs a non-empty description")
    if template is not None and "{input}" not in template:
        raise BrickworkError("a prompt template must contain '{input}'")
    states = embed_prompts(loaded, prompts, layer, pooling).double()
    vector, second_moment = states.mean(dim=0).float(), (states**2).mean(dim=0).float()
    samples = [Sample(str(i), p, "embedding") for i, p in enumerate(prompts)]
    settings = {
        "layer": layer,
        "pooling": pooling,
        "n_prompts": len(prompts),
        "prompts_hash": dataset_hash(samples),
        "text": "raw prompt, no chat template",
    }
    spec = {**brick.spec, "purpose_embedding": settings}
    if template is not None:
        spec["prompt_template"] = template
    tensors = {
        **brick.tensors,
        EMBEDDING_KEY: vector.contiguous(),
        SECOND_MOMENT_KEY: second_moment.contiguous(),
        STATES_KEY: states.float().contiguous(),
    }
    return replace(brick, tensors=tensors, spec=spec, description=description.strip())


def _check_prompts(prompts: list[str]) -> None:
    if not prompts:
        raise BrickworkError("no prompts to embed")
    if any(not isinstance(p, str) or not p.strip() for p in prompts):
        raise BrickworkError("prompts to embed must be non-empty strings")
