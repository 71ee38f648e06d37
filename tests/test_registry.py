"""The registry behind every named choice: order kept, unique names, clear unknown-name errors."""

from dataclasses import dataclass

import pytest

from brickwork import BrickworkError
from brickwork.registry import Registry


@dataclass(frozen=True)
class Entry:
    name: str
    value: int


def test_registry_keeps_order_refuses_duplicates_and_lists_known_names():
    colours = Registry("colour", [Entry("red", 1), Entry("green", 2)])
    assert colours.add(Entry("blue", 3)) == Entry("blue", 3)
    assert list(colours) == ["red", "green", "blue"] and colours["green"].value == 2
    with pytest.raises(BrickworkError, match="colour 'red' is already registered"):
        colours.add(Entry("red", 9))
    assert colours["red"].value == 1
    with pytest.raises(BrickworkError, match="unknown colour 'pink'; known: red, green, blue"):
        colours["pink"]
    assert "pink" not in colours and colours.get("pink") is None
