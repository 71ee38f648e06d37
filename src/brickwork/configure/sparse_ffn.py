"""A gathered sparse FFN for decode (batch 1, one token): reads only the active weights.

``SparseFfn`` replaces a gated FFN module (gate/up/down Linear, no biases) while inside
``sparse_decode``. On one token it computes:

- ``cats``: g = act(gate x) densely; the active neurons i (|g_i| >= t) gather their rows of up
  (``index_select``) and their rows of the pre-transposed down (``embedding_bag`` with weights
  a_i: sum_i a_i W_down^T[i], no copy);
- ``teal``: the active input dimensions j (|x_j| >= t_in) gather rows of the pre-transposed
  gate and up (``embedding_bag``); the active neurons (|a_i| >= t_mid) rows of W_down^T.

Any other shape (prefill, batches) runs the dense FFN with the same masks, so the module always
equals the hook-masked model (``token_sparsity.apply_sparsity``). Whether the gathered path is
faster than a dense matrix-vector product on a given CPU is measured, not assumed
(benchmarks/token_sparsity.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.functional import embedding_bag, linear

from brickwork.configure.token_sparsity import TokenSparsity, activation
from brickwork.errors import BrickworkError
from brickwork.models.ffn import down_matrix, input_matrix
from brickwork.models.load import LoadedModel


class SparseFfn(nn.Module):
    def __init__(self, loaded: LoadedModel, mlp: nn.Module, sparsity: TokenSparsity, layer: int):
        super().__init__()
        family = loaded.family
        if family.gate is None:
            raise BrickworkError("the gathered sparse FFN needs a gated FFN")
        if any(
            getattr(getattr(mlp, n), "bias", None) is not None
            for n in (family.gate, family.up, family.down)
        ):
            raise BrickworkError("the gathered sparse FFN needs projections without biases")
        if sparsity.method not in ("teal", "cats"):
            raise BrickworkError(f"no gathered kernel for {sparsity.method!r}; use teal or cats")
        self.method, self.act = sparsity.method, activation(loaded)
        self.t = {k: float(v[layer]) for k, v in sparsity.thresholds.items()}
        gate, up = (input_matrix(family, mlp, n).detach() for n in (family.gate, family.up))
        down = down_matrix(family, mlp).detach()
        self.down_t = down.t().contiguous()  # [d_ff, d_model]: row i is neuron i's output
        if self.method == "cats":
            self.gate, self.up = gate, up  # [d_ff, d_model]: rows gathered per neuron
        else:
            self.gate_t, self.up_t = gate.t().contiguous(), up.t().contiguous()  # [d_model, d_ff]

    def _mask(self, value: torch.Tensor, site: str) -> torch.Tensor:
        return torch.where(value.abs() >= self.t[site], value, torch.zeros((), dtype=value.dtype))

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        """The masked dense FFN (any shape): what the hooks compute."""
        if self.method == "cats":
            g = self.act(linear(x, self.gate))
            a = self._mask(g, "gate") * linear(x, self.up)
        else:
            x = self._mask(x, "input")
            a = self._mask(self.act(linear(x, self.gate_t.t())) * linear(x, self.up_t.t()), "inter")
        return linear(a, self.down_t.t())

    def gathered(self, x: torch.Tensor) -> torch.Tensor:
        """One token x [d_model]: the same result, reading only the active weights."""
        if self.method == "cats":
            g = self.act(linear(x, self.gate))
            idx = (g.abs() >= self.t["gate"]).nonzero().squeeze(1)
            a = g[idx] * linear(x, self.up.index_select(0, idx))
        else:
            j = (x.abs() >= self.t["input"]).nonzero().squeeze(1)
            xj = x[j].unsqueeze(0)
            g = embedding_bag(j.unsqueeze(0), self.gate_t, per_sample_weights=xj, mode="sum")[0]
            u = embedding_bag(j.unsqueeze(0), self.up_t, per_sample_weights=xj, mode="sum")[0]
            a = self.act(g) * u
            idx = (a.abs() >= self.t["inter"]).nonzero().squeeze(1)
            a = a[idx]
        return embedding_bag(
            idx.unsqueeze(0), self.down_t, per_sample_weights=a.unsqueeze(0), mode="sum"
        )[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[:-1].numel() == 1:
            return self.gathered(x.reshape(-1)).reshape(x.shape)
        return self.dense(x)


@contextmanager
def sparse_decode(loaded: LoadedModel, sparsity: TokenSparsity) -> Iterator[nn.Module]:
    """Swap every layer's FFN for a ``SparseFfn`` while inside (the originals come back on exit)."""
    loaded.require_base(sparsity.base_model, f"the {sparsity.method} thresholds")
    family = loaded.family
    layers = family.layer_modules(loaded.model)
    originals = [family.ffn(layer) for layer in layers]
    try:
        for i, layer in enumerate(layers):
            setattr(layer, family.mlp, SparseFfn(loaded, originals[i], sparsity, i))
        yield loaded.model
    finally:
        for layer, mlp in zip(layers, originals, strict=True):
            setattr(layer, family.mlp, mlp)
