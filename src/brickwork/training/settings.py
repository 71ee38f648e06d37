"""Settings shared by everything trained, and the checks every settings class uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from brickwork.errors import BrickworkError


@dataclass(frozen=True)
class TrainSettings:
    """The training loop's settings. Subclasses add their own fields (LoRA rank, KL weight, ...)
    and may redeclare a field to change its default; ``COUNTS`` lists the fields that must be
    at least 1."""

    steps: int = 200
    lr: float = 5e-4
    batch_size: int = 8
    seed: int = 0
    eval_every: int = 50
    max_seconds: float | None = None

    COUNTS: ClassVar[tuple[str, ...]] = ("steps", "batch_size", "eval_every")

    def check(self) -> None:
        check_at_least_one(self, *self.COUNTS)
        check_positive(self, "lr")


def check_at_least_one(settings: object, *names: str) -> None:
    for name in names:
        if getattr(settings, name) < 1:
            raise BrickworkError(f"{name} must be at least 1, not {getattr(settings, name)}")


def check_positive(settings: object, *names: str) -> None:
    for name in names:
        if not getattr(settings, name) > 0:
            raise BrickworkError(f"{name} must be positive, not {getattr(settings, name)}")
