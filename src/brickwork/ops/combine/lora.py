"""LoRA bricks as the combination methods see them: factors, updates ΔW, content hashes, and the
checks every merge runs on its parents before building anything."""

from __future__ import annotations

import hashlib
import math

import torch

from brickwork.bricks.brick import Brick, check_name
from brickwork.bricks.format import EXTRA_PREFIX
from brickwork.errors import BrickworkError

A_SUFFIX, B_SUFFIX = ".lora_A.weight", ".lora_B.weight"

Factors = dict[str, tuple[torch.Tensor, torch.Tensor]]  # {module: (A [r, in], B [out, r])}


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


def lora_factors(brick: Brick) -> Factors:
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
    for module, parts in sorted(modules.items()):
        a, b = parts["A"], parts["B"]
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
            raise BrickworkError(
                f"brick {brick.name!r}: the LoRA factors of {module} disagree (A "
                f"{list(a.shape)}, B {list(b.shape)}: their ranks must match)"
            )
    return {m: (parts["A"], parts["B"]) for m, parts in sorted(modules.items())}


def lora_deltas(brick: Brick) -> dict[str, torch.Tensor]:
    """{module: ΔW [out, in]} = scaling · B · A, in float64."""
    scaling = lora_scaling(brick.spec["peft_config"])
    return {m: scaling * (b.double() @ a.double()) for m, (a, b) in lora_factors(brick).items()}


def checked_factors(bricks: list[Brick], weights: list[float], name: str) -> list[Factors]:
    """The parents' LoRA factors, after every check that can refuse the merge."""
    check_name(name)
    if not bricks:
        raise BrickworkError("nothing to combine: the brick list is empty")
    if len(weights) != len(bricks):
        raise BrickworkError(f"got {len(weights)} weights for {len(bricks)} bricks")
    check_finite_numbers(weights, "weights")
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


def check_finite_numbers(values: list[float], what: str) -> None:
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        raise BrickworkError(f"{what} must be finite numbers, got {list(values)}")


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
