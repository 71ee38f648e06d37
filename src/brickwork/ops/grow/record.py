"""GrownModel: a grown copy of a model, what was grown where, and which parameters are new."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from brickwork.errors import BrickworkError
from brickwork.models.families import family_for
from brickwork.models.layers import check_layers as models_check_layers
from brickwork.models.load import LoadedModel, fingerprint


@dataclass(frozen=True)
class TrainSlice:
    """The trainable part of one parameter: all of it (dim None), or indices start..stop along
    dim (stop None: to the end)."""

    dim: int | None = None
    start: int = 0
    stop: int | None = None

    def mask(self, param: torch.Tensor) -> torch.Tensor | None:
        """A 0/1 tensor shaped like ``param`` (None when the whole parameter trains)."""
        if self.dim is None:
            return None
        mask = torch.zeros_like(param)
        mask.narrow(self.dim, self.start, self.count_along(param)).fill_(1)
        return mask

    def count_along(self, param: torch.Tensor) -> int:
        stop = param.shape[self.dim] if self.stop is None else self.stop
        return stop - self.start

    def count(self, param: torch.Tensor) -> int:
        if self.dim is None:
            return param.numel()
        return param.numel() // param.shape[self.dim] * self.count_along(param)

    def to_json(self) -> list:
        return [self.dim, self.start, self.stop]


@dataclass
class GrownModel:
    loaded: LoadedModel  # the grown model (a new object: the input model is never changed)
    base_model: str  # fingerprint of the model growth started from
    history: list[dict] = field(default_factory=list)  # one entry per growth or training step
    trainable: dict[str, TrainSlice] = field(default_factory=dict)  # the last growth's params

    def trainable_count(self) -> int:
        params = dict(self.loaded.model.named_parameters())
        return sum(s.count(params[name]) for name, s in self.trainable.items())


def start_growth(source: LoadedModel | GrownModel) -> tuple[LoadedModel, str, list[dict]]:
    """A deep copy of the source model to grow, its base fingerprint and history so far."""
    if isinstance(source, GrownModel):
        loaded, base, history = source.loaded, source.base_model, list(source.history)
    elif isinstance(source, LoadedModel):
        loaded, base, history = source, source.fingerprint, []
    else:
        raise BrickworkError(f"can only grow a loaded model, not {type(source).__name__}")
    family_for(loaded.model.config)  # refuses an unsupported family, naming the supported ones
    copied = LoadedModel(
        copy.deepcopy(loaded.model),
        loaded.tokenizer,
        loaded.family,
        loaded.fingerprint,
        loaded.source,
    )
    return copied, base, history


def start_layer_growth(
    source: LoadedModel | GrownModel, layers: list[int]
) -> tuple[LoadedModel, str, list[dict], list[torch.nn.Module], list[int]]:
    """``start_growth`` for a growth in some decoder layers: also the copy's layer modules and
    the checked, sorted ``layers``."""
    loaded, base, history = start_growth(source)
    modules = loaded.family.layer_modules(loaded.model)
    return loaded, base, history, modules, check_layers(layers, len(modules))


def finish_growth(
    loaded: LoadedModel,
    base: str,
    history: list[dict],
    entry: dict,
    trainable: dict[str, TrainSlice],
) -> GrownModel:
    """The grown model with a fresh fingerprint and ``entry`` appended to its history."""
    loaded.model.eval()
    config = loaded.model.config
    if not getattr(config, "architectures", None):  # as save_pretrained would set it
        config.architectures = [type(loaded.model).__name__]
    loaded.fingerprint = fingerprint(loaded.model)
    entry = {**entry, "fingerprint": loaded.fingerprint}
    return GrownModel(loaded, base, [*history, entry], trainable)


def check_layers(layers: list[int], n_layers: int, what: str = "layer") -> list[int]:
    """Sorted unique layer indices, or a clear error for an empty list or one out of range."""
    return sorted(models_check_layers(layers, n_layers, what, unique=True))


def check_positive(value: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BrickworkError(f"{what} must be a positive integer, not {value!r}")
    return value
