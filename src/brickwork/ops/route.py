"""Customized brick retrieval (paper §3.1.2, LoraRetriever style).

Each plugin brick can carry a *purpose embedding*: the mean, over its training prompts, of the base
model's hidden state for each prompt (one layer, pooled over the prompt's tokens or taken at its
last token). The prompt is embedded as raw text, without the chat template, so the template's
shared tokens do not dominate. The embedding is stored in the brick's weights.safetensors under
``brickwork.purpose_embedding`` (kept out of PEFT's adapter file) with its settings in
``spec["purpose_embedding"]``, so it survives save/load.

A query (one instruction, or several averaged: task level) is embedded the same way. Scores are
cosine similarities after subtracting the mean embedding of the bricks searched (centring removes
the direction every prompt shares). A ``RetrievalIndex`` holds the embeddings as one matrix, so a
query over hundreds of bricks is one matrix-vector product.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from safetensors import safe_open

from brickwork.bricks.brick import Brick
from brickwork.bricks.format import EXTRA_PREFIX, WEIGHTS_FILE
from brickwork.bricks.repository import BrickRepository
from brickwork.data.sample import Sample, dataset_hash
from brickwork.errors import BrickworkError
from brickwork.models.load import LoadedModel

EMBEDDING_KEY = f"{EXTRA_PREFIX}purpose_embedding"
POOLINGS = ("mean", "last")
MAX_EMBED_TOKENS = 128
DEFAULT_LAYER = -1  # hidden_states index: -1 is the final (normed) layer
DEFAULT_POOLING = "mean"


@dataclass(frozen=True)
class Match:
    name: str
    score: float
    description: str


def prompt_features(
    loaded: LoadedModel, prompts: list[str], layers: list[int],
    poolings: tuple[str, ...] = POOLINGS, batch_size: int = 8,
) -> dict[tuple[int, str], torch.Tensor]:  # fmt: skip
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
        handles.append(modules[0].register_forward_pre_hook(
            lambda m, args, kwargs: keep(0, args[0] if args else kwargs["hidden_states"]),
            with_kwargs=True))  # fmt: skip
    for index in {v for v in wanted.values() if 0 < v < n}:
        handles.append(modules[index - 1].register_forward_hook(
            lambda m, args, output, index=index: keep(index, output)))  # fmt: skip
    try:
        with torch.no_grad():
            output = loaded.model.base_model(input_ids=input_ids, attention_mask=mask,
                                             use_cache=False)  # fmt: skip
    finally:
        for handle in handles:
            handle.remove()
    captured[n] = output.last_hidden_state.detach()
    return {i: captured[v] for i, v in wanted.items()}


def embed_prompts(
    loaded: LoadedModel, prompts: list[str], layer: int = DEFAULT_LAYER,
    pooling: str = DEFAULT_POOLING, batch_size: int = 8,
) -> torch.Tensor:  # fmt: skip
    """One embedding [n, hidden] per prompt (see ``prompt_features``)."""
    return prompt_features(loaded, prompts, [layer], (pooling,), batch_size)[(layer, pooling)]


def with_embedding(
    loaded: LoadedModel, brick: Brick, prompts: list[str], description: str, *,
    layer: int = DEFAULT_LAYER, pooling: str = DEFAULT_POOLING, template: str | None = None,
) -> Brick:  # fmt: skip
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
    vector = embed_prompts(loaded, prompts, layer, pooling).mean(dim=0)
    samples = [Sample(str(i), p, "embedding") for i, p in enumerate(prompts)]
    settings = {"layer": layer, "pooling": pooling, "n_prompts": len(prompts),
                "prompts_hash": dataset_hash(samples),
                "text": "raw prompt, no chat template"}  # fmt: skip
    spec = {**brick.spec, "purpose_embedding": settings}
    if template is not None:
        spec["prompt_template"] = template
    tensors = {**brick.tensors, EMBEDDING_KEY: vector.contiguous()}
    return replace(brick, tensors=tensors, spec=spec, description=description.strip())


@dataclass(frozen=True)
class RetrievalIndex:
    """Purpose embeddings of many bricks as one centred, row-normalised matrix."""

    names: tuple[str, ...]
    descriptions: tuple[str, ...]
    matrix: torch.Tensor  # [N, hidden], centred and L2-normalised rows
    mean: torch.Tensor  # [hidden] the mean removed before normalising
    layer: int
    pooling: str
    base_model: str

    @classmethod
    def build(cls, entries: list[tuple[str, str, torch.Tensor]], layer: int, pooling: str,
              base_model: str) -> RetrievalIndex:  # fmt: skip
        """An index over (name, description, embedding) entries."""
        if not entries:
            raise BrickworkError("no bricks with a purpose embedding to retrieve from")
        vectors = torch.stack([e[2].double() for e in entries])
        if not torch.isfinite(vectors).all():
            raise BrickworkError("a purpose embedding holds NaN or inf")
        mean = vectors.mean(dim=0) if len(entries) > 1 else torch.zeros_like(vectors[0])
        matrix = _normalise(vectors - mean)
        return cls(tuple(e[0] for e in entries), tuple(e[1] for e in entries), matrix, mean,
                   layer, pooling, base_model)  # fmt: skip

    @classmethod
    def from_bricks(cls, bricks: list[Brick]) -> RetrievalIndex:
        """An index over in-memory bricks (those without an embedding are skipped)."""
        carrying = [b for b in bricks if EMBEDDING_KEY in b.tensors]
        settings = [(b.base_model, *_settings_of(b.spec)) for b in carrying]
        base, layer, pooling = _one_setting(settings)
        entries = [(b.name, b.description, b.tensors[EMBEDDING_KEY]) for b in carrying]
        return cls.build(entries, layer, pooling, base)

    @classmethod
    def from_repository(
        cls, repo: BrickRepository, base_model: str | None = None
    ) -> RetrievalIndex:
        """An index over a repository's bricks that carry an embedding (optionally one base)."""
        entries, settings = [], []
        for meta in repo.list():
            if "purpose_embedding" not in meta.get("spec", {}):
                continue
            if base_model is not None and meta["base_model"] != base_model:
                continue
            path = repo.bricks_dir / meta["name"] / WEIGHTS_FILE
            with safe_open(str(path), framework="pt") as f:
                vector = f.get_tensor(EMBEDDING_KEY)
            entries.append((meta["name"], meta.get("description", ""), vector))
            settings.append((meta["base_model"], *_settings_of(meta["spec"])))
        base, layer, pooling = _one_setting(settings)
        return cls.build(entries, layer, pooling, base)

    def query(self, vector: torch.Tensor, k: int = 3) -> list[Match]:
        """The ``k`` best bricks for a query embedding [hidden], best first."""
        if k < 1:
            raise BrickworkError(f"k must be at least 1, not {k}")
        if vector.shape != self.mean.shape:
            raise BrickworkError(f"query embedding has shape {tuple(vector.shape)}, "
                                 f"the index {tuple(self.mean.shape)}")  # fmt: skip
        scores = self.matrix @ _normalise((vector.double() - self.mean)[None])[0]
        top = torch.topk(scores, min(k, len(self.names)))
        pairs = zip(top.values.tolist(), top.indices.tolist(), strict=True)
        return [Match(self.names[i], float(s), self.descriptions[i]) for s, i in pairs]

    def embed(self, loaded: LoadedModel, instructions: str | list[str]) -> torch.Tensor:
        """The query embedding of one instruction, or the mean of several (task level)."""
        if loaded.fingerprint != self.base_model:
            raise BrickworkError(
                f"the bricks were embedded with base model {self.base_model}, "
                f"not this model ({loaded.fingerprint})"
            )
        texts = [instructions] if isinstance(instructions, str) else list(instructions)
        return embed_prompts(loaded, texts, self.layer, self.pooling).mean(dim=0)


def retrieve(
    loaded: LoadedModel, source: BrickRepository | list[Brick], instructions: str | list[str],
    k: int = 3,
) -> list[Match]:  # fmt: skip
    """The top-``k`` bricks for an instruction (or a task given as several), with scores."""
    if isinstance(source, BrickRepository):
        index = RetrievalIndex.from_repository(source, loaded.fingerprint)
    else:
        index = RetrievalIndex.from_bricks(source)
    return index.query(index.embed(loaded, instructions), k)


def _normalise(rows: torch.Tensor) -> torch.Tensor:
    return rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _settings_of(spec: dict) -> tuple[int, str]:
    settings = spec["purpose_embedding"]
    return int(settings["layer"]), str(settings["pooling"])


def _one_setting(settings: list[tuple[str, int, str]]) -> tuple[str, int, str]:
    if not settings:
        raise BrickworkError("no bricks with a purpose embedding to retrieve from")
    distinct = sorted(set(settings))
    if len(distinct) > 1:
        raise BrickworkError(
            f"the bricks were embedded with different base models or settings {distinct}; "
            "retrieve from one kind at a time"
        )
    return distinct[0]


def _check_prompts(prompts: list[str]) -> None:
    if not prompts:
        raise BrickworkError("no prompts to embed")
    if any(not isinstance(p, str) or not p.strip() for p in prompts):
        raise BrickworkError("prompts to embed must be non-empty strings")
