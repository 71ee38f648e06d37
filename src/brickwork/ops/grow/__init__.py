"""Growing (paper §3.4): add FFN neurons, decoder blocks, experts and per-task plugins.

Every growth returns a new ``GrownModel`` (the input model is never changed) whose output equals
the input's at init, records what was grown where, and marks only the grown parameters trainable.
"""

from brickwork.ops.grow.depth import grow_depth
from brickwork.ops.grow.experts import EXPERT_MODES, grow_experts
from brickwork.ops.grow.record import GrownModel, TrainSlice
from brickwork.ops.grow.store import is_grown, load_any, load_grown, save_grown
from brickwork.ops.grow.width import WIDTH_METHODS, grow_width

__all__ = [
    "EXPERT_MODES",
    "WIDTH_METHODS",
    "GrownModel",
    "TrainSlice",
    "grow_depth",
    "grow_experts",
    "grow_width",
    "is_grown",
    "load_any",
    "load_grown",
    "save_grown",
]
