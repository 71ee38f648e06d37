"""An FFN's weights as neurons, independent of the family's layout (Linear or GPT-2 Conv1D).

``read_ffn`` gives every input projection as [d_ff, d_model] rows and the output projection as
[d_model, d_ff] columns (neuron i is row i / column i); ``build_ffn`` makes a new FFN module of
any width from such weights. Width growth, expert slicing and reloading all go through these two.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from brickwork.models.families import Family


@dataclass
class FfnWeights:
    inputs: dict[str, torch.Tensor]  # projection name -> [d_ff, d_model]
    input_biases: dict[str, torch.Tensor | None]  # projection name -> [d_ff] or None
    down: torch.Tensor  # [d_model, d_ff]
    down_bias: torch.Tensor | None  # [d_model] or None

    @property
    def width(self) -> int:
        return self.down.shape[1]

    def select(self, index: torch.Tensor) -> FfnWeights:
        """The neurons at ``index`` (in that order)."""
        return FfnWeights(
            {k: w[index] for k, w in self.inputs.items()},
            {k: None if b is None else b[index] for k, b in self.input_biases.items()},
            self.down[:, index],
            self.down_bias,
        )

    def append(self, other: FfnWeights) -> FfnWeights:
        """These neurons followed by ``other``'s (the down bias is this one's)."""
        return FfnWeights(
            {k: torch.cat([w, other.inputs[k]]) for k, w in self.inputs.items()},
            {
                k: None if b is None else torch.cat([b, other.input_biases[k]])
                for k, b in self.input_biases.items()
            },
            torch.cat([self.down, other.down], dim=1),
            self.down_bias,
        )


def input_names(family: Family) -> list[str]:
    return [name for name in (family.gate, family.up) if name]


def _matrix(family: Family, projection: nn.Module) -> torch.Tensor:
    """The weight as [out, in], whatever the module's own layout."""
    weight = projection.weight.detach()
    return weight.t() if family.conv1d else weight


def _bias(projection: nn.Module) -> torch.Tensor | None:
    bias = getattr(projection, "bias", None)
    return None if bias is None else bias.detach()


def read_ffn(family: Family, mlp: nn.Module) -> FfnWeights:
    """A copy of ``mlp``'s weights as neurons."""
    inputs = {n: _matrix(family, getattr(mlp, n)).clone() for n in input_names(family)}
    biases = {n: _bias(getattr(mlp, n)) for n in input_names(family)}
    down = getattr(mlp, family.down)
    return FfnWeights(
        inputs,
        {n: None if b is None else b.clone() for n, b in biases.items()},
        _matrix(family, down).clone(),
        None if _bias(down) is None else _bias(down).clone(),
    )


def _projection(family: Family, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """A new projection holding ``weight`` [out, in] and ``bias``."""
    d_out, d_in = weight.shape
    module = family.new_projection(d_in, d_out, bias is not None)
    with torch.no_grad():
        module.weight.copy_(weight.t() if family.conv1d else weight)
        if module.bias is not None:
            module.bias.copy_(bias if bias is not None else torch.zeros(d_out))
    return module.to(weight.dtype)


def build_ffn(family: Family, template: nn.Module, weights: FfnWeights) -> nn.Module:
    """A copy of ``template`` (activation, dropout, ...) whose projections hold ``weights``."""
    replaced = [*input_names(family), family.down]
    saved = {name: getattr(template, name) for name in replaced}
    try:  # do not deep-copy the template's old projections only to throw them away
        for name in replaced:
            setattr(template, name, nn.Identity())
        mlp = copy.deepcopy(template)
    finally:
        for name, module in saved.items():
            setattr(template, name, module)
    for name in input_names(family):
        setattr(mlp, name, _projection(family, weights.inputs[name], weights.input_biases[name]))
    setattr(mlp, family.down, _projection(family, weights.down, weights.down_bias))
    device = saved[family.down].weight.device
    return mlp.to(device)


def neuron_dims(family: Family) -> dict[str, int]:
    """Parameter name within the FFN -> the dimension that indexes neurons."""
    row, col = (1, 0) if family.conv1d else (0, 1)
    dims = {}
    for name in input_names(family):
        dims[f"{name}.weight"] = row
        dims[f"{name}.bias"] = 0
    dims[f"{family.down}.weight"] = col
    return dims
