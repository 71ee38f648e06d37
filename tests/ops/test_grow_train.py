"""Training grown models: only the grown entries move, the input stays, the loss goes down."""

from __future__ import annotations

import pytest
import torch

from brickwork.data import Sample
from brickwork.errors import BrickworkError
from brickwork.models.load import fingerprint
from brickwork.ops.grow import grow_depth, grow_width
from brickwork.ops.grow.train import (
    GrowTrainSettings,
    layer_slices,
    neuron_slices,
    train_grown,
    train_slices,
)
from tests.ops.test_grow_support import tiny_loaded

SETTINGS = GrowTrainSettings(steps=12, lr=1e-2, batch_size=4, eval_every=4)


def _pairs(n: int, start: int = 0) -> list[Sample]:
    return [
        Sample(f"s{i}", f"copy {i % 7}", "toy", reference=f"{i % 7}{i % 7}")
        for i in range(start, start + n)
    ]


def test_width_training_moves_only_new_neurons():
    grown = grow_width(tiny_loaded("llama"), [1], 8)
    frozen_print = fingerprint(grown.loaded.model)
    trained = train_grown(grown, _pairs(16), _pairs(6, 100), settings=SETTINGS, progress=False)
    assert fingerprint(grown.loaded.model) == frozen_print  # the grown input is untouched
    before = dict(grown.loaded.model.named_parameters())
    after = dict(trained.loaded.model.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed == set(grown.trainable)
    down = "model.layers.1.mlp.down_proj.weight"
    assert torch.equal(after[down][:, :64], before[down][:, :64])  # old neurons bit-exact
    assert torch.count_nonzero(after[down][:, 64:]) > 0
    entry = trained.history[-1]
    assert entry["op"] == "train" and entry["trainable_parameters"] == 8 * 32 * 3
    assert entry["heldout_loss_after"] < entry["heldout_loss_before"]


def test_depth_training_and_baseline_budgets_match():
    loaded = tiny_loaded("gpt2")
    grown = grow_depth(loaded, [1])
    baseline = layer_slices(loaded, [0])  # the block the new one copies, trained in place
    params = dict(loaded.model.named_parameters())
    assert sum(s.count(params[n]) for n, s in baseline.items()) == grown.trainable_count()
    trained, metrics = train_slices(
        loaded, baseline, _pairs(16), _pairs(6, 100), settings=SETTINGS, progress=False
    )
    changed = {n for n, p in trained.model.named_parameters() if not torch.equal(p, params[n])}
    assert changed and changed <= set(baseline)
    assert metrics["trainable_parameters"] == grown.trainable_count()


def test_neuron_slices_match_width_growth():
    loaded = tiny_loaded("qwen3")
    grown = grow_width(loaded, [0, 1], 8)
    slices = neuron_slices(loaded, [0, 1], 56, 64)
    params = dict(loaded.model.named_parameters())
    assert sum(s.count(params[n]) for n, s in slices.items()) == grown.trainable_count()
    with pytest.raises(BrickworkError, match="out of range"):
        neuron_slices(loaded, [0], 60, 70)


def test_training_refuses_bad_input():
    grown = grow_width(tiny_loaded("llama"), [0], 4)
    with pytest.raises(BrickworkError, match="steps must be at least 1"):
        train_grown(grown, _pairs(4), _pairs(2), settings=GrowTrainSettings(steps=0))
    with pytest.raises(BrickworkError, match="held-out"):
        train_grown(grown, _pairs(4), [], settings=SETTINGS)
    with pytest.raises(BrickworkError, match="reference"):
        train_grown(grown, _pairs(4), _pairs(2), settings=SETTINGS, preserve=_pairs(2))


def test_preserve_keeps_the_model_closer():
    loaded = tiny_loaded("llama")
    grown = grow_depth(loaded, [2])
    keep = _pairs(8, 200)
    # The same settings for both arms; only the KL term differs. Early stopping watches the
    # training pairs themselves, so both arms surely move (a held-out set that does not improve
    # would keep the initial state, and the comparison would say nothing).
    settings = GrowTrainSettings(
        steps=12, lr=1e-2, batch_size=4, eval_every=4, preserve_weight=50.0
    )
    plain = train_grown(grown, _pairs(16), _pairs(16), settings=settings, progress=False)
    kept = train_grown(
        grown,
        _pairs(16),
        _pairs(16),
        progress=False,
        preserve=keep,
        reference=loaded,
        settings=settings,
    )

    def drift(model) -> float:
        ids = torch.randint(0, 256, (4, 16), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            return float((model(ids).logits - loaded.model(ids).logits).abs().mean())

    assert drift(plain.loaded.model) > 0  # the plain arm did move away from the base
    assert drift(kept.loaded.model) < drift(plain.loaded.model)
