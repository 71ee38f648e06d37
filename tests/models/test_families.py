"""Contract tests: every family's paths resolve and its captured activations are the neurons."""

import pytest
import torch
from transformers.activations import ACT2FN

from brickwork import BrickworkError
from brickwork.models import FAMILIES, family_for
from brickwork.profile import capture_activations, record_activations
from tests.tiny import TINY_CONFIGS, build_tiny_model

FAMILY_NAMES = sorted(FAMILIES)


def test_every_family_has_a_tiny_config():
    assert set(TINY_CONFIGS) == set(FAMILIES)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_paths_resolve(name):
    model = build_tiny_model(name)
    family = family_for(model.config)
    layers = family.layer_modules(model)
    assert len(layers) == 2
    d_ff = family.d_ff(model.config)
    assert d_ff == 64
    assert family.down_weight(layers[0]).shape == (32, d_ff)
    assert family.activation_name(model.config) in ACT2FN


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_capture_is_the_ffn_output_projection_input(name):
    model = build_tiny_model(name)
    family = family_for(model.config)
    ffn_inputs = {}
    handles = [
        family.ffn(layer).register_forward_pre_hook(
            lambda m, args, i=i: ffn_inputs.__setitem__(i, args[0])
        )
        for i, layer in enumerate(family.layer_modules(model))
    ]
    input_ids = torch.randint(0, 256, (3, 7))
    captured = record_activations(model, family, input_ids=input_ids)
    for handle in handles:
        handle.remove()
    act = ACT2FN[family.activation_name(model.config)]
    for i, layer in enumerate(family.layer_modules(model)):
        assert captured[i].shape == (3, 7, 64)
        ffn, x = family.ffn(layer), ffn_inputs[i]
        with torch.no_grad():
            if family.gate is None:
                manual = act(getattr(ffn, family.up)(x))
            else:
                manual = act(getattr(ffn, family.gate)(x)) * getattr(ffn, family.up)(x)
        torch.testing.assert_close(captured[i], manual)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_hooks_are_removed_after_use_and_after_errors(name):
    model = build_tiny_model(name)
    family = family_for(model.config)
    downs = [family.down_proj(layer) for layer in family.layer_modules(model)]
    record_activations(model, family, input_ids=torch.randint(0, 256, (1, 4)))
    assert all(not d._forward_pre_hooks for d in downs)
    with pytest.raises(RuntimeError, match="boom"), capture_activations(model, family, print):
        assert all(len(d._forward_pre_hooks) == 1 for d in downs)
        raise RuntimeError("boom")
    assert all(not d._forward_pre_hooks for d in downs)


def test_unsupported_family_names_the_supported_ones():
    class Config:
        model_type = "bert"

    with pytest.raises(BrickworkError, match="unsupported model family 'bert'.*gpt2.*llama"):
        family_for(Config())
