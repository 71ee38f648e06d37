"""The registry of merge methods: the CLI's choices and ``merge(method, ...)`` come from here.

Adding a method is one function (usually a setting of ``generalized_task_arithmetic``) and one
``register_merge_method`` call below (docs/adding_a_merge_method.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from brickwork.bricks.brick import Brick
from brickwork.errors import BrickworkError
from brickwork.ops.combine.methods import merge_dare, merge_linear, merge_ties, task_arithmetic
from brickwork.ops.combine.result import MergeOutput
from brickwork.registry import Registry

COMMON_OPTIONS = tuple(MergeOutput.__annotations__)


@dataclass(frozen=True)
class MergeMethod:
    """A registered method: ``merge(bricks, weights, name, *, rank, purpose, description,
    **options)`` returns the combined brick; ``options`` names the keyword options it takes
    beyond the common ones."""

    name: str
    merge: Callable[..., Brick]
    options: tuple[str, ...] = ()
    summary: str = ""


MERGE_METHODS: Registry[MergeMethod] = Registry("merge method")


def register_merge_method(
    name: str, merge: Callable[..., Brick], options: tuple[str, ...] = (), summary: str = ""
) -> MergeMethod:
    """Register ``merge`` under ``name`` (as the CLI spells it); names are unique."""
    return MERGE_METHODS.add(MergeMethod(name, merge, tuple(options), summary))


def merge(method: str, bricks: list[Brick], weights: list[float], name: str, **options) -> Brick:
    """Combine ``bricks`` with the registered ``method``; an option it does not take is refused."""
    entry = MERGE_METHODS[method]
    unknown = sorted(set(options) - set(entry.options) - set(COMMON_OPTIONS))
    if unknown:
        raise BrickworkError(f"merge method {method!r} takes no option {unknown[0]!r}")
    return entry.merge(bricks, weights, name, **options)


register_merge_method("linear", merge_linear, (), "exact Σ wᵢ·ΔWᵢ (rank Σ rᵢ, or SVD to --rank)")
register_merge_method("task-arithmetic", task_arithmetic, ("scale",), "scale · Σ wᵢ·ΔWᵢ")
register_merge_method("ties", merge_ties, ("density",), "magnitude trim + sign consensus")
register_merge_method(
    "dare", merge_dare, ("density", "seed", "variant"), "random drop and rescale, then linear/ties"
)
