"""The merge methods: one generalized task-arithmetic core (as mergekit's) with a sparsification
option and a sign-consensus option, and the named methods as settings of it:

| method           | sparsification | sign consensus |
|------------------|----------------|----------------|
| linear           | none           | no             |
| task arithmetic  | none (λ·wᵢ)    | no             |
| TIES             | magnitude      | yes            |
| DARE (linear)    | random         | no             |
| DARE (ties)      | random         | yes            |
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from typing_extensions import Unpack

from brickwork.bricks.brick import Brick
from brickwork.errors import BrickworkError, check_choice
from brickwork.ops.combine.lora import (
    Factors,
    check_finite_numbers,
    checked_factors,
    lora_deltas,
    lora_scaling,
)
from brickwork.ops.combine.result import MergeOutput, dense_result, result, truncate_product

DARE_VARIANTS = ("linear", "ties")

Sparsify = Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]


def _keep(delta: torch.Tensor, density: float, generator: torch.Generator) -> torch.Tensor:
    return delta


def _trim(delta: torch.Tensor, density: float, generator: torch.Generator) -> torch.Tensor:
    """TIES: the top ``density`` share of entries by magnitude (ties at the threshold kept)."""
    keep = max(1, math.ceil(density * delta.numel()))
    if keep >= delta.numel():
        return delta
    threshold = delta.abs().flatten().kthvalue(delta.numel() - keep + 1).values
    return torch.where(delta.abs() >= threshold, delta, torch.zeros_like(delta))


def _drop(delta: torch.Tensor, density: float, generator: torch.Generator) -> torch.Tensor:
    """DARE: each entry kept with probability ``density`` and rescaled by 1/density."""
    keep = torch.rand(delta.shape, generator=generator, dtype=torch.float64) < density
    return torch.where(keep, delta / density, torch.zeros_like(delta))


SPARSIFICATIONS: dict[str, Sparsify] = {"none": _keep, "magnitude": _trim, "random": _drop}


def _sign_consensus(deltas: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """TIES: elect a sign per entry by the weighted sum, then average the agreeing weighted
    entries (divided by the sum of their |wᵢ|)."""
    weighted = torch.stack([w * d for w, d in zip(weights, deltas, strict=True)])
    sign = torch.sign(weighted.sum(dim=0))
    agree = (torch.sign(weighted) == sign) & (weighted != 0)
    magnitude = torch.tensor([abs(w) for w in weights], dtype=weighted.dtype)[:, None, None]
    total = (agree * magnitude).sum(dim=0)
    return torch.where(total > 0, (weighted * agree).sum(dim=0) / total.clamp_min(1e-300), 0.0)


def generalized_task_arithmetic(
    bricks: list[Brick],
    weights: list[float],
    name: str,
    *,
    sparsification: str = "none",
    density: float = 1.0,
    sign_consensus: bool = False,
    seed: int = 0,
    rank: int | None = None,
    purpose: str | None = None,
    description: str = "",
    method: str = "generalized_task_arithmetic",
    parameters: dict | None = None,
) -> Brick:
    """Σ wᵢ·ΔWᵢ over the parents' updates, after two optional steps:

    - ``sparsification`` of each ΔWᵢ: ``"none"``, ``"magnitude"`` (keep its top ``density``
      entries by magnitude, as TIES) or ``"random"`` (keep each entry with probability
      ``density``, seeded by ``seed``, and rescale the kept ones by 1/density, as DARE);
    - ``sign_consensus``: elect a sign per entry and average only the agreeing entries (TIES).

    With neither, the merge is exact in factor form (rank Σ rᵢ, or SVD-truncated to ``rank``);
    otherwise the dense merge is re-compressed to ``rank`` by SVD (default Σ rᵢ). ``method`` and
    ``parameters`` (recorded beside the weights and the rank; by default the options above)
    name the result in its provenance."""
    factors = checked_factors(bricks, weights, name)
    if sparsification not in SPARSIFICATIONS:
        known = ", ".join(SPARSIFICATIONS)
        raise BrickworkError(f"sparsification must be one of {known}, not {sparsification!r}")
    if parameters is None:
        parameters = {
            "sparsification": sparsification,
            "density": density,
            "sign_consensus": sign_consensus,
            "seed": seed,
        }
    params = {"weights": list(weights), **parameters}
    if sparsification == "none" and not sign_consensus:
        if rank is not None and rank < 1:
            raise BrickworkError(f"rank must be at least 1, not {rank}")
        merged, errors = _exact_sum(bricks, factors, weights, rank)
        params["rank"] = rank
        return result(bricks, weights, merged, name, method, params, errors, purpose, description)
    if sparsification != "none":
        _check_density(density)
    sparsify = SPARSIFICATIONS[sparsification]
    generator = torch.Generator().manual_seed(seed)
    deltas = [lora_deltas(b) for b in bricks]
    dense = {}
    for module in factors[0]:  # sorted module order, then parent order: reproducible masks
        kept = [sparsify(d[module], density, generator) for d in deltas]
        dense[module] = (
            _sign_consensus(kept, weights)
            if sign_consensus
            else sum(w * d for w, d in zip(weights, kept, strict=True))
        )
    return dense_result(
        bricks, factors, weights, dense, name, method, params, rank, purpose, description
    )


def _exact_sum(bricks: list[Brick], factors: list[Factors], weights: list[float], rank):
    """Σ wᵢ·ΔWᵢ as A = cat(Aᵢ), B = cat(wᵢ·sᵢ·Bᵢ), truncated when ``rank`` is below Σ rᵢ."""
    merged, errors = {}, []
    for module in factors[0]:
        a = torch.cat([f[module][0].double() for f in factors])
        scaled = zip(factors, weights, bricks, strict=True)
        b = torch.cat(
            [w * lora_scaling(x.spec["peft_config"]) * f[module][1].double() for f, w, x in scaled],
            dim=1,
        )
        if rank is not None and rank < a.shape[0]:
            a, b, error = truncate_product(a, b, rank)
            errors.append(error)
        merged[module] = (a, b)
    return merged, errors


def merge_linear(
    bricks: list[Brick], weights: list[float], name: str, **output: Unpack[MergeOutput]
) -> Brick:
    """Σ wᵢ·ΔWᵢ exactly as a LoRA of rank Σ rᵢ (weights may be negative), or SVD-truncated to
    ``rank``. One brick with weight 1 gives the same update as the brick itself."""
    return generalized_task_arithmetic(
        bricks, weights, name, method="linear", parameters={}, **output
    )


def task_arithmetic(
    bricks: list[Brick],
    weights: list[float],
    name: str,
    *,
    scale: float = 1.0,
    **output: Unpack[MergeOutput],
) -> Brick:
    """Task arithmetic (Ilharco et al.): scale·Σ wᵢ·ΔWᵢ; a negative weight subtracts a skill."""
    check_finite_numbers([scale, *weights], "scale and weights")
    return generalized_task_arithmetic(
        bricks,
        [scale * w for w in weights],
        name,
        method="task_arithmetic",
        parameters={"weights": list(weights), "scale": scale},
        **output,
    )


def merge_ties(
    bricks: list[Brick],
    weights: list[float],
    name: str,
    *,
    density: float = 0.2,
    **output: Unpack[MergeOutput],
) -> Brick:
    """TIES (Yadav et al.) on each module's ΔW: keep each update's top ``density`` entries by
    magnitude, elect a sign per entry by the weighted sum, average the agreeing weighted entries
    (divided by the sum of their |wᵢ|), then re-compress to ``rank`` by SVD (default Σ rᵢ)."""
    return generalized_task_arithmetic(
        bricks,
        weights,
        name,
        sparsification="magnitude",
        density=density,
        sign_consensus=True,
        method="ties",
        parameters={"density": density},
        **output,
    )


def merge_dare(
    bricks: list[Brick],
    weights: list[float],
    name: str,
    *,
    density: float = 0.5,
    seed: int = 0,
    variant: str = "linear",
    **output: Unpack[MergeOutput],
) -> Brick:
    """DARE (Yu et al.): drop each ΔW entry with probability 1 - ``density`` (seeded), rescale the
    kept ones by 1/density, then merge linearly (Σ wᵢ·ΔWᵢ) or with TIES sign election
    (``variant="ties"``), and re-compress to ``rank`` by SVD (default Σ rᵢ)."""
    check_choice(variant, DARE_VARIANTS, "DARE variant")
    return generalized_task_arithmetic(
        bricks,
        weights,
        name,
        sparsification="random",
        density=density,
        sign_consensus=variant == "ties",
        seed=seed,
        method=f"dare_{variant}",
        parameters={"density": density, "variant": variant, "seed": seed},
        **output,
    )


def _check_density(density: float) -> None:
    if not (isinstance(density, (int, float)) and 0 < density <= 1):
        raise BrickworkError(f"density must be in (0, 1], not {density}")
