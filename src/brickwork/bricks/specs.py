"""The spec of each built-in brick kind (docs/brick_format.md lists them with their tensors)."""

from __future__ import annotations

from dataclasses import dataclass

from brickwork.bricks.spec import BrickSpec

EDIT_UPDATES = ("rank_one", "batch")  # weight deltas: applied to the weights, rolled back
DELTA_UPDATES = (*EDIT_UPDATES, "inject")  # "inject": new neurons added beside the FFN


@dataclass(eq=False, kw_only=True)
class NeuronSetSpec(BrickSpec):
    """Neurons of many layers; ``ranking`` (located knowledge neurons) lists the strongest."""

    n_layers: int
    d_ff: int
    rule: str  # how the neurons were chosen
    neurons_per_layer: list[int]
    ranking: list[dict] | None = None  # [{"layer", "neuron", "score"}], best first


@dataclass(eq=False, kw_only=True)
class NeuronGroupSpec(BrickSpec):
    """One layer's FFN partitioned into groups (experts)."""

    layer: int
    n_groups: int
    group_sizes: list[int]
    method: str


@dataclass(eq=False, kw_only=True)
class LayerSpec(BrickSpec):
    """A whole decoder layer's parameters."""

    layer: int


@dataclass(eq=False, kw_only=True)
class ModelSpec(BrickSpec):
    """A reference to a whole model (a Hub id or a path)."""

    reference: str


@dataclass(eq=False, kw_only=True)
class SteeringSpec(BrickSpec):
    """A vector per listed decoder layer, added ``scale`` times to its output."""

    layers: list[int]
    scale: float = 1.0


@dataclass(eq=False, kw_only=True)
class LoraSpec(BrickSpec):
    """A PEFT LoRA adapter; ``peft_config`` is adapter_config.json's content."""

    peft_config: dict


@dataclass(eq=False, kw_only=True)
class DeltaSpec(BrickSpec):
    """An edit of ``layer`` (and ``more_layers``): a low-rank weight delta (``rank_one`` /
    ``batch``, with the ``rank`` and the fingerprint it leads to) or injected neurons
    (``inject``, with their number)."""

    update: str
    layer: int
    facts: list[dict]
    rank: int | None = None
    more_layers: list[int] | None = None
    result_fingerprint: str | None = None
    neurons: int | None = None

    def check(self) -> list[str]:
        if self.update not in DELTA_UPDATES:
            return [f"'update' must be one of {DELTA_UPDATES}, not {self.update!r}"]
        needs = "neurons" if self.update == "inject" else "rank"
        return (
            [] if getattr(self, needs) is not None else [f"update {self.update!r} needs {needs!r}"]
        )


@dataclass(eq=False, kw_only=True)
class TraceSpec(BrickSpec):
    """Causal-trace scores: how much restoring each layer recovers the answer's probability."""

    layer: int  # the best FFN layer
    ranking: list[int]  # FFN layers, best first
    p_clean: float
    p_corrupt: float
    restored: str  # which state was restored
    noise: float
    samples: int


@dataclass(eq=False, kw_only=True)
class GrownSpec(BrickSpec):
    """Parameters added by growth: the trainable slices and the growth step that made them."""

    slices: dict
    growth: dict


@dataclass(eq=False, kw_only=True)
class VocabularySpec(BrickSpec):
    """An output-vocabulary slice: the LM-head rows of ``n_tokens`` of ``vocab_size`` tokens
    (tensor ``tokens``), computed exactly; the rest are screened so greedy decoding stays exact."""

    vocab_size: int
    n_tokens: int
    rule: str  # how the tokens were chosen
