"""Updating bricks (paper §3.3): locate knowledge, edit it in place, inject new knowledge bricks,
roll edits back, and measure reliability, generalization and locality."""

from brickwork.ops.update.edit import check_facts, edit
from brickwork.ops.update.inject import attach_neurons, inject, plugin
from brickwork.ops.update.locate import causal_trace, knowledge_neurons
from brickwork.ops.update.rome import EditSettings, solve_update
from brickwork.ops.update.store import apply_edit, rollback

__all__ = [
    "EditSettings",
    "apply_edit",
    "attach_neurons",
    "causal_trace",
    "check_facts",
    "edit",
    "inject",
    "knowledge_neurons",
    "plugin",
    "rollback",
    "solve_update",
]
