"""FuncScore: vectorised average precision equals sklearn's, ties included."""

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from brickwork.analysis import average_precision, funcscores, layer_statistics


def sklearn_ap(scores, labels):
    return np.array(
        [
            average_precision_score(labels.numpy(), scores[:, j].numpy())
            for j in range(scores.shape[1])
        ]
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_matches_sklearn(seed):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(60, 40, generator=g)
    scores[:, :10] = scores[:, :10].round()  # many ties
    scores[:, 10] = 0.0  # all tied
    scores[::3, 11] = 2.0
    labels = torch.rand(60, generator=g) < 0.25
    labels[0] = True
    np.testing.assert_allclose(
        average_precision(scores, labels).numpy(), sklearn_ap(scores, labels), rtol=1e-6, atol=1e-7
    )


def test_a_perfect_neuron_scores_one_and_needs_positives():
    labels = torch.tensor([True, False, True, False])
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.1, 0.9]])
    ap = average_precision(scores, labels)
    assert ap[0] == pytest.approx(1.0) and ap[1] == pytest.approx((1 / 3 + 2 / 4) / 2)
    with pytest.raises(ValueError, match="positive"):
        average_precision(scores, torch.zeros(4, dtype=torch.bool))


def test_funcscores_shape_and_per_functionality_labels():
    g = torch.Generator().manual_seed(0)
    acts = torch.rand(30, 2, 8, generator=g)
    labels = torch.arange(30) % 3
    acts[labels == 1, 0, 5] += 10  # neuron (0, 5) fires only for functionality 1
    scores = funcscores(acts, labels, 3)
    assert scores.shape == (3, 2, 8)
    assert scores[1, 0, 5] == pytest.approx(1.0)
    assert scores[0, 0, 5] < 0.5
    flat = acts.reshape(30, 16)
    np.testing.assert_allclose(
        scores[2].reshape(-1).numpy(), sklearn_ap(flat, labels == 2), rtol=1e-6
    )
    stats = layer_statistics(scores)
    assert set(stats) == {"best", "best_5permille", "mean"}
    assert all(v.shape == (3, 2) for v in stats.values())
    assert (stats["best"] >= stats["best_5permille"]).all()
    assert (stats["best_5permille"] >= stats["mean"]).all()
