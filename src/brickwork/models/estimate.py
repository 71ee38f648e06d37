"""Memory a command needs for a model, from its config alone (no weights are read).

The parameter count is exact: the model is built on PyTorch's ``meta`` device, which allocates
nothing. Activations and statistics are upper-bound formulas:

- inference activations (profile, analysis): the largest live tensors of one layer's forward,
  B x T x (4 hidden + 3 d_ff + heads x T) values, plus the float32 logits of one batch;
- training activations (LoRA bricks): every layer's saved tensors for the backward pass,
  B x T x layers x (10 hidden + 4 d_ff) values, plus float32 logits and their gradient;
- profile statistics: O(layers x d_ff x instances) (``profile/store.py``'s tensors).
"""

from __future__ import annotations

from pathlib import Path

import torch

from brickwork.errors import BrickworkError
from brickwork.models.builtin import BUILTINS
from brickwork.models.families import family_for

GIB = 1024**3


def model_config(spec: str, trust_remote_code: bool = False, cache_dir: Path | None = None):
    """The transformers config of ``spec`` (as ``load_model`` names models), without weights."""
    from transformers import AutoConfig

    from brickwork.models.load import _gguf_cache_dir, cache_root

    root = Path(cache_dir) if cache_dir is not None else cache_root()
    path = BUILTINS[spec].gguf_path(root) if spec in BUILTINS else Path(spec).expanduser()
    try:
        if path.suffix == ".gguf":
            cached = _gguf_cache_dir(path, root)
            if (cached / "config.json").is_file():
                return AutoConfig.from_pretrained(str(cached))
            return AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
        return AutoConfig.from_pretrained(spec, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise BrickworkError(
            f"cannot read the config of {spec}: {str(exc).splitlines()[0]}"
        ) from None


def parameter_count(config) -> int:
    """Exact parameters of the model ``config`` describes (tied weights counted once)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def estimate_memory(
    config,
    dtype: torch.dtype = torch.float32,
    batch_size: int = 8,
    seq_len: int = 256,
    instances: int = 1000,
    functionalities: int = 8,
    lora_fraction: float = 0.01,
) -> dict[str, int]:
    """Bytes for each part, and the totals of profiling/analysis and of brick training."""
    size = torch.finfo(dtype).bits // 8
    weights = parameter_count(config) * size
    parts = {
        "weights": weights,
        "inference_activations": activation_bytes(config, dtype, batch_size, seq_len),
        "training_activations": activation_bytes(config, dtype, batch_size, seq_len, True),
        # LoRA parameters with gradients and two Adam moments, in float32
        "training_state": int(weights / size * lora_fraction) * 4 * 4,
        "profile_statistics": statistics_bytes(config, instances, functionalities),
    }
    parts["analysis_total"] = (
        parts["weights"] + parts["inference_activations"] + parts["profile_statistics"]
    )
    parts["training_total"] = (
        parts["weights"] + parts["training_activations"] + parts["training_state"]
    )
    return parts


def activation_bytes(
    config, dtype: torch.dtype, batch_size: int, seq_len: int, training: bool = False
) -> int:
    """Upper bound of the activations of one batch (see the module's formulas)."""
    text, d_ff = _text_config(config)
    hidden, layers, heads = text.hidden_size, text.num_hidden_layers, text.num_attention_heads
    size = torch.finfo(dtype).bits // 8
    tokens = batch_size * seq_len
    logits = tokens * text.vocab_size * 4
    if training:
        return tokens * layers * (10 * hidden + 4 * d_ff) * size + 2 * logits
    return tokens * (4 * hidden + 3 * d_ff + heads * seq_len) * size + logits


def statistics_bytes(config, instances: int, functionalities: int = 8) -> int:
    """The profile's statistics: O(layers x d_ff x instances)."""
    text, d_ff = _text_config(config)
    return text.num_hidden_layers * d_ff * (instances * 4 + functionalities * 8 + 4)


def _text_config(config):
    """The text part of ``config`` and its FFN width."""
    family = family_for(config)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return text, family.d_ff(text)


def available_memory(device: torch.device) -> int:
    """Free bytes on a CUDA device, or the machine's available RAM for the CPU."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        import psutil
    except ImportError:
        return _meminfo_available()
    return psutil.virtual_memory().available


def _meminfo_available() -> int:
    """MemAvailable from /proc/meminfo (Linux), in bytes."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise BrickworkError("cannot tell the free memory: no psutil and no /proc/meminfo")


# Of the free memory measured after the model has loaded, the share a batch's activations may take.
SAFETY = 0.7
# Largest automatic batch: a CPU gains little past a few dozen prompts per forward pass.
BATCH_CAP = {"cpu": 64, "cuda": 1024}


def auto_batch_size(
    config,
    dtype: torch.dtype,
    device: torch.device,
    seq_len: int,
    *,
    training: bool = False,
    reserved: int = 0,
) -> tuple[int, int, int]:
    """(batch size, free bytes, bytes per prompt): the largest batch whose activation bound fits
    ``SAFETY`` x the device's free memory less ``reserved`` bytes (statistics still to be
    allocated), at least 1 and at most ``BATCH_CAP`` for the device type."""
    free = available_memory(device)
    per_prompt = activation_bytes(config, dtype, 1, seq_len, training)
    fits = int((free * SAFETY - reserved) // per_prompt)
    return max(1, min(fits, BATCH_CAP.get(device.type, BATCH_CAP["cuda"]))), free, per_prompt


def check_weights_fit(config, place, source: str) -> None:
    """Refuse, before any weight is read, a model whose weights alone exceed free memory: on one
    device they load in float32 on the CPU and are cast there (``device.place_model``), then
    move to the device in its dtype. A device map spreads them, so it is not checked."""
    if place.device_map is not None:
        return
    try:
        count = parameter_count(config)
    except ValueError:  # a model type only its repository's own code can build
        return
    needs = [(torch.device("cpu"), count * 4, "float32")]
    if place.device.type != "cpu":
        needs.append((place.device, count * place.dtype.itemsize, str(place.dtype)[6:]))
    for device, need, dtype in needs:
        free = available_memory(device)
        if need > free:
            raise BrickworkError(
                f"{source} needs about {need / GIB:.1f} GiB for its {dtype} weights but {device} "
                f"has {free / GIB:.1f} GiB free: use --device-map auto over several GPUs, or a "
                "machine with more memory (brickwork estimate shows the parts)"
            )
