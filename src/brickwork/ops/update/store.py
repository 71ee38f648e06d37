"""Edits as delta bricks: apply one to a model, and roll it back bit-identically.

A delta brick is a ``layer`` brick with ``spec["update"]`` set. It holds the edited projection's
weight as it was (``before``, in the module's own layout) and the low-rank change as factors
``u`` [d_model, n] and ``v`` [n, d_ff] (``down_weight`` orientation). Applying computes
before + u @ v in float64 and rounds once; rolling back copies ``before`` back, so the weights
are bit-identical to the base model's again. Both check the model's fingerprint first.
"""

from __future__ import annotations

import torch

from brickwork.bricks.brick import Brick
from brickwork.errors import BrickworkError
from brickwork.models.load import LoadedModel, fingerprint
from brickwork.ops.update.common import check_base, down_module


def edited_weight(loaded: LoadedModel, brick: Brick) -> torch.Tensor:
    """The projection's weight with the brick's change, in the module's layout."""
    before = brick.tensors["before"]
    change = brick.tensors["u"].double() @ brick.tensors["v"].double()
    if loaded.family.conv1d:
        change = change.T
    return (before.double() + change).to(before.dtype)


def delta_brick(
    loaded: LoadedModel,
    name: str,
    layer: int,
    u: torch.Tensor,
    v: torch.Tensor,
    update: str,
    facts: list[dict],
    provenance: dict,
    metrics: dict | None = None,
) -> Brick:
    """A delta brick for ``loaded`` as it is now; records the fingerprint the edit leads to."""
    weight = down_module(loaded, layer).weight
    before = weight.detach().clone()
    spec = {
        "update": update,
        "layer": layer,
        "rank": int(u.shape[1]),
        "facts": [
            {k: f[k] for k in ("prompt", "subject", "target_new", "keep") if k in f} for f in facts
        ],
    }
    brick = Brick(
        name,
        "layer",
        "emergent",
        "knowledge edit",
        loaded.fingerprint,
        tensors={"before": before, "u": u.float().contiguous(), "v": v.float().contiguous()},
        spec=spec,
        provenance=provenance,
        metrics=metrics or {},
        description="; ".join(f"{f['prompt']} -> {f['target_new']}" for f in facts),
    )
    with torch.no_grad():
        weight.copy_(edited_weight(loaded, brick))
        try:
            brick.spec["result_fingerprint"] = fingerprint(loaded.model)
        finally:
            weight.copy_(before)
    return brick


def _check_delta(brick: Brick) -> None:
    if brick.kind != "layer" or brick.spec.get("update") not in ("rank_one", "batch"):
        raise BrickworkError(f"brick {brick.name!r} is not an edit (delta) brick")


def apply_edit(loaded: LoadedModel, brick: Brick) -> None:
    """Write the edit into ``loaded``'s weights (in place) and update its fingerprint."""
    _check_delta(brick)
    check_base(loaded, brick.base_model, f"edit brick {brick.name!r}")
    weight = down_module(loaded, brick.spec["layer"]).weight
    if not torch.equal(weight.detach(), brick.tensors["before"]):
        raise BrickworkError(
            f"layer {brick.spec['layer']} does not hold the weights this edit expects"
        )
    with torch.no_grad():
        weight.copy_(edited_weight(loaded, brick))
    loaded.fingerprint = fingerprint(loaded.model)


def rollback(loaded: LoadedModel, brick: Brick) -> None:
    """Undo ``brick`` (it must be the last edit applied): the weights become bit-identical to
    the ones it was made on, and so does the fingerprint."""
    _check_delta(brick)
    expected = brick.spec.get("result_fingerprint")
    if loaded.fingerprint != expected:
        raise BrickworkError(
            f"cannot roll back {brick.name!r}: the model ({loaded.fingerprint}) is not the one "
            f"this edit produced ({expected}); roll back later edits first"
        )
    with torch.no_grad():
        down_module(loaded, brick.spec["layer"]).weight.copy_(brick.tensors["before"])
    loaded.fingerprint = fingerprint(loaded.model)
    if loaded.fingerprint != brick.base_model:  # cannot happen unless other weights changed
        raise BrickworkError("rollback restored the layer but the model differs from the base")
