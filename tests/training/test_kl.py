"""The KL-to-reference term of the training core."""

from __future__ import annotations

import torch

from brickwork.training import TrainSettings, kl_to_reference

SETTINGS = TrainSettings(steps=4, batch_size=4)


def _logits(weight: torch.Tensor):
    """A batch of row indices -> logits [rows, vocab] from a linear map of a fixed embedding."""
    embed = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    return lambda batch: embed[batch] @ weight


def test_kl_is_zero_against_an_identical_reference():
    weight = torch.randn(3, 5, generator=torch.Generator().manual_seed(1))
    term = kl_to_reference(list(range(6)), SETTINGS, 2.0, _logits(weight), _logits(weight))
    assert all(term(step).item() == 0.0 for step in range(1, 5))


def test_kl_pulls_the_trained_model_towards_the_reference():
    reference = torch.randn(3, 5, generator=torch.Generator().manual_seed(1))
    trained = torch.nn.Parameter(torch.randn(3, 5, generator=torch.Generator().manual_seed(2)))
    sizes = []

    def recording(batch):
        sizes.append(len(batch))
        return _logits(trained)(batch)

    rows = list(range(6))
    term = kl_to_reference(rows, SETTINGS, 1.0, _logits(reference), recording)
    double = kl_to_reference(rows, SETTINGS, 2.0, _logits(reference), _logits(trained))
    value = term(1)
    assert value.item() > 0 and sizes == [2]  # on a half batch
    torch.testing.assert_close(double(1), 2 * value)
    value.backward()
    step = trained.detach() - 0.5 * trained.grad
    assert (
        term(1).item()
        > kl_to_reference(rows, SETTINGS, 1.0, _logits(reference), _logits(step))(1).item()
    )
