"""Train only what grew: every parameter is frozen except the grown slices.

A whole grown parameter (a new block, an expert) trains as it is; a partly grown one (a widened
projection) gets a gradient mask, so AdamW (no weight decay) leaves its old entries bit-exact.
Training runs on a deep copy: the model passed in is never changed. Prompt -> reference pairs are
trained with the loss on the response tokens only (as task bricks are); the held-out response
loss is measured every ``eval_every`` steps and the best state is kept. With ``preserve`` samples
and the ``reference`` (original) model, each step adds ``preserve_weight`` x KL(reference ||
trained) on a half batch of their reference tokens, a locality constraint against forgetting.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import TypedDict

import torch
from typing_extensions import Unpack

from brickwork.bricks.train_eval import (
    batch_loss,
    locality_rows,
    response_loss,
    response_rows,
    target_logits,
)
from brickwork.data.sample import Sample, dataset_hash
from brickwork.errors import BrickworkError
from brickwork.models.ffn import neuron_dims
from brickwork.models.load import LoadedModel, fingerprint
from brickwork.ops.grow.record import GrownModel, TrainSlice, check_layers
from brickwork.training import TrainSettings, fit, kl_to_reference, seeded


@dataclass(frozen=True)
class GrowTrainSettings(TrainSettings):
    """Training a grown model: the loop's settings (``TrainSettings``) and the KL weight."""

    lr: float = 1e-3
    preserve_weight: float = field(
        default=1.0, metadata={"help": "weight of the KL term on the preserve samples"}
    )


class GrowTrainOptions(TypedDict, total=False):
    """How ``train_slices`` (and ``train_grown``) train: the ``settings``, the ``preserve``
    samples with the ``reference`` model for the KL term, and ``progress`` bars."""

    settings: GrowTrainSettings
    preserve: list[Sample] | None
    reference: LoadedModel | None
    progress: bool


def train_grown(
    grown: GrownModel,
    train: list[Sample],
    heldout: list[Sample],
    **options: Unpack[GrowTrainOptions],
) -> GrownModel:
    """A copy of ``grown`` trained on prompt/reference pairs, only its grown parameters moving."""
    if not grown.trainable:
        raise BrickworkError("nothing grew: this model has no grown parameters to train")
    trained, metrics = train_slices(grown.loaded, grown.trainable, train, heldout, **options)
    entry = {"op": "train", "fingerprint": trained.fingerprint, **metrics}
    return GrownModel(trained, grown.base_model, [*grown.history, entry], dict(grown.trainable))


def train_slices(
    loaded: LoadedModel,
    trainable: dict[str, TrainSlice],
    train: list[Sample],
    heldout: list[Sample],
    *,
    settings: GrowTrainSettings = GrowTrainSettings(),
    preserve: list[Sample] | None = None,
    reference: LoadedModel | None = None,
    progress: bool = True,
) -> tuple[LoadedModel, dict]:
    """A trained copy of ``loaded`` in which only the ``trainable`` slices changed, and metrics.

    Also the full fine-tune baseline: pass slices of existing parameters (``layer_slices``,
    ``neuron_slices``) to train those in place with the same loop.
    """
    settings.check()
    if not train or not heldout:
        raise BrickworkError("training needs both training and held-out prompt/reference pairs")
    if preserve and reference is None:
        raise BrickworkError("preserve needs the reference (original) model to stay close to")
    rows = response_rows(loaded.tokenizer, train)
    model = copy.deepcopy(loaded.model)
    copied = LoadedModel(model, loaded.tokenizer, loaded.family, loaded.fingerprint, loaded.source)
    params = _unfreeze(model, trainable)
    regularizer = _kl(copied, reference, preserve, settings) if preserve else None
    with seeded(settings.seed):
        result = fit(
            model,
            params,
            rows,
            lambda batch: batch_loss(copied, batch),
            lambda: response_loss(copied, heldout),
            settings,
            regularizer=regularizer,
            desc="train grown",
            progress=progress,
        )
    for param in model.parameters():
        param.requires_grad_(True)
        param.grad = None
    model.eval()
    copied.fingerprint = fingerprint(model)
    named = dict(model.named_parameters())
    count = sum(s.count(named[n]) for n, s in trainable.items())
    metrics = {
        **result.metrics(),
        "trainable_parameters": count,
        "settings": asdict(settings),
        "dataset_hash": dataset_hash(train),
        "heldout_hash": dataset_hash(heldout),
        "n_train": len(train),
        "preserve_hash": dataset_hash(preserve) if preserve else None,
    }
    return copied, metrics


def _unfreeze(model: torch.nn.Module, trainable: dict[str, TrainSlice]) -> list[torch.Tensor]:
    """Freeze everything, then let only the trainable slices receive gradient."""
    named = dict(model.named_parameters())
    missing = [name for name in trainable if name not in named]
    if missing:
        raise BrickworkError(f"no parameter {missing[0]!r} in this model to train")
    for param in model.parameters():
        param.requires_grad_(False)
    params = []
    for name, part in trainable.items():
        param = named[name]
        param.requires_grad_(True)
        mask = part.mask(param)
        if mask is not None:
            param.register_hook(lambda grad, mask=mask: grad * mask)
        params.append(param)
    return params


def _kl(copied: LoadedModel, reference: LoadedModel, samples: list[Sample], s: GrowTrainSettings):
    """preserve_weight x KL(reference || trained) on half batches of ``samples``."""
    rows = locality_rows(copied.tokenizer, samples, plain=False)  # as measured in grow.md
    return kl_to_reference(
        rows,
        s,
        s.preserve_weight,
        lambda batch: target_logits(reference, batch)[0],
        lambda batch: target_logits(copied, batch)[0],
    )


def layer_slices(loaded: LoadedModel, layers: list[int]) -> dict[str, TrainSlice]:
    """Every parameter of the given existing decoder layers (a full fine-tune of them)."""
    family = loaded.family
    layers = check_layers(layers, len(family.layer_modules(loaded.model)))
    prefixes = tuple(f"{family.layers}.{i}." for i in layers)
    return {n: TrainSlice() for n, _ in loaded.model.named_parameters() if n.startswith(prefixes)}


def neuron_slices(
    loaded: LoadedModel, layers: list[int], start: int, stop: int
) -> dict[str, TrainSlice]:
    """Existing FFN neurons start..stop of the given layers (their input rows and output
    columns), e.g. as many old neurons as width growth would add."""
    family = loaded.family
    layers = check_layers(layers, len(family.layer_modules(loaded.model)))
    named = dict(loaded.model.named_parameters())
    slices = {}
    for i in layers:
        for name, dim in neuron_dims(family).items():
            full = f"{family.layers}.{i}.{family.mlp}.{name}"
            if full in named:
                if not 0 <= start < stop <= named[full].shape[dim]:
                    raise BrickworkError(f"neurons {start}..{stop} are out of range in layer {i}")
                slices[full] = TrainSlice(dim, start, stop)
    return slices
