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

EMBEDDING_KEY = f"{EXTRA_PREFIX}purpose_embedding"
SECOND_MOMENT_KEY = f"{EXTRA_PREFIX}purpose_embedding_sq"  # mean over prompts of x², per dim
STATES_KEY = f"{EXTRA_PREFIX}purpose_states"  # [n_prompts, hidden] the prompts' states
POOLINGS = ("mean", "last")
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
    """Per-prompt base-model states [n, hidden] for each (layer index, pooling).

    Layer indices follow ``output_hidden_states``: 0 is the input of the first decoder layer, i
    the output of decoder layer i-1, and L (or -1) the final state after the last norm. They are
    read with forward hooks that are removed afterwards (asking transformers for
    ``output_hidden_states`` would leave hooks installed on the model). ``mean`` averages the
    prompt's tokens except the first (whose state is an outlier, the attention sink); ``last`` is
    the state at the prompt's last token. At most ``MAX_EMBED_TOKENS`` tokens are read.
    """
    _check_prompts(prompts)
    bad = [p for p in poolings if p not in POOLINGS]
    if bad:
        raise BrickworkError(f"pooling must be one of {POOLINGS}, not {bad[0]!r}")
    tokenizer, device = loaded.tokenizer, next(loaded.model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: dict[tuple[int, str], list[torch.Tensor]] = {(i, p): [] for i in layers for p in poolings}
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        ids = [tokenizer(p)["input_ids"][:MAX_EMBED_TOKENS] for p in chunk]
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for row, x in enumerate(ids):
            input_ids[row, : len(x)], mask[row, : len(x)] = torch.tensor(x), 1
        states = _layer_states(loaded, input_ids.to(device), mask.to(device), layers)
        lengths = mask.sum(dim=1)
        pooled_mask = mask.clone()
        pooled_mask[lengths > 1, 0] = 0  # drop the first token unless it is the only one
        weights = (pooled_mask / pooled_mask.sum(dim=1, keepdim=True)).double()
        for layer in layers:
            hidden = states[layer].double().cpu()
            if "mean" in poolings:
                out[(layer, "mean")].append(torch.einsum("bt,bth->bh", weights, hidden))
            if "last" in poolings:
                out[(layer, "last")].append(hidden[torch.arange(len(ids)), lengths - 1])
    return {key: torch.cat(parts).float() for key, parts in out.items()}


def _layer_states(
    loaded: LoadedModel, input_ids: torch.Tensor, mask: torch.Tensor, layers: list[int]
) -> dict[int, torch.Tensor]:
    """{layer index: [B, T, hidden]} from one forward pass, through temporary hooks."""
    modules = loaded.family.layer_modules(loaded.model)
    n = len(modules)
    bad = [i for i in layers if not -n - 1 <= i <= n]
    if bad:
        raise BrickworkError(f"layer index {bad[0]} is out of range for {n} layers (0..{n}, -1)")
    wanted = {i: i % (n + 1) for i in layers}
    captured: dict[int, torch.Tensor] = {}

    def keep(index: int, value) -> None:
        captured[index] = (value[0] if isinstance(value, tuple) else value).detach()

    handles = []
    if 0 in wanted.values():
        handles.append(
            modules[0].register_forward_pre_hook(
                lambda m, args, kwargs: keep(0, args[0] if args else kwargs["hidden_states"]),
                with_kwargs=True,
            )
        )
    for index in {v for v in wanted.values() if 0 < v < n}:
        handles.append(
            modules[index - 1].register_forward_hook(
                lambda m, args, output, index=index: keep(index, output)
            )
        )
    try:
        with torch.no_grad():
            output = loaded.model.base_model(
                input_ids=input_ids, attention_mask=mask, use_cache=False
            )
    finally:
        for handle in handles:
            handle.remove()
    captured[n] = output.last_hidden_state.detach()
    return {i: captured[v] for i, v in wanted.items()}


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
    if brick.base_model != loaded.fingerprint:
        raise BrickworkError(
            f"brick {brick.name!r} was built for base model {brick.base_model}, "
            f"not this model ({loaded.fingerprint})"
        )
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
