"""Key statistics of one layer's FFN output projection, from a small built-in corpus.

C = E[k kᵀ] over the corpus tokens, k the input of the down projection (the neuron activations),
is ROME's covariance: a rank-one edit along C⁻¹k* changes the output for keys like k* and as
little as possible for the keys the model usually sees. A sample of the FFN's *inputs* (the
residual stream after the pre-FFN norm) is kept as well, to set the firing threshold of injected
neurons. Cached as safetensors per model fingerprint and layer under the brickwork cache dir.
"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from brickwork.io import replace_atomically
from brickwork.models.ffn import ffn_width
from brickwork.models.hooks import hooks
from brickwork.models.load import LoadedModel, cache_root
from brickwork.ops.update.common import StopForward, down_module, ffn_module, forward_until_stop

DEFAULT_TOKENS = 20_000
MAX_TEXT_TOKENS = 256
INPUT_SAMPLE = 4096  # FFN inputs kept for injection thresholds


def corpus_texts() -> list[str]:
    """Built-in text: the suite's train-split prompts and references, and the fictional facts."""
    from brickwork.data import load_builtin_suite
    from brickwork.data.facts import fact_documents, load_new_facts

    texts = [f"{s.prompt}\n{s.reference or ''}" for s in load_builtin_suite("train")]
    texts += fact_documents(load_new_facts())
    random.Random(0).shuffle(texts)  # every functionality within the first tokens
    return texts


def cache_path(loaded: LoadedModel, layer: int, tokens: int) -> Path:
    key = hashlib.sha256(loaded.fingerprint.encode()).hexdigest()[:16]
    return cache_root() / "update" / "covariance" / key / f"layer{layer:03d}-{tokens}.safetensors"


def layer_statistics(
    loaded: LoadedModel,
    layer: int,
    tokens: int = DEFAULT_TOKENS,
    texts: list[str] | None = None,
    cache: bool = True,
) -> dict:
    """{"cov": E[k kᵀ] [d_ff, d_ff], "inputs": FFN inputs [n, d_model], "tokens": count}."""
    path = cache_path(loaded, layer, tokens)
    if cache and texts is None and path.is_file():
        stats = _read_cache(path, loaded, layer)
        if stats is not None:
            return stats
    stats = _compute(loaded, layer, tokens, texts or corpus_texts())
    if cache and texts is None:
        tensors = {
            "cov": stats["cov"],
            "inputs": stats["inputs"],
            "count": torch.tensor(stats["tokens"]),
        }
        meta = {"fingerprint": loaded.fingerprint, "layer": str(layer)}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            replace_atomically(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
        except OSError as exc:  # a read-only or non-directory cache: go on without it
            print(f"warning: cannot cache statistics in {path.parent} ({exc})", file=sys.stderr)
    return stats


def _read_cache(path: Path, loaded: LoadedModel, layer: int) -> dict | None:
    """The cached statistics, or None (the file deleted, with a warning) when they are
    truncated, of the wrong shape or not finite."""
    d_ff = ffn_width(loaded.family, ffn_module(loaded, layer))
    try:
        stats = load_file(str(path))
        cov, inputs, count = stats["cov"], stats["inputs"], int(stats["count"])
        ok = (
            cov.shape == (d_ff, d_ff)
            and inputs.dim() == 2
            and count > 0
            and bool(torch.isfinite(cov).all() and torch.isfinite(inputs).all())
        )
    except Exception:  # safetensors raises several types for a damaged file
        ok = False
    if ok:
        return {"cov": cov, "inputs": inputs, "tokens": count}
    print(f"warning: corrupt statistics cache {path}: deleted, recomputing", file=sys.stderr)
    path.unlink(missing_ok=True)
    return None


def _compute(loaded: LoadedModel, layer: int, tokens: int, texts: list[str]) -> dict:
    keys, inputs = [], []

    def grab_key(module, args):
        keys.append(args[0].detach()[0].double())

    def stop(module, args, output):
        raise StopForward

    down, ffn = down_module(loaded, layer), ffn_module(loaded, layer)
    specs = [
        (ffn, "forward_pre", lambda m, a: inputs.append(a[0].detach()[0].float())),
        (down, "forward_pre", grab_key),
        (down, "forward", stop),
    ]
    seen = 0
    with hooks(specs):
        for text in texts:
            ids = loaded.tokenizer(text, return_tensors="pt")["input_ids"][:, :MAX_TEXT_TOKENS]
            forward_until_stop(loaded, ids)
            seen += ids.shape[1]
            if seen >= tokens:
                break
    k = torch.cat(keys)
    x = torch.cat(inputs)
    generator = torch.Generator().manual_seed(0)
    sample = x[torch.randperm(len(x), generator=generator)[:INPUT_SAMPLE]]
    return {"cov": (k.T @ k / len(k)).float(), "inputs": sample.contiguous(), "tokens": len(k)}


def inverse(cov: torch.Tensor | None, d: int, ridge: float = 1e-3) -> torch.Tensor:
    """(C + ridge·mean(diag C)·I)⁻¹ in float64; the identity when ``cov`` is None."""
    if cov is None:
        return torch.eye(d, dtype=torch.float64)
    c = cov.double()
    c = c + ridge * c.diagonal().mean() * torch.eye(len(c), dtype=torch.float64)
    return torch.linalg.inv(c)
