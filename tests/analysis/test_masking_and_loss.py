"""Masking contexts restore the model exactly; reference losses equal transformers' own loss."""

import pytest
import torch

from brickwork.analysis import mask_lowest, zero_neurons
from brickwork.analysis.loss import functionality_losses, reference_batches
from brickwork.data import Sample
from brickwork.models.tokens import prompt_prefix
from brickwork.profile import record_activations


def logits(loaded, ids):
    with torch.no_grad():
        return loaded.model(input_ids=ids).logits


@pytest.fixture
def ids():
    return torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(0))


def test_masking_zero_percent_changes_nothing(tiny_llama, ids):
    before = logits(tiny_llama, ids)
    with mask_lowest(tiny_llama, 0.0):
        assert torch.equal(logits(tiny_llama, ids), before)
    nothing = torch.zeros(2, 64, dtype=torch.bool)
    with zero_neurons(tiny_llama, nothing):
        assert torch.equal(logits(tiny_llama, ids), before)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_contexts_restore_the_model_exactly(tiny_model_dirs, ids, family):
    from brickwork import load_model

    loaded = load_model(tiny_model_dirs[family])
    before = logits(loaded, ids)
    with mask_lowest(loaded, 0.5):
        assert not torch.equal(logits(loaded, ids), before)
    with pytest.raises(RuntimeError), zero_neurons(loaded, torch.ones(2, 64, dtype=torch.bool)):
        raise RuntimeError("interrupted")
    assert torch.equal(logits(loaded, ids), before)


def test_mask_lowest_zeroes_that_share_of_every_token(tiny_llama, ids):
    with mask_lowest(tiny_llama, 0.25):
        acts = record_activations(tiny_llama.model, tiny_llama.family, input_ids=ids)
    # The capture hook runs after the masking hook, so it sees the masked input.
    for layer in acts:
        assert ((layer == 0).sum(dim=-1) == 16).all()


def test_zero_neurons_zeroes_exactly_the_chosen_ones(tiny_llama, ids):
    mask = torch.zeros(2, 64, dtype=torch.bool)
    mask[0, :5] = mask[1, 60:] = True
    with zero_neurons(tiny_llama, mask):
        acts = record_activations(tiny_llama.model, tiny_llama.family, input_ids=ids)
    assert (acts[0][..., :5] == 0).all() and (acts[1][..., 60:] == 0).all()
    assert (acts[0][..., 5:] != 0).any()


def test_reference_loss_equals_the_models_own_loss(tiny_llama):
    sample = Sample("s", "what is two plus two?", "math", reference="four, of course")
    batches = reference_batches(tiny_llama.tokenizer, [sample], ["math"])
    ours = functionality_losses(tiny_llama, batches, 1)
    prefix = prompt_prefix(tiny_llama.tokenizer, sample.prompt)
    reference = tiny_llama.tokenizer(sample.reference, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prefix + reference])
    labels = torch.tensor([[-100] * len(prefix) + reference])
    with torch.no_grad():
        expected = tiny_llama.model(input_ids=ids, labels=labels).loss
    assert float(ours[0]) == pytest.approx(float(expected), rel=1e-5)


def test_padding_does_not_change_reference_losses(tiny_llama, tiny_samples):
    functionalities = sorted({s.functionality for s in tiny_samples})
    one_by_one = [
        functionality_losses(
            tiny_llama, reference_batches(tiny_llama.tokenizer, [s], functionalities), 3
        )
        for s in tiny_samples[:4]
    ]
    batched = reference_batches(tiny_llama.tokenizer, tiny_samples[:4], functionalities, 4)
    together = functionality_losses(tiny_llama, batched, 3)
    # All four are coding samples; the batched mean weights each by its reference length.
    counts = [
        len(tiny_llama.tokenizer(s.reference, add_special_tokens=False)["input_ids"])
        for s in tiny_samples[:4]
    ]
    expected = sum(float(loss[0]) * c for loss, c in zip(one_by_one, counts, strict=True)) / sum(
        counts
    )
    assert float(together[0]) == pytest.approx(expected, rel=1e-5)
