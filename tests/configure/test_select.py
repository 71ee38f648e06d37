"""Neuron selection: budgets, priority sets, mass allocation, baselines."""

import pytest
import torch

from brickwork.configure.select import (
    BASELINES,
    Baseline,
    SelectionStats,
    baseline_selection,
    functionality_selection,
    mass_widths,
    prompt_scores,
    prompt_selection,
    top_per_layer,
    weight_magnitude,
)
from brickwork.errors import BrickworkError


def stats(layers=2, d_ff=64):
    generator = torch.Generator().manual_seed(0)
    sets = torch.zeros(2, layers, d_ff, dtype=torch.bool)
    sets[0, :, -5:] = True  # lowest-importance neurons, but in coding's set
    importance = torch.arange(d_ff, 0, -1).float().expand(2, layers, d_ff).clone()
    resident = torch.zeros(layers, d_ff, dtype=torch.bool)
    resident[:, 40] = True
    return SelectionStats(
        ["coding", "math"],
        importance,
        sets,
        resident,
        torch.rand(layers, d_ff, generator=generator),
        "fp",
    )


def test_functionality_selection_puts_sets_and_residents_first():
    kept = functionality_selection(stats(), {"coding": 1.0}, 0.25)
    assert [len(k) for k in kept] == [16, 16]
    for k in kept:
        assert set(range(59, 64)) <= set(k.tolist()) and 40 in k.tolist()
        assert set(range(9)) <= set(k.tolist())  # then the most important ones
    math = functionality_selection(stats(), {"math": 1.0}, 0.25)
    assert math[0].tolist() == [*range(15), 40]
    with pytest.raises(BrickworkError, match="unknown functionality"):
        functionality_selection(stats(), {"poetry": 1.0}, 0.25)


def test_top_per_layer_and_budget_errors():
    kept = top_per_layer(torch.arange(20.0).reshape(2, 10), 0.3)
    assert [k.tolist() for k in kept] == [[7, 8, 9], [7, 8, 9]]
    for budget in (0, 1.01):
        with pytest.raises(BrickworkError, match="budget"):
            top_per_layer(torch.ones(2, 10), budget)


def test_mass_widths_differ_per_layer_and_keep_the_total():
    generator = torch.Generator().manual_seed(0)
    peaked = torch.rand(64, generator=generator) ** 8  # mass in a few neurons
    flat = torch.rand(64, generator=generator) + 1  # mass spread out
    widths = mass_widths(torch.stack([peaked, flat]), 0.25)
    assert widths[1] > widths[0] >= 8  # the diffuse layer gets more, the floor holds
    assert abs(sum(widths) - 32) <= 2
    kept = prompt_selection(torch.stack([peaked, flat]), 0.25, allocation="mass")
    assert [len(k) for k in kept] == widths


def test_prompt_scores_follow_the_active_neurons():
    acts = torch.zeros(5, 8)
    acts[:, 3] = 2.0
    acts[:, 5] = 1.0
    scores = prompt_scores([acts, acts.flip(-1)])
    assert prompt_selection(scores, 0.25)[0].tolist() == [3, 5]
    assert prompt_selection(scores, 0.25)[1].tolist() == [2, 4]


def test_magnitude_baseline_on_tiny_models(tiny_llama):
    magnitude = weight_magnitude(tiny_llama)
    assert magnitude.shape == (2, 64) and bool((magnitude > 0).all())
    kept = baseline_selection("magnitude", 0.5, tiny_llama)
    assert kept[0].tolist() == magnitude[0].topk(32).indices.sort().values.tolist()
    with pytest.raises(BrickworkError, match="unknown baseline"):
        baseline_selection("random", 0.5, tiny_llama)


@pytest.mark.parametrize("kind", list(BASELINES))
def test_every_registered_baseline_selects_the_budget_and_names_its_need(tiny_llama, kind):
    kept = baseline_selection(kind, 0.25, tiny_llama, stats())
    assert [len(k) for k in kept] == [16, 16]
    assert all(torch.equal(k, k.unique()) for k in kept)  # sorted, no repeats
    with pytest.raises(BrickworkError, match="needs the"):
        baseline_selection(kind, 0.25, None, None)


def test_a_new_baseline_is_one_entry(monkeypatch):
    def last(loaded, selection_stats):
        return torch.arange(64).float().expand(2, 64)

    monkeypatch.setitem(BASELINES, "last", Baseline("last", last))
    kept = baseline_selection("last", 0.125, None, None)
    assert [k.tolist() for k in kept] == [list(range(56, 64))] * 2
