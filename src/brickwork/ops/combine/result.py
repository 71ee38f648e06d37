"""From merged updates to the combined brick: rank-r factors by SVD (with the relative error of
the re-compression), then a LoRA plugin brick of scaling 1 whose provenance names its parents."""

from __future__ import annotations

import copy
import math
from typing import TypedDict

import torch

from brickwork.bricks.brick import Brick
from brickwork.bricks.specs import LoraSpec
from brickwork.errors import BrickworkError
from brickwork.ops.combine.lora import A_SUFFIX, B_SUFFIX, Factors, content_hash

Error = tuple[float, float]  # (squared Frobenius norm lost, squared norm) of one module


class MergeOutput(TypedDict, total=False):
    """The options every merge method takes, about its result: ``rank`` (re-compress by SVD; by
    default Σ rᵢ), and the result's ``purpose`` and ``description``."""

    rank: int | None
    purpose: str | None
    description: str


def truncate_product(a: torch.Tensor, b: torch.Tensor, rank: int):
    """Best rank-``rank`` factors of b @ a via QR of the thin factors; (A, B, error)."""
    q_b, r_b = torch.linalg.qr(b)
    q_a, r_a = torch.linalg.qr(a.T)
    u, s, vh = torch.linalg.svd(r_b @ r_a.T)
    return *_split(q_b @ u, s, vh @ q_a.T, rank), (
        float((s[rank:] ** 2).sum()),
        float((s**2).sum()),
    )


def _truncate_dense(delta: torch.Tensor, rank: int):
    u, s, vh = torch.linalg.svd(delta, full_matrices=False)
    return *_split(u, s, vh, rank), (float((s[rank:] ** 2).sum()), float((s**2).sum()))


def _split(u: torch.Tensor, s: torch.Tensor, vh: torch.Tensor, rank: int):
    """(A [rank, in], B [out, rank]) with the singular values split evenly between them; when
    ``rank`` exceeds the module's own rank, zero rows/columns pad it (still exact)."""
    root = s[:rank].sqrt()
    a, b = root[:, None] * vh[:rank], u[:, :rank] * root[None]
    missing = rank - len(root)
    if missing > 0:
        a = torch.cat([a, a.new_zeros(missing, a.shape[1])])
        b = torch.cat([b, b.new_zeros(b.shape[0], missing)], dim=1)
    return a, b


def dense_result(
    bricks: list[Brick],
    factors: list[Factors],
    weights: list[float],
    dense: dict[str, torch.Tensor],
    name: str,
    method: str,
    params: dict,
    rank: int | None,
    purpose: str | None,
    description: str,
) -> Brick:
    """The brick of dense merged updates, re-compressed to ``rank`` (default Σ rᵢ)."""
    first = next(iter(dense))
    rank = sum(f[first][0].shape[0] for f in factors) if rank is None else rank
    if rank < 1:
        raise BrickworkError(f"rank must be at least 1, not {rank}")
    merged, errors = {}, []
    for module, delta in dense.items():
        a, b, error = _truncate_dense(delta, rank)
        merged[module] = (a, b)
        errors.append(error)
    params = {**params, "rank": rank}
    return result(bricks, weights, merged, name, method, params, errors, purpose, description)


def result(
    bricks: list[Brick],
    weights: list[float],
    merged: Factors,
    name: str,
    method: str,
    params: dict,
    errors: list[Error],
    purpose: str | None,
    description: str,
) -> Brick:
    """The combined brick: float32 LoRA factors with scaling 1, parents and errors recorded."""
    import brickwork

    rank = next(iter(merged.values()))[0].shape[0]
    tensors = {}
    for module, (a, b) in merged.items():
        tensors[module + A_SUFFIX] = a.float().contiguous()
        tensors[module + B_SUFFIX] = b.float().contiguous()
    if not all(torch.isfinite(t).all() for t in tensors.values()):
        raise BrickworkError(f"the {method} merge produced NaN or inf (overflow?); nothing built")
    config = copy.deepcopy(bricks[0].spec["peft_config"])
    config.update(r=rank, lora_alpha=rank, use_rslora=False, rank_pattern={}, alpha_pattern={})
    parents = [
        {"name": b.name, "content_hash": content_hash(b), "weight": w}
        for b, w in zip(bricks, weights, strict=True)
    ]
    provenance = {
        "method": method,
        "parents": parents,
        "parameters": params,
        "brickwork_version": brickwork.__version__,
    }
    return Brick(
        name,
        "lora",
        "customized",
        purpose or " + ".join(b.purpose for b in bricks),
        bricks[0].base_model,
        tensors=tensors,
        spec=LoraSpec(peft_config=config),
        provenance=provenance,
        metrics=_metrics(rank, errors),
        description=description,
    )


def _metrics(rank: int, errors: list[Error]) -> dict:
    metrics: dict = {"rank": rank}
    if errors:
        lost, total = sum(e[0] for e in errors), sum(e[1] for e in errors)
        metrics["recompression_error"] = math.sqrt(lost / total) if total else 0.0
        metrics["max_module_recompression_error"] = max(
            math.sqrt(e[0] / e[1]) if e[1] else 0.0 for e in errors
        )
    return metrics
