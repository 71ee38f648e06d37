"""The built-in brick kinds, registered once when ``brickwork.bricks`` is imported.

Kinds attach in this order; LoRA comes last because its attach wraps the model. LoRA and steering
are kinds of their own in the group ``plugin`` (listings filtered by ``plugin`` show both).
"""

from __future__ import annotations

from brickwork.bricks.attach import attach_deltas, attach_loras, attach_neuron_sets, attach_steering
from brickwork.bricks.kinds import register_brick_kind
from brickwork.bricks.plugins import lora_on_compact, write_peft_files
from brickwork.bricks.recovery import RecoverySpec, attach_recovery
from brickwork.bricks.specs import (
    DeltaSpec,
    GrownSpec,
    LayerSpec,
    LoraSpec,
    ModelSpec,
    NeuronGroupSpec,
    NeuronSetSpec,
    SteeringSpec,
    TraceSpec,
    VocabularySpec,
)
from brickwork.bricks.vocabulary import attach_vocabulary

register_brick_kind("neuron_set", NeuronSetSpec, attach=attach_neuron_sets, tensors=("mask",))
register_brick_kind("neuron_group", NeuronGroupSpec, tensors=("assignment",))
register_brick_kind("layer", LayerSpec)
register_brick_kind("model", ModelSpec)
register_brick_kind("delta", DeltaSpec, attach=attach_deltas)
register_brick_kind("trace", TraceSpec, tensors=("hidden_scores", "mlp_scores"))
register_brick_kind("grown", GrownSpec)
register_brick_kind("recovery", RecoverySpec, attach=attach_recovery)  # bound to a compact model
register_brick_kind(
    "steering",
    SteeringSpec,
    attach=attach_steering,
    compact=lambda brick, sliced: None,  # adds to layer outputs: any compact model takes it
    group="plugin",
    tensors=("vectors",),
)
register_brick_kind(
    "vocabulary",
    VocabularySpec,
    attach=attach_vocabulary,
    compact=lambda brick, sliced: None,  # replaces the LM head only: any compact model takes it
    tensors=("tokens",),
)
register_brick_kind(
    "lora",
    LoraSpec,
    attach=attach_loras,
    write_files=write_peft_files,
    compact=lora_on_compact,
    group="plugin",
)
