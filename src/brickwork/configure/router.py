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

from brickwork.data.sample import Sample
from brickwork.errors import BrickworkError
from brickwork.io import replace_atomically
from brickwork.models.load import LoadedModel, cache_root
from brickwork.models.states import prompt_states

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


def pool_hidden(hidden_states, layers: list[int]) -> torch.Tensor:
    """Mean over the tokens of the chosen hidden states ({index: [B, T, hidden]}), concatenated:
    [B, features] (the configured pipeline's router input, from its dense prefill)."""
    return torch.cat([hidden_states[index].float().mean(dim=1) for index in layers], dim=-1)


def prompt_features(
    loaded: LoadedModel,
    prompts: list[str],
    layers: list[int],
    batch_size: int = 8,
    progress: bool = False,
) -> torch.Tensor:
    """Features [N, features]: each chat-formatted prompt's mean state at each of ``layers``
    (hidden-state indices), concatenated. The states are those of the prompt's last
    MAX_PROMPT_TOKENS but its very last: the tokens the configured pipeline's dense prefill sees."""
    states = prompt_states(
        loaded,
        prompts,
        layers,
        chat=True,
        max_tokens=MAX_PROMPT_TOKENS,
        drop_last=True,
        batch_size=batch_size,
        progress="router features" if progress else None,
    )
    return torch.cat([states[(layer, "mean")] for layer in layers], dim=-1)


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
    loaded.require_base(router.base_model, "the router")


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
    try:
        with safe_open(str(path), "pt") as handle:
            meta = handle.metadata() or {}
        t = load_file(str(path)) if "functionalities" in meta else {}
        if t:
            return Router(
                json.loads(meta["functionalities"]),
                json.loads(meta["layers"]),
                t["mean"],
                t["std"],
                t["weight"],
                t["bias"],
                meta["base_model"],
            )
    except Exception:  # safetensors and JSON raise many types for a damaged file
        pass
    raise BrickworkError(f"{path} is not a router file (from `brickwork route`)")


def router_cache_path(loaded: LoadedModel) -> Path:
    """Where the default router of ``loaded`` is cached (per base-model fingerprint)."""
    return cache_root() / "routers" / f"{loaded.fingerprint}.safetensors"


def default_router(loaded: LoadedModel, progress: bool = False) -> Router:
    """The router trained on the built-in suite's train split for ``loaded``: trained on first
    use and cached per base model, so ``--configure auto`` works without a router file."""
    import sys

    from brickwork.data import load_builtin_suite

    path = router_cache_path(loaded)
    if path.is_file():
        try:
            router = load_router(path)
            if router.base_model == loaded.fingerprint:
                return router
        except BrickworkError:
            pass  # a damaged cache entry is trained again and replaced
    print(
        f"training the instruction router for this model once (cached in {path})", file=sys.stderr
    )
    router = train_router(loaded, load_builtin_suite("train"), progress=progress)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_router(router, path)
    except OSError as exc:
        print(f"warning: the router could not be cached ({exc})", file=sys.stderr)
    return router
