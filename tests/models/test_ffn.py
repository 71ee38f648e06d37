"""Contract tests of models/ffn.py for every family: read -> build round-trips, slicing equals
masking, the neuron axes and matrix views agree with the module's own forward."""

from __future__ import annotations

import copy

import pytest
import torch

from brickwork.models.families import family_for
from brickwork.models.ffn import (
    build_ffn,
    down_matrix,
    ffn_width,
    input_matrix,
    input_names,
    neuron_dims,
    read_ffn,
    slice_ffn,
    stored_layout,
)
from tests.tiny import TINY_CONFIGS, build_tiny_model

FAMILIES = sorted(TINY_CONFIGS)


@pytest.fixture(scope="module", params=FAMILIES)
def ffn(request):
    model = build_tiny_model(request.param)
    family = family_for(model.config)
    mlp = family.ffn(family.layer_modules(model)[1])
    x = torch.randn(2, 5, model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    return family, mlp, x


def run(mlp, x):
    with torch.no_grad():
        return mlp(x)


def test_read_then_build_gives_the_same_ffn(ffn):
    family, mlp, x = ffn
    weights = read_ffn(family, mlp)
    assert weights.width == ffn_width(family, mlp) == 64
    rebuilt = build_ffn(family, mlp, weights)
    assert rebuilt is not mlp and type(rebuilt) is type(mlp)
    assert torch.equal(run(rebuilt, x), run(mlp, x))


def test_matrices_are_views_in_neuron_orientation(ffn):
    family, mlp, _ = ffn
    hidden = down_matrix(family, mlp).shape[0]
    assert down_matrix(family, mlp).shape == (hidden, 64)
    for name in input_names(family):
        assert input_matrix(family, mlp, name).shape == (64, hidden)
    down = getattr(mlp, family.down).weight
    assert stored_layout(family, down_matrix(family, mlp)).data_ptr() == down.data_ptr()
    assert torch.equal(stored_layout(family, down_matrix(family, mlp)), down)


def test_one_neuron_writes_its_down_column(ffn):
    """Keeping only neuron i, the FFN's output (less the output bias) is a multiple of column i."""
    family, mlp, x = ffn
    weights = read_ffn(family, mlp)
    one = weights.select(torch.tensor([7]))
    bias = 0 if one.down_bias is None else one.down_bias
    out = run(build_ffn(family, mlp, one), x) - bias
    column = weights.down[:, 7]
    coefficient = out @ column / column.dot(column)
    torch.testing.assert_close(out, coefficient.unsqueeze(-1) * column, rtol=1e-4, atol=1e-5)


def test_slicing_equals_masking_the_other_neurons(ffn):
    family, mlp, x = ffn
    keep = torch.tensor([1, 4, 5, 20, 33, 63])
    sliced = copy.deepcopy(mlp)
    slice_ffn(family, sliced, keep)
    assert ffn_width(family, sliced) == len(keep)
    masked = read_ffn(family, mlp)
    dropped = torch.ones(masked.width, dtype=torch.bool)
    dropped[keep] = False
    masked.down[:, dropped] = 0  # a zero output column: the neuron contributes nothing
    expected = run(build_ffn(family, mlp, masked), x)
    torch.testing.assert_close(run(sliced, x), expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(read_ffn(family, sliced).down, read_ffn(family, mlp).down[:, keep])


def test_slicing_all_neurons_is_the_dense_ffn_and_leaves_the_original(ffn):
    family, mlp, x = ffn
    before = {k: v.clone() for k, v in mlp.state_dict().items()}
    shared = copy.deepcopy(mlp, {id(p): p for p in mlp.parameters()})  # shares the weights
    slice_ffn(family, shared, torch.arange(64))
    assert torch.equal(run(shared, x), run(mlp, x))
    slice_ffn(family, shared, torch.tensor([3, 2]))
    assert all(torch.equal(before[k], v) for k, v in mlp.state_dict().items())


def test_neuron_dims_index_the_neurons(ffn):
    family, mlp, _ = ffn
    keep = torch.tensor([0, 9, 40])
    part = read_ffn(family, mlp).select(keep)
    params = dict(mlp.named_parameters())
    dims = neuron_dims(family)
    assert {n for n in dims if n.endswith(".weight")} <= set(params)  # biases: where present
    for name in input_names(family):
        stored = params[f"{name}.weight"].detach().index_select(dims[f"{name}.weight"], keep)
        assert torch.equal(family.as_matrix(stored), part.inputs[name])
    down = f"{family.down}.weight"
    stored = params[down].detach().index_select(dims[down], keep)
    assert torch.equal(family.as_matrix(stored), part.down)
