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
    family = family_for(config)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden, layers = text.hidden_size, text.num_hidden_layers
    d_ff, vocab, heads = family.d_ff(text), text.vocab_size, text.num_attention_heads
    size = torch.finfo(dtype).bits // 8
    tokens = batch_size * seq_len
    logits = tokens * vocab * 4
    weights = parameter_count(config) * size
    parts = {
        "weights": weights,
        "inference_activations": tokens * (4 * hidden + 3 * d_ff + heads * seq_len) * size + logits,
        "training_activations": tokens * layers * (10 * hidden + 4 * d_ff) * size + 2 * logits,
        # LoRA parameters with gradients and two Adam moments, in float32
        "training_state": int(weights / size * lora_fraction) * 4 * 4,
        "profile_statistics": layers * d_ff * (instances * 4 + functionalities * 8 + 4),
    }
    parts["analysis_total"] = (
        parts["weights"] + parts["inference_activations"] + parts["profile_statistics"]
    )
    parts["training_total"] = (
        parts["weights"] + parts["training_activations"] + parts["training_state"]
    )
    return parts


def available_memory(device: torch.device) -> int:
    """Free bytes on a CUDA device, or the machine's available RAM for the CPU."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    import psutil

    return psutil.virtual_memory().available
