"""All model-family knowledge, as data: one frozen record per supported ``model_type``.

Adding a family means adding one record here plus its tiny config in the contract tests
(see docs/adding_a_family.md). Nothing else in brickwork branches on the family.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from brickwork.errors import BrickworkError


@dataclass(frozen=True)
class Family:
    """Where the FFN lives in one model family and how it is wired.

    A neuron's activation is the input of ``down`` (the FFN output projection). For a gated FFN
    it is act(gate(x)) * up(x); for a plain FFN (gate is None) it is act(up(x)).
    """

    name: str  # the config's model_type
    layers: str  # dotted path from the *ForCausalLM model to the decoder layer list
    mlp: str  # attribute of a decoder layer holding the FFN
    gate: str | None  # FFN gate projection, None for a plain (ungated) FFN
    up: str  # FFN input projection
    down: str  # FFN output projection; its input is the neuron activation
    act_attrs: tuple[str, ...]  # config attributes naming the activation, first present wins
    d_ff_attr: str  # config attribute holding the FFN width
    conv1d: bool = False  # GPT-2 style Conv1D: weight is [in, out], transposed vs nn.Linear

    def activation_name(self, config) -> str:
        for attr in self.act_attrs:
            value = getattr(config, attr, None)
            if value:
                return value
        raise BrickworkError(f"{self.name} config names no activation in {self.act_attrs}")

    def d_ff(self, config) -> int:
        value = getattr(config, self.d_ff_attr, None)
        # GPT-2 leaves n_inner unset to mean 4 * hidden size.
        return int(value) if value else 4 * int(config.hidden_size)

    def layer_modules(self, model: nn.Module) -> list[nn.Module]:
        obj = model
        for part in self.layers.split("."):
            obj = getattr(obj, part)
        return list(obj)

    def ffn(self, layer: nn.Module) -> nn.Module:
        return getattr(layer, self.mlp)

    def down_proj(self, layer: nn.Module) -> nn.Module:
        return getattr(self.ffn(layer), self.down)

    def logits(self, model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """The LM head on final hidden states (of any positions), with Gemma's soft cap if set."""
        logits = model.get_output_embeddings()(hidden)
        cap = getattr(model.config, "final_logit_softcapping", None)
        return torch.tanh(logits / cap) * cap if cap else logits

    def input_weight(self, layer: nn.Module) -> torch.Tensor:
        """The gate (or, ungated, the input) projection as [d_ff, d_model]: row i feeds neuron i."""
        weight = getattr(self.ffn(layer), self.gate or self.up).weight
        return weight.t() if self.conv1d else weight

    def down_weight(self, layer: nn.Module) -> torch.Tensor:
        """The output projection as a [d_model, d_ff] matrix: column i is neuron i's output."""
        weight = self.down_proj(layer).weight
        return weight.t() if self.conv1d else weight


_LLAMA_LIKE = dict(
    layers="model.layers",
    mlp="mlp",
    gate="gate_proj",
    up="up_proj",
    down="down_proj",
    act_attrs=("hidden_act",),
    d_ff_attr="intermediate_size",
)
_GEMMA_LIKE = dict(_LLAMA_LIKE, act_attrs=("hidden_activation", "hidden_act"))

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(name="llama", **_LLAMA_LIKE),
        Family(name="mistral", **_LLAMA_LIKE),
        Family(name="qwen2", **_LLAMA_LIKE),
        Family(name="qwen3", **_LLAMA_LIKE),
        Family(name="gemma2", **_GEMMA_LIKE),
        Family(name="gemma3_text", **_GEMMA_LIKE),
        Family(
            name="gpt2",
            layers="transformer.h",
            mlp="mlp",
            gate=None,
            up="c_fc",
            down="c_proj",
            act_attrs=("activation_function",),
            d_ff_attr="n_inner",
            conv1d=True,
        ),
    )
}


def family_for(config) -> Family:
    """The family record for a transformers config, or a clear error naming the supported ones."""
    model_type = getattr(config, "model_type", None)
    if model_type not in FAMILIES:
        supported = ", ".join(sorted(FAMILIES))
        raise BrickworkError(
            f"unsupported model family {model_type!r}; supported families: {supported}"
        )
    return FAMILIES[model_type]
