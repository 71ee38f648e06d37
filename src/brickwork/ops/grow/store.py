"""Save and load grown models: a model directory plus grown.json and the grown parameters.

The directory holds what ``save_pretrained`` writes (config.json with the new layer count, layer
types and FFN width, model.safetensors, the tokenizer: plain transformers loads it, see
portable.py), ``grown.json`` (the base model, the history of
what was grown where, the per-layer FFN widths and experts needed to rebuild the modules, and the
trainable slices) and ``grown-brick/``, a brick with just the grown parameters. A width-grown or
upcycled model has per-layer shapes its config cannot express, so ``load_grown`` builds the model
from the config, reshapes the recorded layers (or trims the padding), loads the weights and checks
the fingerprint.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from brickwork.bricks.brick import Brick
from brickwork.bricks.format import write_brick_files
from brickwork.bricks.specs import GrownSpec
from brickwork.errors import BrickworkError
from brickwork.io import read_versioned_json, write_marked_dir
from brickwork.models.device import cast_parameters
from brickwork.models.device import placement as placement_of
from brickwork.models.experts import MoEFFN, zero_router
from brickwork.models.families import Family, family_for
from brickwork.models.ffn import FfnWeights, build_ffn, ffn_width, read_ffn
from brickwork.models.load import LoadedModel, fingerprint, load_model
from brickwork.ops.grow.portable import save_portable, trim_padding
from brickwork.ops.grow.record import GrownModel, TrainSlice

GROWN_FILE = "grown.json"
GROWN_BRICK = "grown-brick"
FORMAT = "brickwork-grown"
FORMAT_VERSION = 1


def structure(loaded: LoadedModel) -> dict:
    """Per-layer shapes that differ from the config: plain FFN widths and expert layers."""
    family, config = loaded.family, loaded.model.config
    widths, experts = {}, {}
    for index, layer in enumerate(family.layer_modules(loaded.model)):
        mlp = family.ffn(layer)
        if isinstance(mlp, MoEFFN):
            experts[str(index)] = {
                "widths": [ffn_width(family, e) for e in mlp.experts],
                "top_k": mlp.top_k,
                "scale": mlp.scale,
            }
        elif ffn_width(family, mlp) != family.d_ff(config):
            widths[str(index)] = ffn_width(family, mlp)
    return {
        "n_layers": len(family.layer_modules(loaded.model)),
        "ffn_widths": widths,
        "experts": experts,
    }


def grown_brick(grown: GrownModel) -> Brick:
    """The grown (trainable) parameters alone, as a customized brick."""
    params = dict(grown.loaded.model.named_parameters())
    tensors = {}
    for name, part in grown.trainable.items():
        value = params[name].detach()
        if part.dim is not None:
            value = value.narrow(part.dim, part.start, part.count_along(value))
        tensors[name] = value.clone().contiguous()
    spec = GrownSpec(
        slices={k: v.to_json() for k, v in grown.trainable.items()},
        growth=json.loads(json.dumps(grown.history[-1] if grown.history else {})),  # str keys
    )
    return Brick(
        "grown",
        "grown",
        "customized",
        "growth",
        grown.base_model,
        tensors=tensors,
        spec=spec,
        description="parameters added by growth",
    )


def save_grown(grown: GrownModel, target: str | Path) -> Path:
    """Write the grown model directory at ``target`` (it appears whole or not at all)."""

    def write(tmp: Path) -> dict:
        shape = structure(grown.loaded)
        shape |= save_portable(grown.loaded, tmp, shape)
        grown.loaded.tokenizer.save_pretrained(tmp)
        (tmp / GROWN_BRICK).mkdir()
        write_brick_files(grown_brick(grown), tmp / GROWN_BRICK)
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "base_model": grown.base_model,
            "fingerprint": grown.loaded.fingerprint,
            "history": grown.history,
            "structure": shape,
            "trainable": {k: v.to_json() for k, v in grown.trainable.items()},
            "trainable_parameters": grown.trainable_count(),
        }

    return write_marked_dir(target, GROWN_FILE, "grown model", write)


def is_grown(path: str | Path) -> bool:
    return (Path(path) / GROWN_FILE).is_file()


def load_any(
    spec: str, *, trust_remote_code: bool = False, **placement: str | None
) -> LoadedModel | GrownModel:
    """A grown model directory as a GrownModel, anything else through ``load_model``
    (``placement``: its device, dtype and device_map)."""
    if is_grown(spec):
        return load_grown(spec, trust_remote_code=trust_remote_code, **placement)
    return load_model(spec, trust_remote_code=trust_remote_code, **placement)


def load_grown(
    folder: str | Path, *, trust_remote_code: bool = False, **placement: str | None
) -> GrownModel:
    """Rebuild a grown model saved by ``save_grown``, refusing a damaged or foreign directory;
    then place it (``models.device.placement``: device and dtype; no device map)."""
    place = placement_of(**placement)
    folder = Path(folder)
    record = _read_record(folder)
    config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    family = family_for(config)
    model = AutoModelForCausalLM.from_config(
        config, dtype=torch.float32, trust_remote_code=trust_remote_code
    )
    shape = record["structure"]
    padded = "saved_d_ff" in shape  # plain FFNs saved padded to one width (portable.py)
    _reshape(family, model, {**shape, "ffn_widths": {}} if padded else shape)
    _load_weights(model, folder)
    if padded:
        trim_padding(family, model, shape)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Plain transformers loads only a grown model with the stock shapes (grown in depth alone).
    stock = not (shape["experts"] or shape["ffn_widths"])
    location = str(folder.resolve()) if stock else None
    loaded = LoadedModel(model, tokenizer, family, fingerprint(model), str(folder), location)
    if loaded.fingerprint != record["fingerprint"]:
        raise BrickworkError(
            f"grown model {folder} is corrupt: its weights do not match grown.json's fingerprint"
        )
    cast_parameters(model, place)
    trainable = {k: TrainSlice(*v) for k, v in record["trainable"].items()}
    return GrownModel(loaded, record["base_model"], record["history"], trainable)


def _read_record(folder: Path) -> dict:
    return read_versioned_json(folder, GROWN_FILE, "grown model", FORMAT, FORMAT_VERSION)


def _blank(template: FfnWeights, width: int) -> FfnWeights:
    """Zero weights shaped like ``template`` but ``width`` neurons wide."""
    return FfnWeights(
        {k: w.new_zeros(width, w.shape[1]) for k, w in template.inputs.items()},
        {k: None if b is None else b.new_zeros(width) for k, b in template.input_biases.items()},
        template.down.new_zeros(template.down.shape[0], width),
        None if template.down_bias is None else torch.zeros_like(template.down_bias),
    )


def _reshape(family: Family, model: torch.nn.Module, shape: dict) -> None:
    layers = family.layer_modules(model)
    if shape["n_layers"] != len(layers):
        raise BrickworkError(
            f"grown.json says {shape['n_layers']} layers, config has {len(layers)}"
        )
    for index, width in shape["ffn_widths"].items():
        mlp = family.ffn(layers[int(index)])
        setattr(
            layers[int(index)],
            family.mlp,
            build_ffn(family, mlp, _blank(read_ffn(family, mlp), width)),
        )
    for index, spec in shape["experts"].items():
        mlp = family.ffn(layers[int(index)])
        template = read_ffn(family, mlp)
        experts = [build_ffn(family, mlp, _blank(template, w)) for w in spec["widths"]]
        router = zero_router(family, experts)
        moe = MoEFFN(family, experts, router, spec["top_k"], scale=spec["scale"])
        setattr(layers[int(index)], family.mlp, moe)


def _load_weights(model: torch.nn.Module, folder: Path) -> None:
    files = sorted(folder.glob("model*.safetensors")) + sorted(
        folder.glob("upcycled-*.safetensors")
    )
    if not files:
        raise BrickworkError(f"grown model {folder} has no model*.safetensors")
    state = {}
    for file in files:
        state.update(load_file(str(file)))
    result = model.load_state_dict(state, strict=False)
    loaded_ptrs = {model.get_parameter(k).data_ptr() for k in state if _is_param(model, k)}
    untied = [
        k for k in result.missing_keys if model.get_parameter(k).data_ptr() not in loaded_ptrs
    ]
    if untied or result.unexpected_keys:
        raise BrickworkError(
            f"grown model {folder} does not match its grown.json: "
            f"missing {untied[:3]}, unexpected {result.unexpected_keys[:3]}"
        )


def _is_param(model: torch.nn.Module, name: str) -> bool:
    try:
        model.get_parameter(name)
    except AttributeError:
        return False
    return True
