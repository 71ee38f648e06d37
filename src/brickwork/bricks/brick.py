"""The Brick: a functional unit of a model, with its base model, provenance and metrics.

Kinds follow the paper's granularities (§2): a neuron set (neurons of many layers, e.g. the coding
neurons), a neuron group (one layer's FFN partitioned into experts), a layer, a plugin (a LoRA
adapter or a steering vector) and a model (a reference to a whole model); and the products of
updating and growing: a delta (an edit), a trace (causal-trace scores) and grown parameters.
Each kind is registered with a typed spec (``brickwork.bricks.kinds``). Origins: emergent (found
in the pre-trained weights) or customized (built after pre-training).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from brickwork.bricks.kinds import brick_kind
from brickwork.bricks.spec import BrickSpec
from brickwork.bricks.specs import LayerSpec, ModelSpec, NeuronGroupSpec, NeuronSetSpec
from brickwork.errors import BrickworkError

ORIGINS = ("emergent", "customized")
# Letters, digits, dot, dash, underscore; no path separators, no leading dot, no "..".
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass
class Brick:
    name: str
    kind: str
    origin: str
    purpose: str  # the functionality or task it serves, e.g. "coding"
    base_model: str  # fingerprint of the base model it was built on
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    spec: BrickSpec | dict = field(default_factory=dict)  # the kind's typed spec (a dict is read)
    provenance: dict = field(default_factory=dict)  # method, parameters, data hash, seed, ...
    metrics: dict = field(default_factory=dict)  # measured numbers, e.g. before/after
    description: str = ""

    def __post_init__(self) -> None:
        check_name(self.name)
        kind = brick_kind(self.kind)
        if self.origin not in ORIGINS:
            raise BrickworkError(f"unknown brick origin {self.origin!r}; origins: {ORIGINS}")
        if not isinstance(self.spec, kind.spec_cls):  # a JSON object (or another kind's spec)
            self.spec = kind.spec_cls.from_json(self.spec)
        missing = [t for t in kind.tensors if t not in self.tensors]
        if missing:
            raise BrickworkError(f"{self.kind} brick {self.name!r} lacks tensor(s) {missing}")

    def neuron_mask(self) -> torch.Tensor:
        """The [layers, d_ff] boolean mask of a neuron-set brick."""
        if self.kind != "neuron_set":
            raise BrickworkError(f"brick {self.name!r} is a {self.kind}, not a neuron set")
        return self.tensors["mask"].bool()


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise BrickworkError(
            f"invalid brick name {name!r}: use letters, digits, '.', '-', '_' (no paths)"
        )
    return name


def kind_brick(
    kind: str,
    origin: str,
    name: str,
    purpose: str,
    base_model: str,
    tensors: dict[str, torch.Tensor],
    spec: BrickSpec,
    fields: dict,
) -> Brick:
    """A ``kind`` brick of the default ``origin`` unless ``fields`` names one (fields: the
    remaining Brick fields, e.g. provenance, metrics, description)."""
    origin = fields.pop("origin", origin)
    return Brick(name, kind, origin, purpose, base_model, tensors=tensors, spec=spec, **fields)


def neuron_set_brick(
    name: str, purpose: str, base_model: str, mask: torch.Tensor, rule: str, **fields
) -> Brick:
    """An emergent neuron set: the neurons where ``mask`` [layers, d_ff] is True."""
    layers, d_ff = mask.shape
    per_layer = mask.sum(dim=1).tolist()
    spec = NeuronSetSpec(n_layers=layers, d_ff=d_ff, rule=rule, neurons_per_layer=per_layer)
    tensors = {"mask": mask.to(torch.uint8)}
    return kind_brick("neuron_set", "emergent", name, purpose, base_model, tensors, spec, fields)


def neuron_group_brick(
    name: str, base_model: str, layer: int, assignment: torch.Tensor, method: str, **fields
) -> Brick:
    """One layer's FFN partitioned into groups (experts): ``assignment`` [d_ff] holds group ids."""
    sizes = torch.bincount(assignment).tolist()
    spec = NeuronGroupSpec(layer=layer, n_groups=len(sizes), group_sizes=sizes, method=method)
    purpose = fields.pop("purpose", f"layer {layer} experts")
    return Brick(
        name,
        "neuron_group",
        "emergent",
        purpose,
        base_model,
        tensors={"assignment": assignment.long()},
        spec=spec,
        **fields,
    )


def layer_brick(
    name: str, purpose: str, base_model: str, layer_module: torch.nn.Module, index: int, **fields
) -> Brick:
    """A whole decoder layer: its parameters under their names within the layer."""
    tensors = {k: v.detach().clone() for k, v in layer_module.state_dict().items()}
    return kind_brick(
        "layer", "emergent", name, purpose, base_model, tensors, LayerSpec(layer=index), fields
    )


def model_brick(name: str, purpose: str, base_model: str, reference: str, **fields) -> Brick:
    """A reference to a whole model (a Hub id or a path), for multi-model cooperation."""
    return kind_brick(
        "model", "customized", name, purpose, base_model, {}, ModelSpec(reference=reference), fields
    )
