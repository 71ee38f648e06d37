"""Masking neurons in place: forward pre-hooks that edit the input of each FFN output projection.

Both context managers remove their hooks on exit, so the model is exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from brickwork.models.hooks import hooks
from brickwork.models.load import LoadedModel

Edit = Callable[[int, torch.Tensor], torch.Tensor]


@contextmanager
def edit_activations(loaded: LoadedModel, edit: Edit) -> Iterator[None]:
    """Replace every layer's activations a [B, T, d_ff] by ``edit(layer, a)`` while inside."""
    specs = [
        (loaded.family.down_proj(layer), "forward_pre", lambda m, a, i=i: (edit(i, a[0]), *a[1:]))
        for i, layer in enumerate(loaded.family.layer_modules(loaded.model))
    ]
    with hooks(specs):
        yield


def zero_neurons(loaded: LoadedModel, mask: torch.Tensor):
    """Zero the activations of the neurons where ``mask`` [L, d_ff] is True."""
    keep = (~mask).to(loaded.device, loaded.model.dtype)
    return edit_activations(loaded, lambda i, a: a * keep[i].to(a.device))


def mask_lowest(loaded: LoadedModel, ratio: float, down_norms: torch.Tensor | None = None):
    """For every token and layer, zero the ``ratio`` share of neurons with the lowest indicator.

    The indicator is |activation|, or the output magnitude |a_i|·‖W_O[:, i]‖ when
    ``down_norms`` [L, d_ff] is given.
    """

    def edit(layer: int, a: torch.Tensor) -> torch.Tensor:
        k = int(round(ratio * a.shape[-1]))
        if k == 0:
            return a
        indicator = a.abs() if down_norms is None else a.abs() * down_norms[layer].to(a.device)
        # Masks the k lowest (more only on exact ties with the k-th value).
        threshold = indicator.kthvalue(k, dim=-1, keepdim=True).values
        return a * (indicator > threshold)

    return edit_activations(loaded, edit)
