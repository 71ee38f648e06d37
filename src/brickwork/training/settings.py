"""Settings shared by everything trained, and the checks every settings class uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from brickwork.errors import BrickworkError


@dataclass(frozen=True)
class TrainSettings:
    """The training loop's settings. Subclasses add their own fields (LoRA rank, KL weight, ...)
    and may redeclare a field to change its default (its help stays); ``COUNTS`` lists the
    fields that must be at least 1."""

    steps: int = field(default=200, metadata={"help": "training steps"})
    lr: float = field(default=5e-4, metadata={"help": "AdamW learning rate"})
    batch_size: int = field(default=8, metadata={"help": "samples per step"})
    seed: int = field(default=0, metadata={"help": "seed of the initialisation and data order"})
    eval_every: int = field(
        default=50, metadata={"help": "steps between held-out evaluations (best state kept)"}
    )
    max_seconds: float | None = field(
        default=None, metadata={"help": "stop training after this many seconds"}
    )

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
