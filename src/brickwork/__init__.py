"""brickwork: turn a pretrained LLM into a configurable foundation model."""

from brickwork.analysis import Analysis, AnalysisSettings, analyze, load_analysis, save_analysis
from brickwork.bricks import Brick, BrickRepository, attach, load_brick, save_brick
from brickwork.configure import configured_generate, gather_ffn, load_compact, save_compact
from brickwork.configure.build import build_configured, load_configured, save_configured
from brickwork.configure.recover import RecoverySettings, recover
from brickwork.data import Sample, load_builtin_suite, load_data, load_jsonl
from brickwork.errors import BrickworkError
from brickwork.models import DEFAULT_MODEL, LoadedModel, load_model
from brickwork.ops.combine import merge_dare, merge_linear, merge_ties, task_arithmetic
from brickwork.ops.grow import grow_depth, grow_experts, grow_width, load_grown, save_grown
from brickwork.ops.route import with_embedding
from brickwork.ops.update import edit, inject, rollback
from brickwork.profile import Profile, load_profile, merge_profiles, profile_model

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "Analysis",
    "AnalysisSettings",
    "Brick",
    "BrickRepository",
    "BrickworkError",
    "LoadedModel",
    "Profile",
    "RecoverySettings",
    "Sample",
    "analyze",
    "attach",
    "build_configured",
    "configured_generate",
    "edit",
    "gather_ffn",
    "grow_depth",
    "grow_experts",
    "grow_width",
    "inject",
    "load_analysis",
    "load_brick",
    "load_builtin_suite",
    "load_compact",
    "load_configured",
    "load_data",
    "load_grown",
    "load_jsonl",
    "load_model",
    "load_profile",
    "merge_dare",
    "merge_linear",
    "merge_profiles",
    "merge_ties",
    "profile_model",
    "recover",
    "rollback",
    "save_analysis",
    "save_brick",
    "save_compact",
    "save_configured",
    "save_grown",
    "task_arithmetic",
    "with_embedding",
]
