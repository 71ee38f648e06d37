"""MoEFFN for every family: neuron-group experts with every expert on equal the dense FFN
(sum and softmax mixing), the decode path equals the prefill path, and bad settings are refused."""

from __future__ import annotations

import pytest
import torch
from transformers.activations import ACT2FN

from brickwork.errors import BrickworkError
from brickwork.models.experts import MoEFFN, centroid_router, group_experts, zero_router
from brickwork.models.families import family_for
from brickwork.models.ffn import ffn_width
from tests.tiny import TINY_CONFIGS, build_tiny_model

GROUPS = torch.randperm(64, generator=torch.Generator().manual_seed(0)) % 4


@pytest.fixture(scope="module", params=sorted(TINY_CONFIGS))
def ffn(request):
    model = build_tiny_model(request.param)
    family = family_for(model.config)
    mlp = family.ffn(family.layer_modules(model)[0])
    x = torch.randn(2, 5, model.config.hidden_size, generator=torch.Generator().manual_seed(1))
    return family, mlp, ACT2FN[family.activation_name(model.config)], x


def run(module, x):
    with torch.no_grad():
        return module(x)


def summed(family, mlp, act, top_k, scoring="linear"):
    experts = group_experts(family, mlp, GROUPS, 4)
    router = centroid_router(family, experts)
    return MoEFFN(family, experts, router, top_k, mix="sum", scoring=scoring, act=act)


def test_groups_partition_the_neurons(ffn):
    family, mlp, _, _ = ffn
    experts = group_experts(family, mlp, GROUPS, 4)
    assert [ffn_width(family, e) for e in experts] == [16, 16, 16, 16]


@pytest.mark.parametrize("scoring", ["linear", "oracle", "random"])
def test_sum_of_all_groups_is_the_dense_ffn(ffn, scoring):
    family, mlp, act, x = ffn
    moe = summed(family, mlp, act, 4, scoring)
    torch.testing.assert_close(run(moe, x), run(mlp, x), rtol=1e-5, atol=1e-6)


def test_softmax_mix_with_zero_router_is_the_dense_ffn(ffn):
    family, mlp, _, x = ffn
    experts = group_experts(family, mlp, GROUPS, 4)
    moe = MoEFFN(family, experts, zero_router(family, experts), 4, scale=4.0)
    assert torch.count_nonzero(moe.router.weight) == 0
    torch.testing.assert_close(run(moe, x), run(mlp, x), rtol=1e-5, atol=1e-6)


def test_decode_path_equals_prefill_path(ffn):
    family, mlp, act, x = ffn
    moe = summed(family, mlp, act, 2)
    prefill = run(moe, x)
    for t in range(x.shape[1]):  # one token at a time: the gathered-weights path
        torch.testing.assert_close(run(moe, x[:1, t : t + 1]), prefill[:1, t : t + 1])
    assert not torch.allclose(prefill, run(mlp, x), atol=1e-4)  # two of four groups: sparse


def test_bad_settings_are_refused(ffn):
    family, mlp, act, _ = ffn
    experts = group_experts(family, mlp, GROUPS, 4)
    router = zero_router(family, experts)
    with pytest.raises(BrickworkError, match="mix"):
        MoEFFN(family, experts, router, 2, mix="max")
    with pytest.raises(BrickworkError, match="activation"):
        MoEFFN(family, experts, router, 2, mix="sum")
    with pytest.raises(BrickworkError, match="group assignment"):
        group_experts(family, mlp, GROUPS[:10], 4)
    with pytest.raises(BrickworkError, match="empty"):
        group_experts(family, mlp, GROUPS % 3, 4)
