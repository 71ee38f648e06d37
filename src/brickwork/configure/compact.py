"""Compact models: FFN neurons physically gathered into smaller dense matrices, saved and loaded.

A neuron is an input of the FFN output projection (models/families.py). Keeping a set of neurons
means keeping those rows of the gate and up projections (their output features, with bias) and
those columns of the down projection. Every layer gets its own width; the kept indices are
recorded, so a saved compact model reloads exactly. The input model is never changed: the compact
model shares the untouched (attention, embedding, norm) parameters with it, read only, and owns
new sliced FFN weights.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from brickwork.errors import BrickworkError
from brickwork.io import read_marker_json, write_marked_dir
from brickwork.models.families import Family, family_for
from brickwork.models.ffn import slice_ffn
from brickwork.models.load import LoadedModel, fingerprint

COMPACT_FILE = "brickwork_compact.json"
KEPT_FILE = "kept_neurons.safetensors"
FORMAT_VERSION = 1


@dataclass
class CompactModel:
    """A model with sliced FFNs, tied to the base model it was cut from."""

    loaded: LoadedModel  # the compact model, its tokenizer, family and its own fingerprint
    base_fingerprint: str
    kept: list[torch.Tensor]  # per layer: sorted indices of the base neurons kept
    base_d_ff: int
    info: dict = field(default_factory=dict)  # what selected it (functionality, budget, trace)

    @property
    def widths(self) -> list[int]:
        return [len(k) for k in self.kept]

    @property
    def fraction(self) -> float:
        return sum(self.widths) / (len(self.kept) * self.base_d_ff)


def check_budget(budget: float) -> float:
    """A budget is the kept share of FFN neurons, in (0, 1]."""
    if not isinstance(budget, (int, float)) or not 0 < float(budget) <= 1:
        raise BrickworkError(f"the FFN budget must be a fraction in (0, 1], not {budget!r}")
    return float(budget)


def kept_from_mask(mask: torch.Tensor) -> list[torch.Tensor]:
    """Per-layer sorted neuron indices from a [layers, d_ff] boolean mask."""
    kept = [row.nonzero().flatten() for row in mask.bool()]
    empty = [i for i, k in enumerate(kept) if len(k) == 0]
    if empty:
        raise BrickworkError(f"the selection keeps no neuron in layer(s) {empty}")
    return kept


def gather_ffn(
    loaded: LoadedModel,
    kept: list[torch.Tensor],
    info: dict | None = None,
    base_fingerprint: str | None = None,
) -> CompactModel:
    """A new model whose layer-i FFN holds only the neurons ``kept[i]`` (indices into d_ff)."""
    family, model = loaded.family, loaded.model
    layers = family.layer_modules(model)
    d_ff = family.d_ff(model.config)
    if len(kept) != len(layers):
        raise BrickworkError(f"the selection has {len(kept)} layers, the model {len(layers)}")
    kept = [_check_indices(torch.as_tensor(k).long(), d_ff, i) for i, k in enumerate(kept)]
    compact = _shallow_copy(model, family)
    for layer, index in zip(family.layer_modules(compact), kept, strict=True):
        slice_ffn(family, family.ffn(layer), index)
    base = base_fingerprint or loaded.fingerprint
    new = LoadedModel(
        compact, loaded.tokenizer, family, compact_fingerprint(base, kept), loaded.source
    )
    return CompactModel(new, base, kept, d_ff, dict(info or {}))


def compact_fingerprint(base_fingerprint: str, kept: list[torch.Tensor]) -> str:
    """The compact model is a function of the base weights and the kept indices: hash both."""
    digest = hashlib.sha256(f"compact|{base_fingerprint}".encode())
    for index in kept:
        digest.update(index.to(torch.int64).contiguous().numpy().tobytes() + b"|")
    return "sha256:" + digest.hexdigest()[:32]


def _check_indices(index: torch.Tensor, d_ff: int, layer: int) -> torch.Tensor:
    if index.ndim != 1 or len(index) == 0:
        raise BrickworkError(f"layer {layer}: the selection must keep at least one neuron")
    index = index.unique(sorted=True)
    if int(index[0]) < 0 or int(index[-1]) >= d_ff:
        raise BrickworkError(f"layer {layer}: neuron indices must lie in [0, {d_ff})")
    return index


def _shallow_copy(model: nn.Module, family: Family) -> nn.Module:
    """A structural copy that shares every parameter and buffer with ``model``.

    The FFN projections are copied as modules too (their weights replaced right after), so
    nothing done to the copy's FFNs reaches the original.
    """
    memo = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return copy.deepcopy(model, memo)


def save_compact(compact: CompactModel, out_dir: str | Path) -> Path:
    """Write a model directory (HF weights + tokenizer + kept indices); it appears whole or not."""

    def write(tmp: Path) -> dict:
        compact.loaded.model.save_pretrained(tmp, safe_serialization=True)
        compact.loaded.tokenizer.save_pretrained(tmp)
        tensors = {f"layer{i:03d}": k.contiguous() for i, k in enumerate(compact.kept)}
        save_file(tensors, str(tmp / KEPT_FILE))
        return {
            "format_version": FORMAT_VERSION,
            "base_fingerprint": compact.base_fingerprint,
            "fingerprint": compact.loaded.fingerprint,
            "weights_hash": fingerprint(compact.loaded.model),
            "base_d_ff": compact.base_d_ff,
            "widths": compact.widths,
            "fraction": compact.fraction,
            "info": compact.info,
            "source": compact.loaded.source,
        }

    return write_marked_dir(out_dir, COMPACT_FILE, "compact model directory", write)


def load_compact(path: str | Path) -> CompactModel:
    """Load a directory written by ``save_compact``; its weights must hash to the saved ones."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = Path(path)
    meta = read_marker_json(folder, COMPACT_FILE, "compact model directory")
    config = AutoConfig.from_pretrained(folder)
    family = family_for(config)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    kept_tensors = load_file(str(folder / KEPT_FILE))
    kept = [kept_tensors[f"layer{i:03d}"] for i in range(len(kept_tensors))]
    for layer, index in zip(family.layer_modules(model), kept, strict=True):
        slice_ffn(family, family.ffn(layer), index)
    state = {}
    for file in sorted(folder.glob("*.safetensors")):
        if file.name != KEPT_FILE:
            state.update(load_file(str(file)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    if unexpected or any(k not in tied for k in missing):
        raise BrickworkError(f"{folder}: weights do not match the compact layout")
    model.tie_weights()
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if fingerprint(model) != meta["weights_hash"]:
        raise BrickworkError(f"{folder}: the weights do not hash to the saved weights_hash")
    if compact_fingerprint(meta["base_fingerprint"], kept) != meta["fingerprint"]:
        raise BrickworkError(f"{folder}: the kept neurons do not match the saved fingerprint")
    loaded = LoadedModel(model, tokenizer, family, meta["fingerprint"], meta.get("source", ""))
    return CompactModel(loaded, meta["base_fingerprint"], kept, meta["base_d_ff"], meta["info"])


@contextmanager
def attach_plugins(compact: CompactModel, bricks: list) -> Iterator[nn.Module]:
    """Attach plugin bricks (LoRA, steering) built for the base model to the compact model.

    Plugins must not touch the sliced FFN projections (their shapes changed).
    """
    from brickwork.bricks.attach import attach
    from brickwork.bricks.kinds import brick_kind

    family = compact.loaded.family
    sliced = {n for n in (family.gate, family.up, family.down) if n}
    as_base = replace(compact.loaded, fingerprint=compact.base_fingerprint)
    for brick in bricks:
        on_compact = brick_kind(brick.kind).compact
        if on_compact is None:
            raise BrickworkError(
                f"only plugin bricks attach to a compact model, not {brick.name!r}"
            )
        as_base.require_base(brick.base_model, f"brick {brick.name!r}")
        on_compact(brick, sliced)
    with attach(as_base, bricks) as model:
        yield model
