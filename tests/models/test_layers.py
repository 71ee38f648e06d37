"""The layer-index check: empty, out-of-range and repeated indices are refused clearly."""

import pytest

from brickwork.errors import BrickworkError
from brickwork.models.layers import check_layers


def test_decoder_layers_are_zero_to_n_minus_one():
    assert check_layers([2, 0], 3) == [2, 0]
    with pytest.raises(BrickworkError, match=r"layer index 3 is out of range.*3 layers \(0\.\.2\)"):
        check_layers([0, 3], 3)
    with pytest.raises(BrickworkError, match="out of range"):
        check_layers([-1], 3)
    with pytest.raises(BrickworkError, match="give at least one steering layer index"):
        check_layers([], 3, "steering layer")


def test_hidden_state_indices_reach_n_and_count_from_the_end():
    assert check_layers([0, 3, -1, -4], 3, hidden_states=True) == [0, 3, -1, -4]
    for bad in (4, -5):
        with pytest.raises(BrickworkError, match="out of range"):
            check_layers([bad], 3, hidden_states=True)


def test_repeats_are_refused_only_when_asked():
    assert check_layers([1, 1], 3) == [1, 1]
    with pytest.raises(BrickworkError, match="must not repeat"):
        check_layers([1, 1], 3, unique=True)
    with pytest.raises(BrickworkError, match="out of range"):
        check_layers([1.5], 3)
