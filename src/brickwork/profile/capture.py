"""Neuron capture: the input of each layer's FFN output projection, via forward pre-hooks.

That input is the activation of every FFN neuron (paper §4.1) for gated and plain FFNs alike:
act(gate(x)) * up(x), or act(fc(x)) for GPT-2. Hooks are removed on exit, even on exceptions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from brickwork.models.families import Family
from brickwork.models.hooks import hooks

ActivationCallback = Callable[[int, torch.Tensor], None]


@contextmanager
def capture_activations(
    model: nn.Module, family: Family, callback: ActivationCallback
) -> Iterator[None]:
    """Call ``callback(layer_index, activation[B, T, d_ff])`` on every FFN forward pass."""
    layers = family.layer_modules(model)
    specs = [
        (family.down_proj(m), "forward_pre", _pre_hook(i, callback)) for i, m in enumerate(layers)
    ]
    with hooks(specs):
        yield


def _pre_hook(index: int, callback: ActivationCallback):
    def hook(module: nn.Module, args: tuple) -> None:
        callback(index, args[0].detach())

    return hook


def record_activations(
    model: nn.Module, family: Family, **inputs: torch.Tensor
) -> list[torch.Tensor]:
    """Run one forward pass and return every layer's activations (for small inputs and tests)."""
    recorded: dict[int, torch.Tensor] = {}
    with torch.no_grad(), capture_activations(model, family, recorded.__setitem__):
        model(**inputs)
    return [recorded[i] for i in sorted(recorded)]


def down_projection_norms(model: nn.Module, family: Family) -> torch.Tensor:
    """‖W_O[:, i]‖₂ for every layer and neuron, as a float32 [layers, d_ff] tensor on the CPU
    (the layers may live on different devices)."""
    layers = family.layer_modules(model)
    norms = [family.down_weight(layer).detach().float().norm(dim=0).cpu() for layer in layers]
    return torch.stack(norms)
