"""Edits as delta bricks: apply one to a model, and roll it back bit-identically.

A delta brick (kind ``delta``, update ``rank_one`` or ``batch``) holds the edited projection's
weight as it was (``before``, in the module's own layout) and the low-rank change as factors
``u`` [d_model, n] and ``v`` [n, d_ff] (``down_weight`` orientation), for ``spec["layer"]``; an
edit that also changes other layers (``spec["more_layers"]``, e.g. the initial layer of a
subject at position 0) holds ``before@L``, ``u@L`` and ``v@L`` for each. Applying computes
before + u @ v in float64 and rounds once; rolling back copies ``before`` back, so the weights
are bit-identical to the base model's again. Both check the model's fingerprint first.
"""

from __future__ import annotations

import torch

import brickwork
from brickwork.bricks.brick import Brick
from brickwork.bricks.specs import EDIT_UPDATES, DeltaSpec
from brickwork.data.edits import EditFact
from brickwork.errors import BrickworkError
from brickwork.models.ffn import stored_layout
from brickwork.models.load import LoadedModel, fingerprint
from brickwork.ops.update.common import down_module
from brickwork.ops.update.rome import EditSettings


def _suffix(main: int, layer: int) -> str:
    """The tensor-name suffix of ``layer`` in an edit whose main layer is ``main``."""
    return "" if layer == main else f"@{layer}"


def _name(brick: Brick, tensor: str, layer: int) -> str:
    """The name of the brick's ``tensor`` ("before", "u" or "v") for ``layer``."""
    return tensor + _suffix(brick.spec.layer, layer)


def layers(brick: Brick) -> list[int]:
    """The layers an edit brick changes, its main layer first."""
    return [brick.spec.layer, *(brick.spec.more_layers or [])]


def edited_weight(loaded: LoadedModel, brick: Brick, layer: int) -> torch.Tensor:
    """The projection's weight at ``layer`` with the brick's change, in the module's layout."""
    before = brick.tensors[_name(brick, "before", layer)]
    change = (
        brick.tensors[_name(brick, "u", layer)].double()
        @ brick.tensors[_name(brick, "v", layer)].double()
    )
    return (before.double() + stored_layout(loaded.family, change)).to(before.dtype)


def write_weights(loaded: LoadedModel, brick: Brick, edited: bool) -> None:
    """Write the brick's edited weights (or its ``before`` weights) into every layer it changes;
    no checks, no fingerprint (``apply_edit`` and ``rollback`` do those)."""
    with torch.no_grad():
        for layer in layers(brick):
            weight = down_module(loaded, layer).weight
            before = brick.tensors[_name(brick, "before", layer)]
            weight.copy_(edited_weight(loaded, brick, layer) if edited else before)


def edit_provenance(loaded: LoadedModel, method: str, settings: EditSettings) -> dict:
    """How an edit brick (``edit``, ``inject``) was made: method, ``EditSettings``, base model."""
    return {
        "method": method,
        "settings": settings.to_json(),
        "base_model_source": loaded.source,
        "brickwork_version": brickwork.__version__,
    }


def facts_description(facts: list[EditFact]) -> str:
    """An edit brick's description: its facts as ``prompt -> target_new``."""
    return "; ".join(f"{f.prompt} -> {f.target_new}" for f in facts)


def delta_brick(
    loaded: LoadedModel,
    name: str,
    updates: dict[int, tuple[torch.Tensor, torch.Tensor]],
    update: str,
    facts: list[EditFact],
    provenance: dict,
    metrics: dict | None = None,
) -> Brick:
    """A delta brick for ``loaded`` as it is now, from ``updates`` {layer: (u, v)} (the main
    layer first); records the fingerprint the edit leads to."""
    main, *more = updates
    tensors = {}
    for layer, (u, v) in updates.items():
        _check_change(u, v, layer)
        end = _suffix(main, layer)
        tensors["before" + end] = down_module(loaded, layer).weight.detach().clone()
        tensors["u" + end] = u.float().contiguous()
        tensors["v" + end] = v.float().contiguous()
    spec = DeltaSpec(
        update=update,
        layer=main,
        rank=int(updates[main][0].shape[1]),
        facts=[
            {
                k: v
                for k, v in f.to_dict().items()
                if k in ("prompt", "subject", "target_new", "keep")
            }
            for f in facts
        ],
        more_layers=more or None,
    )
    brick = Brick(
        name,
        "delta",
        "emergent",
        "knowledge edit",
        loaded.fingerprint,
        tensors=tensors,
        spec=spec,
        provenance=provenance,
        metrics=metrics or {},
        description=facts_description(facts),
    )
    write_weights(loaded, brick, edited=True)
    try:
        brick.spec.result_fingerprint = fingerprint(loaded.model)
    finally:
        write_weights(loaded, brick, edited=False)
    return brick


def _check_change(u: torch.Tensor, v: torch.Tensor, layer: int) -> None:
    """Refuse a change that is not finite or is empty (no edit would be a silent no-op)."""
    change = u.double() @ v.double()
    if not torch.isfinite(change).all():
        raise BrickworkError(
            f"the edit of layer {layer} is not finite (NaN or infinite); nothing was saved "
            f"(a corrupt statistics cache? it is re-created when deleted)"
        )
    if not change.abs().max() > 0:
        raise BrickworkError(f"the edit of layer {layer} changes nothing (rank 0); nothing saved")


def _check_delta(brick: Brick) -> None:
    if brick.kind != "delta" or brick.spec.update not in EDIT_UPDATES:
        raise BrickworkError(f"brick {brick.name!r} is not an edit (delta) brick")
    for layer in layers(brick):
        for name in ("before", "u", "v"):
            if _name(brick, name, layer) not in brick.tensors:
                raise BrickworkError(
                    f"edit brick {brick.name!r} lacks its {name!r} tensor for layer {layer}"
                )


def apply_edit(loaded: LoadedModel, brick: Brick) -> None:
    """Write the edit into ``loaded``'s weights (in place) and update its fingerprint."""
    _check_delta(brick)
    loaded.require_base(brick.base_model, f"edit brick {brick.name!r}")
    for layer in layers(brick):
        weight = down_module(loaded, layer).weight
        if not torch.equal(weight.detach(), brick.tensors[_name(brick, "before", layer)]):
            raise BrickworkError(f"layer {layer} does not hold the weights this edit expects")
    write_weights(loaded, brick, edited=True)
    loaded.fingerprint = fingerprint(loaded.model)


def rollback(loaded: LoadedModel, brick: Brick) -> None:
    """Undo ``brick`` (it must be the last edit applied): the weights become bit-identical to
    the ones it was made on, and so does the fingerprint."""
    _check_delta(brick)
    expected = brick.spec.result_fingerprint
    if loaded.fingerprint != expected:
        raise BrickworkError(
            f"cannot roll back {brick.name!r}: the model ({loaded.fingerprint}) is not the one "
            f"this edit produced ({expected}); roll back later edits first"
        )
    write_weights(loaded, brick, edited=False)
    loaded.fingerprint = fingerprint(loaded.model)
    # Fails only when weights outside the edited layer changed since the edit.
    loaded.require_base(brick.base_model, f"edit brick {brick.name!r} (rolled back)")
