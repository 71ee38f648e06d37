"""Customized brick retrieval (paper §3.1.2, LoraRetriever style): an index over the purpose
embeddings that ``ops/route.py`` gives bricks, queried with an instruction embedded the same way.

A ``RetrievalIndex`` holds one matrix, so a query over hundreds of bricks is one matrix-vector
product; how it scores is a registered scoring (ops/scorings.py), falling back from ``lda`` to
``standardise`` to ``centre`` when bricks lack the statistics (``index.scoring`` says which it
uses). Each match also carries a calibrated ``fit`` (ops/typicality.py): how typical the query is of
the brick's own training prompts, so a query far from every brick says so. It can be saved to and
loaded from one safetensors file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from brickwork.bricks.brick import Brick
from brickwork.bricks.format import WEIGHTS_FILE
from brickwork.bricks.repository import BrickRepository
from brickwork.errors import BrickworkError
from brickwork.io import replace_atomically
from brickwork.models.load import LoadedModel
from brickwork.ops.route import EMBEDDING_KEY, SECOND_MOMENT_KEY, STATES_KEY, embed_prompts
from brickwork.ops.scorings import DEFAULT_SCORING, SCORINGS, Fitted, Purpose, fit_scoring
from brickwork.ops.typicality import Typicality, typicality

INDEX_FORMAT = "brickwork-retrieval-index"


@dataclass(frozen=True)
class Match:
    name: str
    score: float
    description: str
    fit: float | None = None  # share of the brick's training prompts as far from it as the query


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
    typical: Typicality | None = None  # None when the bricks lack their prompt states

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
        scoring = SCORINGS[scoring].name  # an unknown name is refused first
        if not entries:
            raise BrickworkError(NO_EMBEDDINGS)
        purposes = [e if isinstance(e, Purpose) else Purpose(*e) for e in entries]
        means = torch.stack([p.mean.double() for p in purposes])
        if not torch.isfinite(means).all():
            raise BrickworkError("a purpose embedding holds NaN or inf")
        if any(p.n_prompts < 1 for p in purposes):
            raise BrickworkError("a purpose embedding needs at least one prompt")
        names = tuple(p.name for p in purposes)
        descriptions = tuple(p.description for p in purposes)
        used, fitted = fit_scoring(scoring, purposes, means)
        return cls(
            names,
            descriptions,
            fitted.matrix,
            fitted.shift,
            fitted.scale,
            layer,
            pooling,
            base_model,
            used,
            fitted.bias,
            typicality([p.states for p in purposes], means),
        )

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
        if self.typical is not None:
            tensors |= {
                "centres": self.typical.centres,
                "spread": self.typical.spread,
                "quantiles": self.typical.quantiles,
            }
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
        typical = None
        if "quantiles" in tensors:  # indexes saved before fits were kept have none
            typical = Typicality(tensors["centres"], tensors["spread"], tensors["quantiles"])
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
            typical,
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
        fitted = Fitted(self.matrix, self.shift, self.scale, self.bias)
        values, indices = SCORINGS[self.scoring].rank(fitted, vector, k)
        pairs = zip(values.tolist(), indices.tolist(), strict=True)
        return [
            Match(self.names[i], float(s), self.descriptions[i], self._fit(vector, i))
            for s, i in pairs
        ]

    def _fit(self, vector: torch.Tensor, brick: int) -> float | None:
        return None if self.typical is None else self.typical.fit(vector, brick)

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


def _n_prompts(spec: dict) -> int:
    return int(spec["purpose_embedding"].get("n_prompts", 1))


def _settings_of(spec: dict) -> tuple[int, str]:
    settings = spec["purpose_embedding"]
    return int(settings["layer"]), str(settings["pooling"])


NO_EMBEDDINGS = (
    "no bricks with a purpose embedding to retrieve from: give each brick one with "
    "`brickwork describe NAME --prompts ITS_TRAINING_PROMPTS --description TEXT`"
)


def _one_setting(settings: list[tuple[str, int, str]]) -> tuple[str, int, str]:
    if not settings:
        raise BrickworkError(NO_EMBEDDINGS)
    distinct = sorted(set(settings))
    if len(distinct) > 1:
        raise BrickworkError(
            f"the bricks were embedded with different base models or settings {distinct}; "
            "retrieve from one kind at a time"
        )
    return distinct[0]
