"""Configured models: instruction -> routed functionality -> selected neurons -> compact model."""

from brickwork.configure.compact import (
    CompactModel,
    attach_plugins,
    check_budget,
    gather_ffn,
    kept_from_mask,
    load_compact,
    save_compact,
)
from brickwork.configure.moe import moefy, train_group_routers
from brickwork.configure.pipeline import Trace, configured_generate
from brickwork.configure.router import (
    Router,
    load_router,
    route,
    router_accuracy,
    save_router,
    train_router,
)
from brickwork.configure.select import (
    SelectionStats,
    baseline_selection,
    functionality_selection,
    load_stats,
    prompt_selection,
)

__all__ = [
    "CompactModel",
    "Router",
    "SelectionStats",
    "Trace",
    "attach_plugins",
    "baseline_selection",
    "check_budget",
    "configured_generate",
    "functionality_selection",
    "gather_ffn",
    "kept_from_mask",
    "load_compact",
    "load_router",
    "load_stats",
    "moefy",
    "prompt_selection",
    "route",
    "router_accuracy",
    "save_compact",
    "save_router",
    "train_group_routers",
    "train_router",
]
