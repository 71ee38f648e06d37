"""An FFN's weights as neurons, independent of the family's layout (Linear or GPT-2 Conv1D).

Neuron i is row i of every input projection ([d_ff, d_model], the gate and up projections) and
column i of the output projection ([d_model, d_ff]). ``input_matrix`` and ``down_matrix`` view a
module's weights that way; ``read_ffn`` copies them out and ``build_ffn`` makes a new FFN module
of any width from such weights (width growth, experts, reloading); ``slice_ffn`` keeps a subset
of the neurons in place (compact models). Nothing outside ``brickwork.models`` needs to know how
a family stores its projections.
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
    """The FFN's input projections: gate then up, or (ungated) the input projection alone."""
    return [name for name in (family.gate, family.up) if name]


def input_matrix(family: Family, mlp: nn.Module, name: str) -> torch.Tensor:
    """Input projection ``name``'s weight viewed as [d_ff, d_model] (row i feeds neuron i)."""
    return family.as_matrix(getattr(mlp, name).weight)


def down_matrix(family: Family, mlp: nn.Module) -> torch.Tensor:
    """The output projection's weight viewed as [d_model, d_ff] (column i is neuron i's output)."""
    return family.as_matrix(getattr(mlp, family.down).weight)


def stored_layout(family: Family, matrix: torch.Tensor) -> torch.Tensor:
    """An [out, in] matrix (e.g. a change to ``down_matrix``) in the projection's stored layout."""
    return family.as_matrix(matrix)


def ffn_width(family: Family, mlp: nn.Module) -> int:
    """The number of neurons of a plain FFN module."""
    return down_matrix(family, mlp).shape[1]


def _bias(projection: nn.Module) -> torch.Tensor | None:
    bias = getattr(projection, "bias", None)
    return None if bias is None else bias.detach()


def read_ffn(family: Family, mlp: nn.Module) -> FfnWeights:
    """A copy of ``mlp``'s weights as neurons."""
    inputs = {n: input_matrix(family, mlp, n).detach().clone() for n in input_names(family)}
    biases = {n: _bias(getattr(mlp, n)) for n in input_names(family)}
    down = getattr(mlp, family.down)
    return FfnWeights(
        inputs,
        {n: None if b is None else b.clone() for n, b in biases.items()},
        down_matrix(family, mlp).detach().clone(),
        None if _bias(down) is None else _bias(down).clone(),
    )


def _projection(family: Family, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """A new projection holding ``weight`` [out, in] and ``bias``."""
    d_out, d_in = weight.shape
    module = family.new_projection(d_in, d_out, bias is not None)
    with torch.no_grad():
        module.weight.copy_(stored_layout(family, weight))
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


def slice_ffn(family: Family, mlp: nn.Module, index: torch.Tensor) -> None:
    """Keep only the neurons at ``index`` in ``mlp``'s projections, in place.

    The projections get new frozen weight tensors (the old ones are not written to), so the FFN
    of a structural copy that shares its parameters with a model can be sliced safely.
    """
    dims = neuron_dims(family)
    for name in input_names(family):
        module = getattr(mlp, name)
        _set_weight(module, module.weight.index_select(dims[f"{name}.weight"], index))
        if getattr(module, "bias", None) is not None:
            module.bias = nn.Parameter(
                module.bias.detach().index_select(0, index).clone(), requires_grad=False
            )
        _set_width(module, len(index), output=True)
    down = getattr(mlp, family.down)
    _set_weight(down, down.weight.index_select(dims[f"{family.down}.weight"], index))
    _set_width(down, len(index), output=False)


def _set_weight(module: nn.Module, weight: torch.Tensor) -> None:
    module.weight = nn.Parameter(weight.detach().clone().contiguous(), requires_grad=False)


def _set_width(module: nn.Module, width: int, output: bool) -> None:
    """Keep the module's recorded sizes true (Conv1D's forward uses ``nf``)."""
    if isinstance(module, nn.Linear):
        setattr(module, "out_features" if output else "in_features", width)
    elif hasattr(module, "nf") and output:
        module.nf = width
    elif hasattr(module, "nx") and not output:
        module.nx = width
