"""The one check of layer indices a caller gives (decoder layers or hidden-state indices)."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

from brickwork.errors import BrickworkError


def check_layers(
    layers: Sequence[int],
    n_layers: int,
    what: str = "layer",
    *,
    hidden_states: bool = False,
    unique: bool = False,
) -> list[int]:
    """``layers`` as a list, or a clear error when it is empty, an index is out of range, or
    (with ``unique``) an index repeats.

    Decoder layers are 0..n_layers-1. With ``hidden_states`` the indices are those of
    ``output_hidden_states``: 0..n_layers (0 the embeddings, n_layers the final normed state),
    or negative from the end (-1 is n_layers).
    """
    if not layers:
        raise BrickworkError(f"give at least one {what} index")
    low, high = (-n_layers - 1, n_layers) if hidden_states else (0, n_layers - 1)
    bad = [i for i in layers if not isinstance(i, Integral) or not low <= i <= high]
    if bad:
        span = f"hidden states 0..{n_layers}, or -1 for the last" if hidden_states else f"0..{high}"
        raise BrickworkError(
            f"{what} index {bad[0]} is out of range: the model has {n_layers} layers ({span})"
        )
    if unique and len(set(layers)) != len(layers):
        raise BrickworkError(f"{what} indices must not repeat: {list(layers)}")
    return list(layers)
