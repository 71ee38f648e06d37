"""The public API: every exported name resolves, and the capabilities a user calls are there."""

import brickwork


def test_every_exported_name_resolves():
    missing = [name for name in brickwork.__all__ if not hasattr(brickwork, name)]
    assert missing == []


def test_api_covers_each_capability():
    for name in ("analyze", "attach", "merge_ties", "edit", "grow_width", "gather_ffn"):
        assert callable(getattr(brickwork, name)), name
