"""Grown model directories that plain ``transformers`` loads.

A stock config has one FFN width for every layer. A width-grown model is saved with every plain
FFN padded to the widest one by neurons whose weights are all zero (they add exactly nothing),
and config.json names that width; ``load_grown`` trims the padding away again, so brickwork sees
the exact grown model. Upcycled experts have no stock config at all: their weights are saved
under a name transformers does not look for (it then refuses the directory instead of silently
re-initializing the experts), with a README saying to load them through brickwork.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from brickwork.models.families import Family
from brickwork.models.ffn import build_ffn, neuron_dims, read_ffn
from brickwork.models.load import LoadedModel

UPCYCLED_WEIGHTS = "upcycled-model.safetensors"
UPCYCLED_README = """# Upcycled mixture-of-experts model (brickwork)

Layers {layers} were upcycled into experts, which no stock transformers config describes, so
the weights are in `{weights}` rather than `model.safetensors` and
`AutoModelForCausalLM.from_pretrained` refuses this directory. Load it with brickwork:
`brickwork generate --model DIR ...` or `brickwork.load_model("DIR")`.
"""


def padded_state(
    loaded: LoadedModel, widths: dict[str, int], target: int | None = None
) -> tuple[dict, int]:
    """(state dict with every plain FFN zero-padded to ``target`` (None: the widest of
    ``widths`` and the config's), that width); a layer not in ``widths`` has the config's."""
    family, model = loaded.family, loaded.model
    config_width = family.d_ff(model.config)
    target = target or max([config_width, *widths.values()])
    state = dict(model.state_dict())
    names = {id(module): name for name, module in model.named_modules()}
    for index, layer in enumerate(family.layer_modules(model)):
        missing = target - widths.get(str(index), config_width)
        if missing == 0:
            continue
        prefix = names[id(family.ffn(layer))]
        for param, dim in neuron_dims(family).items():
            key = f"{prefix}.{param}"
            if key in state:
                shape = list(state[key].shape)
                shape[dim] = missing
                state[key] = torch.cat([state[key], state[key].new_zeros(shape)], dim=dim)
    return state, target


def save_padded(
    loaded: LoadedModel, folder: Path, widths: dict[str, int], target: int | None = None
) -> int:
    """Save the model's weights zero-padded (``padded_state``) with a config.json naming the
    padded FFN width, which it returns."""
    state, width = padded_state(loaded, widths, target)
    loaded.model.save_pretrained(folder, state_dict=state)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config[loaded.family.d_ff_attr] = width
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return width


def save_portable(loaded: LoadedModel, folder: Path, shape: dict) -> dict:
    """Write the model's weights and config.json into ``folder`` for plain transformers (see the
    module doc); returns what ``load_grown`` needs to undo the padding."""
    model, family = loaded.model, loaded.family
    if shape["experts"]:
        model.save_pretrained(folder)
        for file in folder.glob("model*.safetensors*"):
            file.rename(folder / f"upcycled-{file.name}")
        readme = UPCYCLED_README.format(
            layers=", ".join(shape["experts"]), weights=UPCYCLED_WEIGHTS
        )
        (folder / "README.md").write_text(readme, encoding="utf-8")
        return {}
    if not shape["ffn_widths"]:
        model.save_pretrained(folder)
        return {}
    width = save_padded(loaded, folder, shape["ffn_widths"])
    raw = getattr(model.config, family.d_ff_attr)  # GPT-2's n_inner may be None (4 x hidden)
    return {"saved_d_ff": width, "config_d_ff": family.d_ff(model.config), "config_value": raw}


def trim_padding(family: Family, model: torch.nn.Module, shape: dict) -> None:
    """Undo ``save_portable``'s padding: cut each plain FFN back to its recorded width and the
    config back to its own FFN width."""
    config_width = shape["config_d_ff"]
    for index, layer in enumerate(family.layer_modules(model)):
        width = shape["ffn_widths"].get(str(index), config_width)
        if width < shape["saved_d_ff"]:
            mlp = family.ffn(layer)
            kept = read_ffn(family, mlp).select(torch.arange(width))
            setattr(layer, family.mlp, build_ffn(family, mlp, kept))
    setattr(model.config, family.d_ff_attr, shape["config_value"])
