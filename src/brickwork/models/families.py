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
    # Growth (ops/grow): the decoder-layer modules whose outputs are added to the residual stream
    # (attention output and FFN output projections), and the norms applied to those outputs
    # before the add (Gemma's post-attention/post-FFN norms; they scale by norm_offset + weight).
    residual_writers: tuple[str, ...] = ("self_attn.o_proj", "mlp.down_proj")
    residual_norms: tuple[str, ...] = ()
    norm_offset: float = 0.0

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
        return list(self.layer_list(model))

    def layer_list(self, model: nn.Module) -> nn.ModuleList:
        """The decoder layers' ModuleList itself (to insert or replace layers)."""
        obj = model
        for part in self.layers.split("."):
            obj = getattr(obj, part)
        return obj

    def new_projection(self, d_in: int, d_out: int, bias: bool) -> nn.Module:
        """A new FFN projection of this family's kind (nn.Linear, or GPT-2's always-biased
        Conv1D), to be filled by the caller."""
        if self.conv1d:
            from transformers.pytorch_utils import Conv1D

            return Conv1D(d_out, d_in)
        return nn.Linear(d_in, d_out, bias=bias)

    def renumber_layers(self, model: nn.Module) -> None:
        """Set ``layer_idx`` (the KV-cache slot) of every decoder layer and its attention to the
        layer's position, after layers were inserted or removed."""
        for index, layer in enumerate(self.layer_list(model)):
            for module in layer.modules():
                if isinstance(getattr(module, "layer_idx", None), int):
                    module.layer_idx = index

    def ffn(self, layer: nn.Module) -> nn.Module:
        return getattr(layer, self.mlp)

    def down_proj(self, layer: nn.Module) -> nn.Module:
        return getattr(self.ffn(layer), self.down)

    def logits(self, model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """The LM head on final hidden states (of any positions), with Gemma's soft cap if set."""
        logits = model.get_output_embeddings()(hidden)
        cap = getattr(model.config, "final_logit_softcapping", None)
        return torch.tanh(logits / cap) * cap if cap else logits

    def as_matrix(self, weight: torch.Tensor) -> torch.Tensor:
        """An FFN projection's stored weight as an [out, in] matrix, or such a matrix as the
        stored weight: Conv1D stores [in, out], so this is a transpose (its own inverse) there
        and the identity otherwise. The one place that knows the layouts differ."""
        return weight.t() if self.conv1d else weight

    def input_weight(self, layer: nn.Module) -> torch.Tensor:
        """The gate (or, ungated, the input) projection as [d_ff, d_model]: row i feeds neuron i."""
        return self.as_matrix(getattr(self.ffn(layer), self.gate or self.up).weight)

    def down_weight(self, layer: nn.Module) -> torch.Tensor:
        """The output projection as a [d_model, d_ff] matrix: column i is neuron i's output."""
        return self.as_matrix(self.down_proj(layer).weight)


_LLAMA_LIKE = dict(
    layers="model.layers",
    mlp="mlp",
    gate="gate_proj",
    up="up_proj",
    down="down_proj",
    act_attrs=("hidden_act",),
    d_ff_attr="intermediate_size",
)
_GEMMA_LIKE = dict(
    _LLAMA_LIKE,
    act_attrs=("hidden_activation", "hidden_act"),
    residual_norms=("post_attention_layernorm", "post_feedforward_layernorm"),
    norm_offset=1.0,  # Gemma's RMSNorm multiplies by (1 + weight)
)

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
            residual_writers=("attn.c_proj", "mlp.c_proj"),
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
