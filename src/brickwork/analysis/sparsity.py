"""Sparsity (paper §4.2): indicator CDFs, masked-ratio loss curves and CETT thresholds."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from brickwork.analysis.loss import EvalBatch, functionality_losses
from brickwork.analysis.masking import mask_lowest
from brickwork.models.load import LoadedModel
from brickwork.profile.capture import capture_activations
from brickwork.profile.store import Profile

INDICATORS = ("activation", "output")
MASK_RATIOS = tuple(round(0.1 * k, 1) for k in range(10))  # 0%, 10%, ..., 90%


def indicator_cdfs(profile: Profile) -> dict[str, torch.Tensor]:
    """Per indicator, the CDF [L, bins] of normalized values: cdf[l, b] = P(value < (b+1)/bins)."""
    cdfs = {}
    for name in INDICATORS:
        per_layer = profile.tensors[f"hist_{name}"].sum(dim=0).double()  # [L, bins]
        cdfs[name] = per_layer.cumsum(dim=1) / per_layer.sum(dim=1, keepdim=True)
    return cdfs


def masked_ratio_losses(
    loaded: LoadedModel,
    batches: list[EvalBatch],
    n_functionalities: int,
    down_norms: torch.Tensor,
    ratios: tuple[float, ...] = MASK_RATIOS,
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """Per indicator, the loss [len(ratios), F] with the lowest-indicator neurons masked."""
    baseline = functionality_losses(loaded, batches, n_functionalities)
    jobs = [(name, r) for name in INDICATORS for r in ratios if r > 0]
    losses = {name: {0.0: baseline} for name in INDICATORS}
    for name, ratio in tqdm(jobs, desc="masked-ratio curves", disable=not progress):
        norms = down_norms if name == "output" else None
        with mask_lowest(loaded, ratio, norms):
            losses[name][ratio] = functionality_losses(loaded, batches, n_functionalities)
    return {name: torch.stack([losses[name][r] for r in ratios]) for name in INDICATORS}


def rise_ratio(
    ratios: tuple[float, ...], mean_loss: torch.Tensor, rise: float = 0.05
) -> float | None:
    """The masked ratio at which the mean loss first exceeds (1 + rise) x its unmasked value,
    interpolated linearly between grid points; None if it never does on the grid."""
    limit = float(mean_loss[0]) * (1 + rise)
    for i in range(1, len(ratios)):
        low, high = float(mean_loss[i - 1]), float(mean_loss[i])
        if high > limit:
            share = (limit - low) / (high - low) if high != low else 0.0
            return ratios[i - 1] + share * (ratios[i] - ratios[i - 1])
    return None


def collect_token_activations(
    loaded: LoadedModel, batches: list[tuple], max_tokens: int
) -> list[torch.Tensor]:
    """Up to ``max_tokens`` prompt-token activations [tokens, d_ff] per layer."""
    collected: dict[int, list[torch.Tensor]] = {}
    state = {}

    def keep(layer: int, activation: torch.Tensor) -> None:
        collected.setdefault(layer, []).append(activation[state["content"].to(activation.device)])

    device = loaded.device
    with torch.no_grad(), capture_activations(loaded.model, loaded.family, keep):
        for _, input_ids, attention, content in batches:
            state["content"] = content.to(device)
            inputs = {"input_ids": input_ids.to(device), "attention_mask": attention.to(device)}
            loaded.model.base_model(**inputs, use_cache=False)
            if sum(len(t) for t in collected.get(0, [])) >= max_tokens:
                break
    return [torch.cat(collected[i])[:max_tokens] for i in sorted(collected)]


def cett_threshold(
    activations: torch.Tensor,
    down_weight: torch.Tensor,
    ffn_output: torch.Tensor,
    target: float,
    steps: int = 30,
) -> tuple[float, float]:
    """ReLU² Wins' CETT for one layer: binary-search ε so that the mean over tokens of
    ‖Σ_{i: ‖n_i‖ < ε} n_i‖ / ‖FFN(x)‖ reaches ``target``, where n_i = a_i·W_O[:, i].

    Returns (ε, activated ratio): the mean share of neurons with ‖n_i‖ >= ε.
    """
    magnitude = activations.abs() * down_weight.norm(dim=0)  # ‖n_i‖ per token and neuron
    full_norm = ffn_output.norm(dim=-1).clamp_min(1e-12)

    def cett(eps: float) -> float:
        dropped = activations * (magnitude < eps)
        return float(((dropped @ down_weight.t()).norm(dim=-1) / full_norm).mean())

    low, high = 0.0, float(magnitude.max()) * (1 + 1e-6)
    for _ in range(steps):
        middle = (low + high) / 2
        low, high = (middle, high) if cett(middle) < target else (low, middle)
    epsilon = (low + high) / 2
    return epsilon, float((magnitude >= epsilon).float().mean())


def cett_per_layer(
    loaded: LoadedModel, activations: list[torch.Tensor], targets: tuple[float, ...]
) -> dict[float, list[tuple[float, float]]]:
    """For each target CETT, per layer (ε, activated ratio)."""
    family = loaded.family
    result: dict[float, list[tuple[float, float]]] = {t: [] for t in targets}
    with torch.no_grad():
        for layer, acts in zip(family.layer_modules(loaded.model), activations, strict=True):
            weight = family.down_weight(layer).float()
            output = family.down_proj(layer)(acts)  # FFN(x), bias included
            for target in targets:
                result[target].append(cett_threshold(acts.float(), weight, output.float(), target))
    return result
