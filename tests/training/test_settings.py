"""Shared settings checks: every trained thing refuses the same bad values the same way."""

from __future__ import annotations

import pytest

from brickwork.bricks.train import KnowledgeSettings, LoraSettings
from brickwork.errors import BrickworkError
from brickwork.ops.grow.train import GrowTrainSettings
from brickwork.ops.update.rome import EditSettings
from brickwork.training import TrainSettings


@pytest.mark.parametrize("cls", [TrainSettings, LoraSettings, KnowledgeSettings, GrowTrainSettings])
def test_loop_settings_are_checked_alike(cls):
    cls().check()
    for field in ("steps", "batch_size", "eval_every"):
        with pytest.raises(BrickworkError, match=f"{field} must be at least 1, not 0"):
            cls(**{field: 0}).check()
    with pytest.raises(BrickworkError, match="lr must be positive, not 0"):
        cls(lr=0).check()


def test_each_kind_keeps_its_own_checks_and_defaults():
    with pytest.raises(BrickworkError, match="rank must be at least 1"):
        LoraSettings(rank=0).check()
    assert (LoraSettings().steps, LoraSettings().lr, LoraSettings().eval_every) == (200, 5e-4, 50)
    assert (KnowledgeSettings().steps, KnowledgeSettings().eval_every) == (200, 25)
    assert (GrowTrainSettings().lr, GrowTrainSettings().preserve_weight) == (1e-3, 1.0)
    with pytest.raises(BrickworkError, match="initial_steps must be at least 1"):
        EditSettings(initial_steps=0).check()
    with pytest.raises(BrickworkError, match="initial_scale must be positive"):
        EditSettings(initial_scale=0.0).check()
