"""The contract every registered brick kind keeps, on every tiny family (PEFT's common tester,
run as kind x family): save then load round-trips bit-exactly; attaching and detaching leaves the
logits exactly as they were; a brick built for another base model is refused.

A new kind needs one builder in BUILDERS (the coverage test fails until it has one).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import pytest
import torch
from peft import LoraConfig, get_peft_model

from brickwork import BrickworkError
from brickwork.bricks import (
    Brick,
    attach,
    brick_kind,
    kind_names,
    layer_brick,
    load_brick,
    lora_brick_from_peft,
    model_brick,
    neuron_group_brick,
    neuron_set_brick,
    save_brick,
    steering_brick,
)
from brickwork.bricks.vocabulary import vocabulary_brick
from brickwork.data.edits import EditFact
from brickwork.models.families import family_for
from brickwork.models.load import LoadedModel, fingerprint
from brickwork.ops.grow.store import grown_brick
from brickwork.ops.grow.width import grow_width
from brickwork.ops.update.locate import causal_trace
from brickwork.ops.update.store import delta_brick
from tests.tiny import TINY_CONFIGS, build_tiny_model, tiny_tokenizer

FAMILIES = tuple(TINY_CONFIGS)
FACT = {"prompt": "The Eiffel Tower is in", "subject": "Eiffel Tower", "target_new": "Rome"}


def _sizes(loaded: LoadedModel) -> tuple[int, int, int]:
    config = loaded.model.config
    layers = len(loaded.family.layer_modules(loaded.model))
    return layers, loaded.family.d_ff(config), int(config.hidden_size)


def _random(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _neuron_set(loaded: LoadedModel) -> Brick:
    layers, d_ff, _ = _sizes(loaded)
    mask = torch.zeros(layers, d_ff, dtype=torch.bool)
    mask[:, : d_ff // 8] = True
    return neuron_set_brick("set", "coding", loaded.fingerprint, mask, rule="first eighth")


def _neuron_group(loaded: LoadedModel) -> Brick:
    d_ff = _sizes(loaded)[1]
    return neuron_group_brick("groups", loaded.fingerprint, 0, torch.arange(d_ff) % 4, "test")


def _layer(loaded: LoadedModel) -> Brick:
    layer = loaded.family.layer_modules(loaded.model)[1]
    return layer_brick("layer-1", "depth", loaded.fingerprint, layer, 1)


def _model(loaded: LoadedModel) -> Brick:
    return model_brick("helper", "math", loaded.fingerprint, "someone/math-model")


def _edit(loaded: LoadedModel, layers: tuple[int, ...], update: str) -> Brick:
    _, d_ff, hidden = _sizes(loaded)
    updates = {i: (_random(hidden, 2, seed=i), _random(2, d_ff, seed=9 + i)) for i in layers}
    fact = EditFact.from_dict(FACT, "test")
    return delta_brick(loaded, "edit", updates, update, [fact], {"method": "test"})


def _inject(loaded: LoadedModel) -> Brick:
    hidden = _sizes(loaded)[2]
    tensors = {
        "keys": _random(2, hidden),
        "thresholds": torch.full((2,), -1.0),  # below any cosine: the neurons always fire
        "scales": torch.ones(2),
        "values": _random(hidden, 2, seed=1),
    }
    spec = {"update": "inject", "layer": 1, "neurons": 2, "facts": [FACT, FACT]}
    return Brick("inj", "delta", "customized", "knowledge", loaded.fingerprint, tensors, spec)


def _trace(loaded: LoadedModel) -> Brick:
    return causal_trace(loaded, FACT["prompt"], FACT["subject"], "Paris", "trace", samples=2)


def _grown(loaded: LoadedModel) -> Brick:
    return grown_brick(grow_width(loaded, [0], 4))


def _steering(loaded: LoadedModel) -> Brick:
    vectors = _random(1, _sizes(loaded)[2])
    return steering_brick("polite", "politeness", loaded.fingerprint, vectors, layers=[1])


def _recovery(loaded: LoadedModel) -> Brick:
    from brickwork.bricks.recovery import RecoverySpec, recovery_brick
    from brickwork.configure.recover import ffn_parameter_names

    params = dict(loaded.model.named_parameters())
    names = ffn_parameter_names(loaded)[:2]
    tensors = {n: params[n].detach() + 0.1 * _random(*params[n].shape, seed=3) for n in names}
    spec = RecoverySpec(dense_model=loaded.fingerprint, mode="ffn", parameters=names, settings={})
    return recovery_brick("recovered", loaded, tensors, spec)


def _vocabulary(loaded: LoadedModel) -> Brick:
    vocab = loaded.model.config.vocab_size
    return vocabulary_brick("words", "writing", loaded.fingerprint, torch.arange(64), vocab, "test")


def _lora(loaded: LoadedModel) -> Brick:
    torch.manual_seed(1)  # init_lora_weights=False: random, non-identity factors
    config = LoraConfig(r=2, target_modules="all-linear", init_lora_weights=False)
    peft_model = get_peft_model(copy.deepcopy(loaded.model), config)
    return lora_brick_from_peft(peft_model, "task", "toy task", loaded.fingerprint)


BUILDERS: dict[str, dict[str, Callable[[LoadedModel], Brick]]] = {
    "neuron_set": {"mask": _neuron_set},
    "neuron_group": {"experts": _neuron_group},
    "layer": {"layer": _layer},
    "model": {"reference": _model},
    "delta": {
        "rank_one": lambda m: _edit(m, (1,), "rank_one"),
        "batch-two-layers": lambda m: _edit(m, (1, 0), "batch"),
        "inject": _inject,
    },
    "trace": {"causal": _trace},
    "grown": {"width": _grown},
    "recovery": {"ffn": _recovery},
    "steering": {"vector": _steering},
    "vocabulary": {"first-64": _vocabulary},
    "lora": {"all-linear": _lora},
}
CASES = [(k, v) for k, variants in BUILDERS.items() for v in variants]
ATTACHING = [(k, v) for k, v in CASES if brick_kind(k).attach is not None]


@pytest.fixture(scope="session")
def tiny_family_models() -> dict[str, LoadedModel]:
    models = {}
    for family in FAMILIES:
        model = build_tiny_model(family)
        models[family] = LoadedModel(
            model, tiny_tokenizer(), family_for(model.config), fingerprint(model), family
        )
    return models


@pytest.fixture(scope="session")
def built(tiny_family_models) -> Callable[[str, str, str], Brick]:
    cache: dict[tuple[str, str, str], Brick] = {}

    def get(kind: str, variant: str, family: str) -> Brick:
        if (kind, variant, family) not in cache:
            brick = BUILDERS[kind][variant](tiny_family_models[family])
            assert brick.kind == kind
            cache[kind, variant, family] = brick
        return cache[kind, variant, family]

    return get


def _logits(model: torch.nn.Module) -> torch.Tensor:
    ids = torch.randint(0, 256, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_every_registered_kind_has_a_builder():
    assert set(BUILDERS) == set(kind_names())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("kind", "variant"), CASES)
def test_save_load_round_trips_bit_exactly(kind, variant, family, built, tmp_path):
    brick = built(kind, variant, family)
    loaded = load_brick(save_brick(brick, tmp_path / "a"))
    fields = ("name", "kind", "origin", "purpose", "base_model", "description", "provenance")
    assert [getattr(loaded, f) for f in fields] == [getattr(brick, f) for f in fields]
    assert type(loaded.spec) is brick_kind(kind).spec_cls
    assert loaded.spec.to_json() == brick.spec.to_json() and loaded.metrics == brick.metrics
    assert loaded.tensors.keys() == brick.tensors.keys()
    for name, tensor in brick.tensors.items():
        again = loaded.tensors[name]
        assert again.dtype == tensor.dtype and torch.equal(again, tensor), name
    save_brick(loaded, tmp_path / "b")  # saving what was read writes the same bytes
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert all(
        (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files
    )


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("kind", "variant"), ATTACHING)
def test_attach_changes_and_detach_restores_logits_exactly(
    kind, variant, family, built, tiny_family_models
):
    loaded = tiny_family_models[family]
    brick = built(kind, variant, family)
    before, weights_id = _logits(loaded.model), loaded.fingerprint
    with attach(loaded, [brick]) as model:
        assert not torch.allclose(_logits(model), before)
    assert torch.equal(_logits(loaded.model), before) and loaded.fingerprint == weights_id
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in loaded.model.modules())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("kind", "variant"), ATTACHING)
def test_a_brick_of_another_base_model_is_refused(kind, variant, family, built, tiny_family_models):
    foreign = dataclasses.replace(built(kind, variant, family), base_model="sha256:someone-else")
    refused = pytest.raises(BrickworkError, match="sha256:someone-else")
    with refused, attach(tiny_family_models[family], [foreign]):
        pass


@pytest.mark.parametrize(("kind", "variant"), [c for c in CASES if c not in ATTACHING])
def test_kinds_that_do_not_attach_are_refused_by_attach(kind, variant, built, tiny_family_models):
    refused = pytest.raises(BrickworkError, match="cannot attach")
    with refused, attach(tiny_family_models["llama"], [built(kind, variant, "llama")]):
        pass
