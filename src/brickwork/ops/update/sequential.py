"""Sequential editing: facts written one after another, each on the already-edited model, kept
as one stack of delta bricks ``{name}-0001``, ``{name}-0002``, ... Each brick holds the weights
it was made on, so rolling back the last k (newest first) restores the model bit-identically.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from brickwork.bricks.brick import Brick, check_name
from brickwork.data.edits import EditFact
from brickwork.errors import BrickworkError
from brickwork.models.load import LoadedModel
from brickwork.ops.update.edit import edit
from brickwork.ops.update.methods import EDIT_METHODS
from brickwork.ops.update.rome import EditSettings, covariances, fact_key
from brickwork.ops.update.store import apply_edit, rollback

CHECKPOINTS = (10, 50, 100, 300)


def stack_name(name: str, position: int) -> str:
    """The brick name of the stack's ``position``-th edit (1-based)."""
    return f"{name}-{position:04d}"


def stack_names(has: Callable[[str], bool], name: str) -> list[str]:
    """The stack's brick names in order, as far as ``has`` (a repository's) finds them."""
    names, position = [], 1
    while has(stack_name(name, position)):
        names.append(stack_name(name, position))
        position += 1
    return names


def checkpoints(limit: int, size: int) -> list[int]:
    """The edit counts to measure after: ``CHECKPOINTS`` below min(limit, size), and that."""
    top = min(limit, size)
    return [c for c in CHECKPOINTS if c < top] + [top]


def edit_sequentially(
    loaded: LoadedModel,
    facts: list[EditFact],
    name: str,
    method: str = "alphaedit",
    settings: EditSettings | None = None,
    on_edit: Callable[[int, Brick], None] | None = None,
    preserve: list[tuple[str, str]] | None = None,
) -> list[Brick]:
    """Edit ``facts`` one after another with ``method`` (``EDIT_METHODS``), applying each brick
    before the next fact is solved; the model is left edited. ``on_edit(position, brick)`` runs
    after each edit is applied. ``preserve``: (prompt, subject) pairs whose keys (in the unedited
    model, weighted by ``settings.preserve_weight``) every update keeps in place beside the
    earlier edits' keys (``edit_set.preserve_prompts``; alphaedit only)."""
    check_name(stack_name(name, 1))
    if not facts:
        raise BrickworkError("no facts to edit")
    settings = settings or EditSettings()
    settings.check()
    solver_for = EDIT_METHODS[method].prepare(loaded, settings)
    # The unedited model's key statistics for every edit: the keys the stack must preserve
    # (and the cache is per fingerprint, which every edit changes).
    covs = covariances(loaded, facts, settings)
    # the preserved prompts' keys, then the edited layer's keys of the edits so far
    earlier = [preserved_keys(loaded, settings, preserve)] if preserve else []
    bricks: list[Brick] = []
    try:
        for position, fact in enumerate(facts, 1):
            solver = solver_for(torch.cat(earlier, 1) if earlier else None)
            started = time.perf_counter()
            brick = edit(
                loaded,
                [fact],
                stack_name(name, position),
                settings,
                check=False,
                solver=solver,
                method=method,
                covs=covs,
            )
            apply_edit(loaded, brick)
            brick.metrics["seconds"] = time.perf_counter() - started
            brick.provenance["stack"] = {"name": name, "position": position}
            earlier.append(brick.tensors["keys"].double())
            bricks.append(brick)
            if on_edit is not None:
                on_edit(position, brick)
    except BaseException:
        roll_back(loaded, bricks)  # an interrupted stack leaves the model as it was
        raise
    return bricks


def preserved_keys(
    loaded: LoadedModel, settings: EditSettings, prompts: list[tuple[str, str]]
) -> torch.Tensor:
    """[d_ff, m]: the keys of (prompt, subject) ``prompts`` at the edited layer, scaled so that
    the update's squared error on them weighs ``settings.preserve_weight`` each."""
    keys = [fact_key(loaded, settings.layer, p, s) for p, s in prompts]
    return torch.stack(keys, 1).double() * settings.preserve_weight**0.5


def roll_back(loaded: LoadedModel, bricks: list[Brick], last: int | None = None) -> None:
    """Undo the stack's last ``last`` edits (all when None), newest first."""
    if last is not None and not 1 <= last <= len(bricks):
        raise BrickworkError(f"can roll back 1 to {len(bricks)} edits of the stack, not {last}")
    for brick in reversed(bricks[len(bricks) - (last or len(bricks)) :]):
        rollback(loaded, brick)


def apply_stack(loaded: LoadedModel, bricks: list[Brick]) -> None:
    """Apply the stack's bricks in order (each checks the weights it expects)."""
    for brick in bricks:
        apply_edit(loaded, brick)
