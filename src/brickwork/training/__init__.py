"""One training core for everything trained: LoRA bricks, grown models, recovery of compact models.

``fit`` runs the loop (AdamW, warmup then linear decay, gradient clipping, early stopping on the
held-out loss, best parameters restored); ``kl_to_reference`` is the optional locality term;
``TrainSettings`` holds the loop's settings, which LoRA and growth settings extend.
"""

from brickwork.training.best import BestState
from brickwork.training.kl import kl, kl_to_reference
from brickwork.training.loop import MAX_GRAD_NORM, TrainResult, fit, warmup_linear_decay
from brickwork.training.rng import batch_order, seeded
from brickwork.training.settings import TrainSettings, check_at_least_one, check_positive

__all__ = [
    "MAX_GRAD_NORM",
    "BestState",
    "TrainResult",
    "TrainSettings",
    "batch_order",
    "check_at_least_one",
    "check_positive",
    "fit",
    "kl",
    "kl_to_reference",
    "seeded",
    "warmup_linear_decay",
]
