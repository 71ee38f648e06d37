"""brickwork: turn a pretrained LLM into a configurable foundation model."""

from brickwork.data import Sample, load_builtin_suite, load_data, load_jsonl
from brickwork.errors import BrickworkError
from brickwork.models import DEFAULT_MODEL, LoadedModel, load_model
from brickwork.profile import Profile, load_profile, merge_profiles, profile_model

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "BrickworkError",
    "LoadedModel",
    "Profile",
    "Sample",
    "load_builtin_suite",
    "load_data",
    "load_jsonl",
    "load_model",
    "load_profile",
    "merge_profiles",
    "profile_model",
]
