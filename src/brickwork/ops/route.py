"""Customized brick retrieval (paper §3.1.2, LoraRetriever style).

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

LM hidden states are anisotropic: a few dimensions have values tens of times larger than the rest
and dominate a plain cosine similarity. Three scorings (``scoring=``):

- ``"lda"`` (the default, chosen on validation instructions: docs/results/combine.md): linear
  discriminant analysis with the bricks as classes. The within-brick covariance of the training
  prompts' states, pooled over the bricks searched, is estimated with Ledoit-Wolf shrinkage
  (scikit-learn, on per-dimension standardised residuals), and a query x scores brick i by
  x·Σ⁻¹μᵢ - ½μᵢ·Σ⁻¹μᵢ; the reported score is the posterior probability (softmax over the bricks,
  equal priors). Needs every brick's prompt states and at least two bricks.
- ``"standardise"``: cosine similarity after standardising every dimension by the mean and
  standard deviation of all the bricks' training-prompt states (from the stored second moments).
- ``"centre"``: cosine similarity after subtracting the mean of the bricks' embeddings.

An index falls back from ``lda`` to ``standardise`` to ``centre`` when bricks lack the statistics
(bricks embedded by older versions); ``index.scoring`` says which it uses. A ``RetrievalIndex``
holds one matrix, so a query over hundreds of bricks is one matrix-vector product; it can be saved
to and loaded from one safetensors file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from brickwork.bricks.brick import Brick
from brickwork.bricks.format import EXTRA_PREFIX, WEIGHTS_FILE
from brickwork.bricks.repository import BrickRepository
from brickwork.data.sample import Sample, dataset_hash
from brickwork.errors import BrickworkError
from brickwork.io import replace_atomically
from brickwork.models.load import LoadedModel
from brickwork.models.states import POOLINGS, prompt_states

EMBEDDING_KEY = f"{EXTRA_PREFIX}purpose_embedding"
SECOND_MOMENT_KEY = f"{EXTRA_PREFIX}purpose_embedding_sq"  # mean over prompts of x², per dim
STATES_KEY = f"{EXTRA_PREFIX}purpose_states"  # [n_prompts, hidden] the prompts' states
SCORINGS = ("lda", "standardise", "centre")
DEFAULT_SCORING = "lda"
INDEX_FORMAT = "brickwork-retrieval-index"
MAX_EMBED_TOKENS = 128
DEFAULT_LAYER = -1  # hidden_states index: -1 is the final (normed) layer
DEFAULT_POOLING = "mean"


@dataclass(frozen=True)
class Match:
    name: str
    score: float
    description: str


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


@dataclass(frozen=True)
class Purpose:
    """One brick's purpose statistics: the mean of its prompts' states and, when stored, the
    per-dimension mean of their squares and the states themselves, over ``n_prompts`` prompts."""

    name: str
    description: str
    mean: torch.Tensor  # [hidden]
    second_moment: torch.Tensor | None = None  # [hidden]
    n_prompts: int = 1
    states: torch.Tensor | None = None  # [n_prompts, hidden]


@dataclass(frozen=True)
class RetrievalIndex:
    """Purpose embeddings of many bricks as one matrix; a query is one matrix-vector product.

    ``lda``: scores are matrix @ x + bias (the discriminants), reported as posterior
    probabilities. ``standardise`` / ``centre``: x is mapped to (x - shift) / scale and
    L2-normalised, and the scores are its cosine similarities with the rows of ``matrix``.
    """

    names: tuple[str, ...]
    descriptions: tuple[str, ...]
    matrix: torch.Tensor  # [N, hidden]
    shift: torch.Tensor  # [hidden] subtracted before scaling (zeros for lda)
    scale: torch.Tensor  # [hidden] divided by after shifting (ones for lda and centre)
    layer: int
    pooling: str
    base_model: str
    scoring: str = DEFAULT_SCORING
    bias: torch.Tensor | None = None  # [N] lda's intercepts

    @property
    def mean(self) -> torch.Tensor:
        """The vector subtracted before scaling (kept for callers of the centring-only index)."""
        return self.shift

    @classmethod
    def build(
        cls,
        entries: list[Purpose | tuple[str, str, torch.Tensor]],
        layer: int,
        pooling: str,
        base_model: str,
        scoring: str = DEFAULT_SCORING,
    ) -> RetrievalIndex:
        """An index over ``Purpose`` entries (or (name, description, mean) tuples, which carry
        no statistics). ``lda`` needs every entry's states (and two bricks), ``standardise``
        every entry's second moment; without them the index falls back to the next scoring
        (``index.scoring`` says which)."""
        if scoring not in SCORINGS:
            raise BrickworkError(f"scoring must be one of {SCORINGS}, not {scoring!r}")
        if not entries:
            raise BrickworkError("no bricks with a purpose embedding to retrieve from")
        purposes = [e if isinstance(e, Purpose) else Purpose(*e) for e in entries]
        means = torch.stack([p.mean.double() for p in purposes])
        if not torch.isfinite(means).all():
            raise BrickworkError("a purpose embedding holds NaN or inf")
        if any(p.n_prompts < 1 for p in purposes):
            raise BrickworkError("a purpose embedding needs at least one prompt")
        names = tuple(p.name for p in purposes)
        descriptions = tuple(p.description for p in purposes)
        if scoring == "lda":
            fitted = _lda(purposes, means)
            if fitted is not None:
                coef, bias = fitted
                zeros, ones = torch.zeros_like(means[0]), torch.ones_like(means[0])
                return cls(
                    names, descriptions, coef, zeros, ones, layer, pooling, base_model, "lda", bias
                )
            scoring = "standardise"
        if scoring == "standardise" and any(p.second_moment is None for p in purposes):
            scoring = "centre"
        if scoring == "standardise":
            shift, scale = _standardisation(purposes, means)
        else:
            shift = means.mean(dim=0) if len(purposes) > 1 else torch.zeros_like(means[0])
            scale = torch.ones_like(shift)
        matrix = _normalise((means - shift) / scale)
        return cls(names, descriptions, matrix, shift, scale, layer, pooling, base_model, scoring)

    @classmethod
    def from_bricks(cls, bricks: list[Brick], scoring: str = DEFAULT_SCORING) -> RetrievalIndex:
        """An index over in-memory bricks (those without an embedding are skipped)."""
        carrying = [b for b in bricks if EMBEDDING_KEY in b.tensors]
        settings = [(b.base_model, *_settings_of(b.spec)) for b in carrying]
        base, layer, pooling = _one_setting(settings)
        entries = [
            Purpose(
                b.name,
                b.description,
                b.tensors[EMBEDDING_KEY],
                b.tensors.get(SECOND_MOMENT_KEY),
                _n_prompts(b.spec),
                b.tensors.get(STATES_KEY),
            )
            for b in carrying
        ]
        return cls.build(entries, layer, pooling, base, scoring)

    @classmethod
    def from_repository(
        cls,
        repo: BrickRepository,
        base_model: str | None = None,
        scoring: str = DEFAULT_SCORING,
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
                stored = set(f.keys())
                second = f.get_tensor(SECOND_MOMENT_KEY) if SECOND_MOMENT_KEY in stored else None
                states = f.get_tensor(STATES_KEY) if STATES_KEY in stored else None
            entries.append(
                Purpose(
                    meta["name"],
                    meta.get("description", ""),
                    vector,
                    second,
                    _n_prompts(meta["spec"]),
                    states,
                )
            )
            settings.append((meta["base_model"], *_settings_of(meta["spec"])))
        base, layer, pooling = _one_setting(settings)
        return cls.build(entries, layer, pooling, base, scoring)

    def save(self, path: str | Path) -> Path:
        """Write the index to one safetensors file (tensors, and the rest as JSON metadata)."""
        path = Path(path)
        meta = {
            "format": INDEX_FORMAT,
            "names": list(self.names),
            "descriptions": list(self.descriptions),
            "layer": self.layer,
            "pooling": self.pooling,
            "base_model": self.base_model,
            "scoring": self.scoring,
        }
        tensors = {"matrix": self.matrix, "shift": self.shift, "scale": self.scale}
        if self.bias is not None:
            tensors["bias"] = self.bias
        tensors = {k: v.contiguous() for k, v in tensors.items()}
        return replace_atomically(
            path, lambda tmp: save_file(tensors, str(tmp), metadata={"index": json.dumps(meta)})
        )

    @classmethod
    def load(cls, path: str | Path) -> RetrievalIndex:
        """An index written by ``save``."""
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("index", "{}"))
        if meta.get("format") != INDEX_FORMAT:
            raise BrickworkError(f"{path} is not a brickwork retrieval index")
        tensors = load_file(str(path))
        return cls(
            tuple(meta["names"]),
            tuple(meta["descriptions"]),
            tensors["matrix"],
            tensors["shift"],
            tensors["scale"],
            int(meta["layer"]),
            meta["pooling"],
            meta["base_model"],
            meta["scoring"],
            tensors.get("bias"),
        )

    def query(self, vector: torch.Tensor, k: int = 3) -> list[Match]:
        """The ``k`` best bricks for a query embedding [hidden], best first."""
        if k < 1:
            raise BrickworkError(f"k must be at least 1, not {k}")
        if vector.shape != self.shift.shape:
            raise BrickworkError(
                f"query embedding has shape {tuple(vector.shape)}, "
                f"the index {tuple(self.shift.shape)}"
            )
        if not torch.isfinite(vector).all():
            raise BrickworkError("the query embedding holds NaN or inf")
        if self.scoring == "lda":
            discriminants = self.matrix @ vector.to(self.matrix.dtype) + self.bias
            indices = torch.topk(discriminants, min(k, len(self.names))).indices
            values = torch.softmax(discriminants, dim=0)[indices]  # posterior, equal priors
        else:
            query = (vector.to(self.shift.dtype) - self.shift) / self.scale
            scores = self.matrix @ _normalise(query[None])[0]
            values, indices = torch.topk(scores, min(k, len(self.names)))
        pairs = zip(values.tolist(), indices.tolist(), strict=True)
        return [Match(self.names[i], float(s), self.descriptions[i]) for s, i in pairs]

    def embed(self, loaded: LoadedModel, instructions: str | list[str]) -> torch.Tensor:
        """The query embedding of one instruction, or the mean of several (task level)."""
        loaded.require_base(self.base_model, "the retrieval index's embeddings")
        texts = [instructions] if isinstance(instructions, str) else list(instructions)
        return embed_prompts(loaded, texts, self.layer, self.pooling).mean(dim=0)


def retrieve(
    loaded: LoadedModel,
    source: BrickRepository | list[Brick] | RetrievalIndex,
    instructions: str | list[str],
    k: int = 3,
    scoring: str = DEFAULT_SCORING,
) -> list[Match]:
    """The top-``k`` bricks for an instruction (or a task given as several), with scores."""
    if isinstance(source, RetrievalIndex):
        index = source
    elif isinstance(source, BrickRepository):
        index = RetrievalIndex.from_repository(source, loaded.fingerprint, scoring)
    else:
        index = RetrievalIndex.from_bricks(source, scoring)
    return index.query(index.embed(loaded, instructions), k)


def _lda(purposes: list[Purpose], means: torch.Tensor):
    """(coefficients [N, hidden], intercepts [N]) of linear discriminant analysis with equal
    priors, the bricks as classes; None when it cannot be fitted (a brick without states, a
    single brick, or no within-brick variation)."""
    from sklearn.covariance import ledoit_wolf

    if len(purposes) < 2 or any(p.states is None for p in purposes):
        return None
    states = [p.states.double() for p in purposes]
    if any(s.ndim != 2 or s.shape[1] != means.shape[1] or len(s) < 1 for s in states):
        raise BrickworkError("a brick's stored prompt states do not match its embedding")
    if not all(torch.isfinite(s).all() for s in states):
        raise BrickworkError("a brick's stored prompt states hold NaN or inf")
    residuals = torch.cat([s - m for s, m in zip(states, means, strict=True)])
    spread = residuals.pow(2).mean(dim=0).sqrt()
    if len(residuals) <= len(purposes) or float(spread.max()) == 0.0:
        return None
    spread = spread.clamp_min(1e-6 * float(spread.mean()))
    shrunk, _ = ledoit_wolf((residuals / spread).numpy(), assume_centered=True)
    covariance = spread[:, None] * torch.from_numpy(shrunk) * spread[None]
    coef = torch.linalg.solve(covariance, means.T).T
    bias = -0.5 * (means * coef).sum(dim=1)
    if not (torch.isfinite(coef).all() and torch.isfinite(bias).all()):
        return None
    return coef, bias


def _standardisation(
    purposes: list[Purpose], means: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation per dimension of all the bricks' prompt states, pooled
    (weighted by each brick's number of prompts) from the bricks' means and second moments.
    With a single brick nothing is subtracted (its own mean would map it to zero)."""
    counts = torch.tensor([float(p.n_prompts) for p in purposes], dtype=torch.float64)
    seconds = torch.stack([p.second_moment.double() for p in purposes])
    if not torch.isfinite(seconds).all():
        raise BrickworkError("a purpose embedding's second moment holds NaN or inf")
    weights = (counts / counts.sum())[:, None]
    mean = (weights * means).sum(dim=0)
    variance = ((weights * seconds).sum(dim=0) - mean**2).clamp_min(0.0)
    floor = 1e-6 * float(variance.mean()) if float(variance.mean()) > 0 else 1e-12
    scale = variance.clamp_min(floor).sqrt()
    shift = mean if len(purposes) > 1 else torch.zeros_like(mean)
    return shift, scale


def _normalise(rows: torch.Tensor) -> torch.Tensor:
    return rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _n_prompts(spec: dict) -> int:
    return int(spec["purpose_embedding"].get("n_prompts", 1))


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
