"""Where a model runs and in which precision: ``--device`` and ``--dtype`` resolved once, here.

``auto`` device: CUDA when present, else CPU. ``auto`` dtype: bfloat16 on a GPU, float32 on a
CPU. Names are checked before any model loads, so a bad one is one clear error.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

import torch

from brickwork.errors import BrickworkError

DEVICES = ("auto", "cpu", "cuda", "cuda:N")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_CHOICES = ("auto", *DTYPES)
DEVICE_MAPS = ("auto",)
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def resolve_device(name: str | torch.device) -> torch.device:
    """A torch device from ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, checked on this machine;
    ``auto`` and ``cuda`` name a GPU by index (that of $LOCAL_RANK under torchrun, else 0)."""
    name = str(name)
    if not _DEVICE.match(name):
        raise BrickworkError(f"unknown device {name!r}: use one of {', '.join(DEVICES)}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BrickworkError(f"--device {name}: no CUDA GPU is available on this machine")
        # under torchrun a plain "cuda" is the GPU of this process's LOCAL_RANK
        index = int(name.split(":")[1]) if ":" in name else int(os.environ.get("LOCAL_RANK", 0))
        name = f"cuda:{index}"
        if index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise BrickworkError(f"--device {name}: this machine has {count} CUDA device(s)")
    return torch.device(name)


def resolve_dtype(name: str | torch.dtype, device: torch.device) -> torch.dtype:
    """A torch dtype from ``auto`` (bfloat16 on a GPU, float32 on a CPU) or a dtype name."""
    if isinstance(name, torch.dtype):
        name = str(name).removeprefix("torch.")
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise BrickworkError(f"unknown dtype {name!r}: use one of {', '.join(DTYPE_CHOICES)}")
    dtype = DTYPES[name]
    if dtype != torch.float32 and device.type == "cpu":
        _probe_cpu(dtype)
    return dtype


def _probe_cpu(dtype: torch.dtype) -> None:
    """Refuse a half precision this CPU build of torch cannot run a transformer layer in."""
    x = torch.ones(2, 1, 4, 8, dtype=dtype)
    try:
        torch.nn.functional.scaled_dot_product_attention(x, x, x)
        torch.nn.functional.silu(x @ x.transpose(-1, -2)).softmax(-1).sum()
        torch.nn.functional.layer_norm(x, (8,))
    except RuntimeError as exc:
        name = str(dtype).removeprefix("torch.")
        raise BrickworkError(
            f"--dtype {name} is not supported on CPU by this torch build "
            f"({str(exc).splitlines()[0]}); use --dtype float32 or bfloat16"
        ) from None


class Placement(NamedTuple):
    device: torch.device
    dtype: torch.dtype
    device_map: str | None


def placement(
    device: str | None = None, dtype: str | None = None, device_map: str | None = None
) -> Placement:
    """Checked device, dtype and device map; None reads $BRICKWORK_DEVICE / $BRICKWORK_DTYPE,
    else cpu and float32 (the library's default; the command line's is auto)."""
    if device_map is not None and device_map not in DEVICE_MAPS:
        raise BrickworkError(f"unknown device map {device_map!r}: use one of {DEVICE_MAPS}")
    where = resolve_device(device or os.environ.get("BRICKWORK_DEVICE", "cpu"))
    return Placement(
        where,
        resolve_dtype(dtype or os.environ.get("BRICKWORK_DTYPE", "float32"), where),
        device_map,
    )


def place_model(name_or_path: str, trust_remote_code: bool, place: Placement):
    """(model, fingerprint): the model loaded where ``place`` says, and the fingerprint of its
    float32 weights, so bricks and analyses made in any dtype on any device fit each other.

    On one device the weights load in float32 (hashed), then their parameters are cast to the
    dtype; buffers such as rotary frequencies stay as transformers keeps them. With a device
    map (untested here: no machine with several GPUs) they load in the dtype straight onto the
    devices and hash upcast to float32, the same fingerprint when the checkpoint was stored in
    that dtype (as large models are).
    """
    from transformers import AutoModelForCausalLM

    from brickwork.models.load import fingerprint

    options = {"trust_remote_code": trust_remote_code}
    if place.device_map is not None:
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path, dtype=place.dtype, device_map=place.device_map, **options
        )
        return model, fingerprint(model)
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch.float32, **options)
    weights = fingerprint(model)
    cast_parameters(model, place)
    return model, weights


def cast_parameters(model: torch.nn.Module, place: Placement) -> None:
    """Cast a float32 model's parameters to ``place.dtype`` in place (tied weights stay tied,
    buffers such as rotary frequencies keep their dtype, as transformers loads them) and move
    it to ``place.device``."""
    if place.device_map is not None:
        raise BrickworkError("this model cannot be spread over devices: leave out --device-map")
    if place.dtype != torch.float32:
        for parameter in model.parameters():
            parameter.data = parameter.data.to(place.dtype)
    if place.device.type != "cpu":
        model.to(place.device)


def model_device(model: torch.nn.Module) -> torch.device:
    """Where a model's inputs go: the device of its input embeddings (its first layer when the
    model is split over devices with ``device_map``)."""
    return model.get_input_embeddings().weight.device


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
