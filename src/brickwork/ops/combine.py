"""Combination of homogeneous LoRA bricks (paper §3.2): linear, task arithmetic, TIES, DARE and a
LoraHub-style coefficient search. Every result is a LoRA plugin brick (a PEFT adapter directory
once saved) whose provenance names its parents with their content hashes.

All methods work on each target module's update ΔWᵢ = sᵢ·Bᵢ·Aᵢ (sᵢ = alpha/r, or alpha/√r with
rsLoRA), never on A and B separately:

- ``merge_linear`` is exact: Σ wᵢ·ΔWᵢ is the LoRA with A = cat(Aᵢ) and B = cat(wᵢ·sᵢ·Bᵢ) (rank
  Σ rᵢ, scaling 1). With ``rank`` it is truncated by SVD (computed through QR of the thin factors)
  and the relative Frobenius error of the truncation is recorded. PEFT's
  ``add_weighted_adapter(combination_type="linear")`` instead weights A and B by √(wᵢ·sᵢ) and adds
  them, which yields cross terms Bᵢ·Aⱼ: it is not Σ wᵢ·ΔWᵢ.
- ``merge_ties`` and ``merge_dare`` sparsify and merge the dense ΔWᵢ, then take the best
  rank-``rank`` approximation by SVD (default: Σ rᵢ, the rank the exact linear merge has); the
  relative re-compression error is recorded in ``metrics``. The dense merge would need rank
  min(d_out, d_in).

Bad input raises ``BrickworkError`` before anything is built; results holding NaN or inf too.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from brickwork.bricks.attach import attach
from brickwork.bricks.brick import Brick, check_name
from brickwork.bricks.format import EXTRA_PREFIX
from brickwork.bricks.specs import LoraSpec
from brickwork.bricks.train_eval import response_loss
from brickwork.data.sample import Sample
from brickwork.errors import BrickworkError
from brickwork.models.load import LoadedModel

A_SUFFIX, B_SUFFIX = ".lora_A.weight", ".lora_B.weight"
DARE_VARIANTS = ("linear", "ties")


def content_hash(brick: Brick) -> str:
    """sha256 of a brick's adapter tensors (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for key in sorted(brick.tensors):
        if key.startswith(EXTRA_PREFIX):
            continue
        tensor = brick.tensors[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return "sha256:" + digest.hexdigest()[:32]


def lora_scaling(config: dict) -> float:
    """PEFT's scaling of a LoRA adapter config: alpha/r, or alpha/√r with rsLoRA."""
    r, alpha = config["r"], config["lora_alpha"]
    return alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r


def lora_factors(brick: Brick) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{module: (A [r, in], B [out, r])} of a LoRA brick, after checking it is a plain LoRA."""
    _check_lora(brick)
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in brick.tensors.items():
        if key.startswith(EXTRA_PREFIX):
            continue
        for suffix, part in ((A_SUFFIX, "A"), (B_SUFFIX, "B")):
            if key.endswith(suffix):
                modules.setdefault(key[: -len(suffix)], {})[part] = tensor
                break
        else:
            raise BrickworkError(
                f"brick {brick.name!r} holds {key!r}: only plain LoRA (lora_A, "
                "lora_B of linear layers) can be combined"
            )
    incomplete = [m for m, parts in modules.items() if set(parts) != {"A", "B"}]
    if incomplete or not modules:
        raise BrickworkError(
            f"brick {brick.name!r} has no complete LoRA pair for "
            f"{incomplete[0] if incomplete else 'any module'}"
        )
    return {m: (parts["A"], parts["B"]) for m, parts in sorted(modules.items())}


def lora_deltas(brick: Brick) -> dict[str, torch.Tensor]:
    """{module: ΔW [out, in]} = scaling · B · A, in float64."""
    scaling = lora_scaling(brick.spec["peft_config"])
    return {m: scaling * (b.double() @ a.double()) for m, (a, b) in lora_factors(brick).items()}


def merge_linear(
    bricks: list[Brick],
    weights: list[float],
    name: str,
    *,
    rank: int | None = None,
    purpose: str | None = None,
    description: str = "",
) -> Brick:
    """Σ wᵢ·ΔWᵢ exactly as a LoRA of rank Σ rᵢ (weights may be negative), or SVD-truncated to
    ``rank``. One brick with weight 1 gives the same update as the brick itself."""
    factors = _checked(bricks, weights, name)
    if rank is not None and rank < 1:
        raise BrickworkError(f"rank must be at least 1, not {rank}")
    merged, errors = {}, []
    for module in factors[0]:
        a = torch.cat([f[module][0].double() for f in factors])
        scaled = zip(factors, weights, bricks, strict=True)
        b = torch.cat(
            [w * lora_scaling(x.spec["peft_config"]) * f[module][1].double() for f, w, x in scaled],
            dim=1,
        )
        if rank is not None and rank < a.shape[0]:
            a, b, error = _truncate_product(a, b, rank)
            errors.append(error)
        merged[module] = (a, b)
    params = {"weights": list(weights), "rank": rank}
    return _result(bricks, weights, merged, name, "linear", params, errors, purpose, description)


def task_arithmetic(
    bricks: list[Brick],
    weights: list[float],
    name: str,
    *,
    scale: float = 1.0,
    rank: int | None = None,
    purpose: str | None = None,
    description: str = "",
) -> Brick:
    """Task arithmetic (Ilharco et al.): scale·Σ wᵢ·ΔWᵢ; a negative weight subtracts a skill."""
    _check_finite_numbers([scale, *weights], "scale and weights")
    scaled = [scale * w for w in weights]
    brick = merge_linear(bricks, scaled, name, rank=rank, purpose=purpose, description=description)
    brick.provenance["method"] = "task_arithmetic"
    brick.provenance["parameters"].update(weights=list(weights), scale=scale)
    return brick


def merge_ties(
    bricks: list[Brick],
    weights: list[float],
    name: str,
    *,
    density: float = 0.2,
    rank: int | None = None,
    purpose: str | None = None,
    description: str = "",
) -> Brick:
    """TIES (Yadav et al.) on each module's ΔW: keep each update's top ``density`` entries by
    magnitude, elect a sign per entry by the weighted sum, average the agreeing weighted entries
    (divided by the sum of their |wᵢ|), then re-compress to ``rank`` by SVD (default Σ rᵢ)."""
    factors = _checked(bricks, weights, name)
    _check_density(density)
    deltas = [lora_deltas(b) for b in bricks]
    dense = {m: _ties([_trim(d[m], density) for d in deltas], weights) for m in factors[0]}
    params = {"weights": list(weights), "density": density}
    return _dense_result(bricks, weights, dense, name, "ties", params, rank, purpose, description)


def merge_dare(
    bricks: list[Brick],
    weights: list[float],
    name: str,
    *,
    density: float = 0.5,
    seed: int = 0,
    variant: str = "linear",
    rank: int | None = None,
    purpose: str | None = None,
    description: str = "",
) -> Brick:
    """DARE (Yu et al.): drop each ΔW entry with probability 1 - ``density`` (seeded), rescale the
    kept ones by 1/density, then merge linearly (Σ wᵢ·ΔWᵢ) or with TIES sign election
    (``variant="ties"``), and re-compress to ``rank`` by SVD (default Σ rᵢ)."""
    factors = _checked(bricks, weights, name)
    _check_density(density)
    if variant not in DARE_VARIANTS:
        raise BrickworkError(f"DARE variant must be one of {DARE_VARIANTS}, not {variant!r}")
    generator = torch.Generator().manual_seed(seed)
    deltas = [lora_deltas(b) for b in bricks]
    dense = {}
    for module in factors[0]:  # sorted module order, then parent order: reproducible masks
        dropped = [_drop(d[module], density, generator) for d in deltas]
        dense[module] = (
            _ties(dropped, weights)
            if variant == "ties"
            else sum(w * d for w, d in zip(weights, dropped, strict=True))
        )
    params = {"weights": list(weights), "density": density, "variant": variant, "seed": seed}
    return _dense_result(
        bricks, weights, dense, name, f"dare_{variant}", params, rank, purpose, description
    )


def _trim(delta: torch.Tensor, density: float) -> torch.Tensor:
    keep = max(1, math.ceil(density * delta.numel()))
    if keep >= delta.numel():
        return delta
    threshold = delta.abs().flatten().kthvalue(delta.numel() - keep + 1).values
    return torch.where(delta.abs() >= threshold, delta, torch.zeros_like(delta))


def _drop(delta: torch.Tensor, density: float, generator: torch.Generator) -> torch.Tensor:
    keep = torch.rand(delta.shape, generator=generator, dtype=torch.float64) < density
    return torch.where(keep, delta / density, torch.zeros_like(delta))


def _ties(deltas: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    weighted = torch.stack([w * d for w, d in zip(weights, deltas, strict=True)])
    sign = torch.sign(weighted.sum(dim=0))
    agree = (torch.sign(weighted) == sign) & (weighted != 0)
    magnitude = torch.tensor([abs(w) for w in weights], dtype=weighted.dtype)[:, None, None]
    total = (agree * magnitude).sum(dim=0)
    return torch.where(total > 0, (weighted * agree).sum(dim=0) / total.clamp_min(1e-300), 0.0)


def _truncate_product(
    a: torch.Tensor, b: torch.Tensor, rank: int
) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float]]:
    """Best rank-``rank`` factors of b @ a via QR of the thin factors; (error², total²)."""
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


def _dense_result(bricks, weights, dense, name, method, params, rank, purpose, description):
    rank = (
        sum(lora_factors(b)[next(iter(dense))][0].shape[0] for b in bricks)
        if rank is None
        else rank
    )
    if rank < 1:
        raise BrickworkError(f"rank must be at least 1, not {rank}")
    merged, errors = {}, []
    for module, delta in dense.items():
        a, b, error = _truncate_dense(delta, rank)
        merged[module] = (a, b)
        errors.append(error)
    params = {**params, "rank": rank}
    return _result(bricks, weights, merged, name, method, params, errors, purpose, description)


def _result(bricks, weights, merged, name, method, params, errors, purpose, description) -> Brick:
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
    metrics = {"rank": rank}
    if errors:
        lost, total = sum(e[0] for e in errors), sum(e[1] for e in errors)
        metrics["recompression_error"] = math.sqrt(lost / total) if total else 0.0
        metrics["max_module_recompression_error"] = max(
            math.sqrt(e[0] / e[1]) if e[1] else 0.0 for e in errors
        )
    purpose = purpose or " + ".join(b.purpose for b in bricks)
    return Brick(
        name,
        "lora",
        "customized",
        purpose,
        bricks[0].base_model,
        tensors=tensors,
        spec=LoraSpec(peft_config=config),
        provenance=provenance,
        metrics=metrics,
        description=description,
    )


def _checked(bricks: list[Brick], weights: list[float], name: str):
    """The parents' LoRA factors, after every check that can refuse the merge."""
    check_name(name)
    if not bricks:
        raise BrickworkError("nothing to combine: the brick list is empty")
    if len(weights) != len(bricks):
        raise BrickworkError(f"got {len(weights)} weights for {len(bricks)} bricks")
    _check_finite_numbers(weights, "weights")
    bases = {b.base_model for b in bricks}
    if len(bases) > 1:
        raise BrickworkError(f"the bricks were built on different base models: {sorted(bases)}")
    factors = [lora_factors(b) for b in bricks]
    for brick, parts in zip(bricks[1:], factors[1:], strict=True):
        if set(parts) != set(factors[0]):
            extra = sorted(set(parts) ^ set(factors[0]))[0]
            raise BrickworkError(
                f"bricks {bricks[0].name!r} and {brick.name!r} target different "
                f"modules (e.g. {extra})"
            )
        for module, (a, b) in parts.items():
            a0, b0 = factors[0][module]
            if a.shape[1] != a0.shape[1] or b.shape[0] != b0.shape[0]:
                raise BrickworkError(
                    f"bricks {bricks[0].name!r} and {brick.name!r} have different "
                    f"shapes at {module}"
                )
    for brick, parts in zip(bricks, factors, strict=True):
        if not all(torch.isfinite(t).all() for pair in parts.values() for t in pair):
            raise BrickworkError(f"brick {brick.name!r} holds NaN or inf")
    return factors


def _check_lora(brick: Brick) -> None:
    if brick.kind != "lora":
        raise BrickworkError(f"brick {brick.name!r} is not a LoRA plugin brick")
    config = brick.spec.get("peft_config", {})
    if config.get("use_dora") or config.get("rank_pattern") or config.get("alpha_pattern"):
        raise BrickworkError(
            f"brick {brick.name!r} uses DoRA or per-module ranks, which "
            "combination does not support"
        )
    if config.get("modules_to_save") or config.get("bias", "none") != "none":
        raise BrickworkError(
            f"brick {brick.name!r} trains biases or whole modules, which "
            "combination does not support"
        )


def _check_finite_numbers(values: list[float], what: str) -> None:
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        raise BrickworkError(f"{what} must be finite numbers, got {list(values)}")


def _check_density(density: float) -> None:
    if not (isinstance(density, (int, float)) and 0 < density <= 1):
        raise BrickworkError(f"density must be in (0, 1], not {density}")


@dataclass
class SearchResult:
    """A coefficient search's best weights and how it got there."""

    weights: list[float]
    loss: float  # mean response loss on the search examples at ``weights``
    start_loss: float  # the same at the starting (uniform) weights
    evaluations: int
    history: list[float] = field(default_factory=list)  # objective of every evaluation


@contextmanager
def weighted_mixture(loaded: LoadedModel, bricks: list[Brick]) -> Iterator[Callable]:
    """Attach LoRA ``bricks`` together and yield ``set_weights(ws)``, which rescales each brick's
    adapter so that the model computes W + Σ wᵢ·ΔWᵢ, the same update ``merge_linear`` builds,
    without rebuilding or reloading anything. On exit the model is exactly as before."""
    from peft.tuners.lora import LoraLayer

    _checked(bricks, [1.0] * len(bricks), "mixture")
    names = [b.name for b in bricks]
    if len(set(names)) != len(names):
        raise BrickworkError(f"brick names must be distinct to mix them: {names}")
    with attach(loaded, bricks) as model:
        layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
        base = [dict(m.scaling) for m in layers]

        def set_weights(weights: list[float]) -> None:
            _check_finite_numbers(list(weights), "weights")
            for layer, scalings in zip(layers, base, strict=True):
                for brick_name, weight in zip(names, weights, strict=True):
                    layer.scaling[brick_name] = scalings[brick_name] * float(weight)

        yield set_weights


def search_weights(
    loaded: LoadedModel,
    bricks: list[Brick],
    examples: list[Sample],
    *,
    budget: int = 30,
    seed: int = 0,
    bound: float = 1.5,
    l1: float = 0.05,
    sigma: float = 0.3,
    initial: list[float] | None = None,
    progress: bool = False,
) -> SearchResult:
    """LoraHub-style gradient-free search (CMA-ES from the ``cma`` package) for the weights wᵢ
    that minimise the response loss on a few ``examples`` plus ``l1``·mean|wᵢ|, each wᵢ within
    ±``bound``, in at most ``budget`` evaluations. It starts from ``initial`` (default uniform
    1/k) and returns the best weights seen, so never worse than the start on the examples.
    Evaluate the result on other examples."""
    import cma
    import numpy as np

    if len(bricks) < 2:
        raise BrickworkError("a coefficient search needs at least two bricks")
    if not examples:
        raise BrickworkError("a coefficient search needs a few examples with references")
    if budget < 2:
        raise BrickworkError(f"budget must be at least 2 evaluations, not {budget}")
    start = [1.0 / len(bricks)] * len(bricks) if initial is None else list(initial)
    if len(start) != len(bricks):
        raise BrickworkError(f"got {len(start)} initial weights for {len(bricks)} bricks")
    history: list[float] = []
    losses: dict[tuple[float, ...], float] = {}
    with weighted_mixture(loaded, bricks) as set_weights:

        def objective(x) -> float:
            weights = tuple(float(v) for v in x)
            set_weights(weights)
            losses[weights] = response_loss(loaded, examples)
            value = losses[weights] + l1 * sum(abs(w) for w in weights) / len(weights)
            history.append(value)
            return value

        best = (objective(start), tuple(start))
        options = {
            "seed": seed + 1,
            "bounds": [-bound, bound],
            "maxfevals": budget - 1,
            "verbose": -9,
        }  # cma treats seed 0 as "from the clock"
        state = np.random.get_state()
        try:
            strategy = cma.CMAEvolutionStrategy(start, sigma, options)
            bar = tqdm(total=budget, initial=1, desc="weight search", disable=not progress)
            while not strategy.stop() and len(history) < budget:
                candidates = strategy.ask()
                values = [objective(x) for x in candidates[: budget - len(history)]]
                bar.update(len(values))
                best = min([best, *zip(values, map(tuple, candidates), strict=False)])
                if len(values) < len(candidates):
                    break
                strategy.tell(candidates, values)
            bar.close()
        finally:
            np.random.set_state(state)
    weights = [float(w) for w in best[1]]
    return SearchResult(
        weights, losses[tuple(weights)], losses[tuple(start)], len(history), history
    )
