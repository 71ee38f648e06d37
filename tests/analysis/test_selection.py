"""Neuron-set selection and the partition similarity."""

import torch

from brickwork.analysis import (
    random_neurons,
    resident_neurons,
    set_similarity,
    similarity_matrix,
    top_neurons,
)


def test_top_per_layer_and_global():
    scores = torch.arange(40.0).reshape(2, 20)
    per_layer = top_neurons(scores, 0.1)
    assert per_layer.sum(dim=1).tolist() == [2, 2]
    assert per_layer[0, 18:].all() and per_layer[1, 18:].all()
    global_ = top_neurons(scores, 0.1, per_layer=False)
    assert global_.sum() == 4 and global_[1, 16:].all() and not global_[0].any()


def test_excluded_neurons_are_never_chosen():
    scores = torch.arange(20.0).reshape(1, 20)
    exclude = torch.zeros(1, 20, dtype=torch.bool)
    exclude[0, 19] = True
    chosen = top_neurons(scores, 0.1, exclude=exclude)
    assert chosen[0, 17:19].all() and not chosen[0, 19] and chosen.sum() == 2


def test_similarity_of_a_set_with_itself_is_one_and_random_sets_overlap_by_the_fraction():
    a = random_neurons(30, 1000, 0.05, seed=1)
    assert set_similarity(a, a) == 1.0
    assert set_similarity(a, a & False) == 0.0
    others = [random_neurons(30, 1000, 0.05, seed=s) for s in range(2, 6)]
    matrix = similarity_matrix([a, *others])
    assert torch.equal(matrix.diagonal(), torch.ones(5))
    off = matrix[~torch.eye(5, dtype=torch.bool)]
    assert abs(float(off.mean()) - 0.05) < 0.01


def test_resident_neurons_are_high_for_every_functionality():
    means = torch.zeros(3, 1, 20)
    means[:, 0, 4] = 5.0  # high everywhere: resident
    means[0, 0, 7] = 9.0  # high for one functionality only: not resident
    resident = resident_neurons(means + torch.arange(20.0) * 1e-3)
    assert resident[0, 4] and not resident[0, 7]
