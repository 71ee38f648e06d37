"""The instruction router: which functionality an instruction needs, from the model's own states.

Features are the prompt's hidden states, mean-pooled over its tokens, at a few depths of the base
model (the prompt in the chat template, as everywhere else). A multinomial logistic regression
(scikit-learn) over standardized features is trained on the train split only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from brickwork.analysis.loss import prompt_prefix
from brickwork.data.sample import Sample
from brickwork.errors import BrickworkError
from brickwork.io import replace_atomically
from brickwork.models.load import LoadedModel

MAX_PROMPT_TOKENS = 192  # as configure/prompted.py


@dataclass
class Router:
    functionalities: list[str]
    layers: list[int]  # hidden-state indices pooled (0 = embeddings)
    mean: torch.Tensor  # [features]
    std: torch.Tensor  # [features]
    weight: torch.Tensor  # [F, features]
    bias: torch.Tensor  # [F]
    base_model: str  # fingerprint of the model whose states it reads

    def probabilities(self, features: torch.Tensor) -> torch.Tensor:
        """Class probabilities [N, F] for pooled features [N, features]."""
        z = (features.float() - self.mean) / self.std
        return torch.softmax(z @ self.weight.t() + self.bias, dim=-1)


def router_layers(n_layers: int) -> list[int]:
    """Hidden states at a quarter, half, three quarters and the end of the stack."""
    return sorted({max(1, round(n_layers * q)) for q in (0.25, 0.5, 0.75, 1.0)})


def pool_hidden(
    hidden_states: tuple[torch.Tensor, ...],
    layers: list[int],
    attention: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over (unpadded) tokens of the chosen hidden states, concatenated: [B, features]."""
    pooled = []
    for index in layers:
        h = hidden_states[index].float()
        if attention is None:
            pooled.append(h.mean(dim=1))
        else:
            w = attention[..., None].float()
            pooled.append((h * w).sum(dim=1) / w.sum(dim=1).clamp_min(1))
    return torch.cat(pooled, dim=-1)


def prompt_features(
    loaded: LoadedModel,
    prompts: list[str],
    layers: list[int],
    batch_size: int = 8,
    progress: bool = False,
) -> torch.Tensor:
    """Pooled hidden-state features [N, features] of chat-formatted prompts (right padded)."""
    pad = loaded.tokenizer.pad_token_id
    rows = []
    starts = range(0, len(prompts), batch_size)
    for i in tqdm(starts, desc="router features", disable=not progress, leave=False):
        # All but the last prompt token: the tokens the configured pipeline's dense prefill sees.
        ids = [_pooled_tokens(loaded.tokenizer, p) for p in prompts[i : i + batch_size]]
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        for row, x in enumerate(ids):
            input_ids[row, : len(x)] = torch.tensor(x)
            attention[row, : len(x)] = 1
        with torch.no_grad():
            out = loaded.model.base_model(
                input_ids=input_ids,
                attention_mask=attention,
                output_hidden_states=True,
                use_cache=False,
            )
        rows.append(pool_hidden(out.hidden_states, layers, attention))
    return torch.cat(rows)


def _pooled_tokens(tokenizer, prompt: str) -> list[int]:
    ids = prompt_prefix(tokenizer, prompt)[-MAX_PROMPT_TOKENS:]
    return ids[:-1] if len(ids) > 1 else ids


def train_router(
    loaded: LoadedModel, samples: list[Sample], c: float = 0.1, progress: bool = False
) -> Router:
    """Fit the router on ``samples`` (pass the train split only)."""
    from sklearn.linear_model import LogisticRegression

    functionalities = sorted({s.functionality for s in samples})
    if len(functionalities) < 2:
        raise BrickworkError("the router needs samples of at least two functionalities")
    n_layers = len(loaded.family.layer_modules(loaded.model))
    layers = router_layers(n_layers)
    x = prompt_features(loaded, [s.prompt for s in samples], layers, progress=progress)
    y = np.array([functionalities.index(s.functionality) for s in samples])
    mean, std = x.mean(dim=0), x.std(dim=0).clamp_min(1e-6)
    fit = LogisticRegression(C=c, max_iter=2000).fit(((x - mean) / std).numpy(), y)
    return Router(
        functionalities,
        layers,
        mean,
        std,
        torch.from_numpy(fit.coef_).float(),
        torch.from_numpy(fit.intercept_).float(),
        loaded.fingerprint,
    )


def route(router: Router, loaded: LoadedModel, prompts: list[str]) -> torch.Tensor:
    """Functionality probabilities [N, F] for ``prompts``."""
    check_router(router, loaded)
    return router.probabilities(prompt_features(loaded, prompts, router.layers))


def check_router(router: Router, loaded: LoadedModel) -> None:
    if router.base_model != loaded.fingerprint:
        raise BrickworkError(
            f"the router was trained on base model {router.base_model}, "
            f"not this model ({loaded.fingerprint})"
        )


def router_accuracy(
    router: Router, loaded: LoadedModel, prompts: list[str], expected: list[str]
) -> dict:
    """Top-1 accuracy and the predicted label counts."""
    probs = route(router, loaded, prompts)
    predicted = [router.functionalities[i] for i in probs.argmax(dim=-1).tolist()]
    hits = [p == e for p, e in zip(predicted, expected, strict=True)]
    counts = {f: predicted.count(f) for f in sorted(set(predicted))}
    return {"accuracy": sum(hits) / len(hits), "n": len(hits), "predicted": counts}


def save_router(router: Router, path: str | Path) -> Path:
    tensors = {"mean": router.mean, "std": router.std, "weight": router.weight, "bias": router.bias}
    meta = {
        "functionalities": json.dumps(router.functionalities),
        "layers": json.dumps(router.layers),
        "base_model": router.base_model,
    }
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    return replace_atomically(Path(path), lambda tmp: save_file(tensors, str(tmp), meta))


def load_router(path: str | Path) -> Router:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise BrickworkError(f"no router file at {path}")
    with safe_open(str(path), "pt") as handle:
        meta = handle.metadata() or {}
    if "functionalities" not in meta:
        raise BrickworkError(f"{path} is not a router file")
    t = load_file(str(path))
    return Router(
        json.loads(meta["functionalities"]),
        json.loads(meta["layers"]),
        t["mean"],
        t["std"],
        t["weight"],
        t["bias"],
        meta["base_model"],
    )
