"""Neuron capture and streaming profiles whose shards merge by addition."""

from brickwork.profile.capture import (
    capture_activations,
    down_projection_norms,
    record_activations,
)
from brickwork.profile.run import profile_model
from brickwork.profile.store import Profile, load_profile, merge_profiles
from brickwork.profile.summary import summarize

__all__ = [
    "Profile",
    "capture_activations",
    "down_projection_norms",
    "load_profile",
    "merge_profiles",
    "profile_model",
    "record_activations",
    "summarize",
]
