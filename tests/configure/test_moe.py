"""MoEfied FFNs from neuron-group bricks: all groups equal dense; routers; refusals."""

import pytest
import torch

from brickwork.bricks.brick import neuron_group_brick
from brickwork.configure.group_routers import ROUTERS, GroupRouter
from brickwork.configure.moe import moefy, train_group_routers
from brickwork.errors import BrickworkError
from brickwork.models import load_model

IDS = torch.tensor([[256, 72, 101, 108, 108, 111, 32, 119, 111, 114]])


def group_bricks(loaded, groups=4, base=None):
    d_ff = loaded.family.d_ff(loaded.model.config)
    generator = torch.Generator().manual_seed(0)
    bricks = []
    for layer in range(len(loaded.family.layer_modules(loaded.model))):
        assignment = torch.randperm(d_ff, generator=generator) % groups
        bricks.append(
            neuron_group_brick(f"g{layer}", base or loaded.fingerprint, layer, assignment, "test")
        )
    return bricks


def logits(model, ids=IDS):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma2"])
def test_all_groups_equal_dense(tiny_model_dirs, family):
    loaded = load_model(tiny_model_dirs[family])
    moe = moefy(loaded, group_bricks(loaded), top_k=4)
    torch.testing.assert_close(logits(moe.model), logits(loaded.model), rtol=1e-4, atol=1e-5)
    # Decode path (one token at a time, gathered experts) too.
    out = moe.model.generate(input_ids=IDS, max_new_tokens=4, do_sample=False, pad_token_id=257)
    dense = loaded.model.generate(
        input_ids=IDS, max_new_tokens=4, do_sample=False, pad_token_id=257
    )
    assert torch.equal(out, dense)


def test_fewer_groups_change_logits_and_oracle_beats_random(tiny_llama):
    bricks = group_bricks(tiny_llama)
    dense = logits(tiny_llama.model)
    errors = {}
    for router in ("oracle", "random", "similarity"):
        moe = moefy(tiny_llama, bricks, top_k=2, router=router)
        errors[router] = float((logits(moe.model) - dense).pow(2).mean())
    assert all(e > 0 for e in errors.values())
    assert errors["oracle"] < errors["random"]


def test_trained_router_runs_and_input_model_untouched(tiny_llama):
    before = logits(tiny_llama.model)
    bricks = group_bricks(tiny_llama)
    routers = train_group_routers(tiny_llama, bricks, [IDS, IDS[:, :6]], steps=20)
    assert routers[0][0].shape == (4, 32) and routers[1][1].shape == (4,)
    moe = moefy(tiny_llama, bricks, top_k=2, router="trained", trained=routers)
    assert logits(moe.model).shape == before.shape
    assert torch.equal(logits(tiny_llama.model), before)


def test_foreign_or_bad_groups_refused(tiny_llama):
    with pytest.raises(BrickworkError, match="made for base model"):
        moefy(tiny_llama, group_bricks(tiny_llama, base="sha256:" + "0" * 32), top_k=2)
    with pytest.raises(BrickworkError, match="each of the 2 layers"):
        moefy(tiny_llama, group_bricks(tiny_llama)[:1], top_k=2)
    with pytest.raises(BrickworkError, match="top_k"):
        moefy(tiny_llama, group_bricks(tiny_llama), top_k=5)
    with pytest.raises(BrickworkError, match="router"):
        moefy(tiny_llama, group_bricks(tiny_llama), top_k=2, router="magic")


@pytest.mark.parametrize("router", list(ROUTERS))
def test_every_registered_router_with_all_groups_is_dense(tiny_llama, router):
    bricks = group_bricks(tiny_llama)
    trained = (
        train_group_routers(tiny_llama, bricks, [IDS], steps=2) if router == "trained" else None
    )
    moe = moefy(tiny_llama, bricks, top_k=4, router=router, trained=trained)
    torch.testing.assert_close(logits(moe.model), logits(tiny_llama.model), rtol=1e-4, atol=1e-5)


def test_a_new_router_is_one_entry(tiny_llama, monkeypatch):
    # a registered router named "mass" that scores groups as the oracle does
    monkeypatch.setitem(ROUTERS, "mass", GroupRouter("mass", "oracle"))
    bricks = group_bricks(tiny_llama)
    mass = moefy(tiny_llama, bricks, top_k=2, router="mass")
    oracle = moefy(tiny_llama, bricks, top_k=2, router="oracle")
    similarity = moefy(tiny_llama, bricks, top_k=2, router="similarity")
    assert torch.equal(logits(mass.model), logits(oracle.model))
    assert not torch.allclose(logits(mass.model), logits(similarity.model))
    with pytest.raises(BrickworkError, match="known: similarity, trained, oracle, random, mass"):
        moefy(tiny_llama, bricks, top_k=2, router="magic")
