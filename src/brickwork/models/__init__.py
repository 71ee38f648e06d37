"""Model-family knowledge and loading: the only place that knows how models are laid out."""

from brickwork.models.builtin import BUILTINS, DEFAULT_MODEL
from brickwork.models.experts import MoEFFN
from brickwork.models.families import FAMILIES, Family, family_for
from brickwork.models.load import LoadedModel, fingerprint, load_model

__all__ = [
    "BUILTINS",
    "DEFAULT_MODEL",
    "FAMILIES",
    "Family",
    "LoadedModel",
    "MoEFFN",
    "family_for",
    "fingerprint",
    "load_model",
]
