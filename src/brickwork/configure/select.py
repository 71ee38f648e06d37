"""Which FFN neurons a configured model keeps: per-layer top-k of a score, under a budget.

Scores, all [layers, d_ff]:
- functionality (static, chosen by the router): the routed functionality's neuron set and the
  resident neurons first, then the rest by importance = mean |activation| over that
  functionality's *train* instances x the neuron's output-weight norm ||W_down[:, i]||;
- prompt (GRIFFIN, Dong et al. 2024): the prompt's own activations, each token's activation
  vector L2-normalized, then the L2 norm over tokens, optionally mixed with the functionality
  importance;
- instruction-agnostic controls: weight magnitude ||gate_i||·||up_i||·||down_i|| ("magnitude")
  and importance over all train instances regardless of functionality ("generic").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from brickwork.configure.compact import check_budget
from brickwork.errors import BrickworkError
from brickwork.models.ffn import down_matrix, input_matrix, input_names
from brickwork.models.load import LoadedModel
from brickwork.registry import Registry


@dataclass
class SelectionStats:
    """Train-split statistics from an analysis directory (``brickwork analyze --out DIR``)."""

    functionalities: list[str]
    importance: torch.Tensor  # [F, L, D] mean |a| on train instances x ||W_down[:, i]||
    neuron_sets: torch.Tensor  # [F, L, D] bool: the top-FuncScore set of each functionality
    resident: torch.Tensor  # [L, D] bool: always-needed neurons
    generic: torch.Tensor  # [L, D] importance over all train instances
    base_model: str  # fingerprint

    def index(self, functionality: str) -> int:
        if functionality not in self.functionalities:
            known = ", ".join(self.functionalities)
            raise BrickworkError(f"unknown functionality {functionality!r}; known: {known}")
        return self.functionalities.index(functionality)


def load_stats(analysis_dir: str | Path) -> SelectionStats:
    """Read the train-split statistics the selection needs from an analysis directory."""
    from brickwork.analysis.store import load_analysis

    saved = load_analysis(analysis_dir)
    profile = saved.profile()
    functionalities = saved.results.functionalities
    splits = profile.meta["sample_splits"]
    labels = profile.meta["sample_functionalities"]
    acts = profile.tensors["instance_mean_abs"].float()
    norms = profile.tensors["down_norms"].float()
    train = [i for i, s in enumerate(splits) if s == "train"]
    per_f = []
    for f in functionalities:
        rows = [i for i in train if labels[i] == f]
        per_f.append(acts[rows].mean(dim=0) * norms)
    sets = torch.stack([saved.neuron_sets[f"top/{i}"] for i in range(len(functionalities))])
    return SelectionStats(
        functionalities,
        torch.stack(per_f),
        sets,
        saved.neuron_sets["resident"],
        acts[train].mean(dim=0) * norms,
        saved.results.provenance.model_fingerprint,
    )


def check_stats(stats: SelectionStats, loaded: LoadedModel) -> None:
    loaded.require_base(stats.base_model, "the selection statistics")


def top_per_layer(
    score: torch.Tensor, budget: float, first: torch.Tensor | None = None
) -> list[torch.Tensor]:
    """Sorted indices of the top ``budget`` share of each layer's neurons by ``score``.

    Neurons in ``first`` [L, D] come before all others (by score among themselves).
    """
    check_budget(budget)
    layers, d_ff = score.shape
    k = max(1, round(budget * d_ff))
    ranked = score.float().clone()
    if first is not None:
        ranked = ranked + first.float() * (ranked.abs().max() * 2 + 1)
    return [row.topk(k).indices.sort().values for row in ranked]


def functionality_weights(stats: SelectionStats, mix: dict[str, float]) -> torch.Tensor:
    """Normalized weights [F] from {functionality: weight}."""
    weights = torch.zeros(len(stats.functionalities))
    for name, w in mix.items():
        weights[stats.index(name)] = float(w)
    if weights.sum() <= 0:
        raise BrickworkError("the functionality mix needs a positive weight")
    return weights / weights.sum()


def functionality_selection(
    stats: SelectionStats, mix: dict[str, float], budget: float
) -> list[torch.Tensor]:
    """Static selection for a functionality mix: its neuron sets + resident, then importance."""
    weights = functionality_weights(stats, mix)
    importance = torch.einsum("f,fld->ld", weights, stats.importance)
    chosen = stats.neuron_sets[weights > 0].any(dim=0) | stats.resident
    return top_per_layer(importance, budget, first=chosen)


def baseline_selection(
    kind: str, budget: float, loaded: LoadedModel | None = None, stats: SelectionStats | None = None
) -> list[torch.Tensor]:
    """Instruction-agnostic control ``kind`` (a registered baseline, ``BASELINES``): weight
    magnitude, or importance over all train data."""
    return top_per_layer(BASELINES[kind].score(loaded, stats), budget)


def weight_magnitude(loaded: LoadedModel) -> torch.Tensor:
    """||gate row i||·||up row i||·||down column i|| per layer and neuron [L, D]."""
    family = loaded.family
    rows = []
    for layer in family.layer_modules(loaded.model):
        ffn = family.ffn(layer)
        score = down_matrix(family, ffn).detach().float().norm(dim=0)
        for name in input_names(family):
            score = score * input_matrix(family, ffn, name).detach().float().norm(dim=1)
        rows.append(score)
    return torch.stack(rows)


def prompt_scores(activations: list[torch.Tensor]) -> torch.Tensor:
    """GRIFFIN's neuron scores [L, D] from per-layer prompt activations [T, D] (one prompt)."""
    rows = []
    for a in activations:
        a = a.float().reshape(-1, a.shape[-1])
        rows.append(torch.nn.functional.normalize(a, dim=-1).norm(dim=0))
    return torch.stack(rows)


def prompt_selection(
    scores: torch.Tensor,
    budget: float,
    prior: torch.Tensor | None = None,
    mix: float = 0.0,
    allocation: str = "uniform",
) -> list[torch.Tensor]:
    """Top neurons by the prompt's scores, optionally mixed with a prior importance [L, D].

    ``allocation="mass"`` gives layers different widths (same total): each layer keeps the
    fewest neurons that hold the same share of its squared score mass.
    """
    score = scores / scores.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    if prior is not None and mix > 0:
        score = score + mix * prior / prior.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    if allocation == "uniform":
        return top_per_layer(score, budget)
    if allocation != "mass":
        raise BrickworkError(f"allocation must be 'uniform' or 'mass', not {allocation!r}")
    widths = mass_widths(score, budget)
    return [row.topk(k).indices.sort().values for row, k in zip(score, widths, strict=True)]


def mass_widths(score: torch.Tensor, budget: float, floor: float = 0.5) -> list[int]:
    """Per-layer widths summing to ~budget·L·D: the smallest k holding share q of each layer's
    squared score mass, q found by bisection; no layer gets under ``floor`` x the uniform k."""
    check_budget(budget)
    layers, d_ff = score.shape
    mass = score.float().pow(2).sort(dim=-1, descending=True).values.cumsum(dim=-1)
    mass = mass / mass[:, -1:].clamp_min(1e-12)
    target, least = budget * layers * d_ff, max(1, round(floor * budget * d_ff))

    def widths(q: float) -> torch.Tensor:
        return ((mass < q).sum(dim=-1) + 1).clamp(least, d_ff)

    low, high = 0.0, 1.0
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (mid, high) if widths(mid).sum() < target else (low, mid)
    return widths(low).tolist()


@dataclass(frozen=True)
class Baseline:
    """A registered instruction-agnostic control: ``score(loaded, stats)`` gives neuron scores
    [L, D] from the model or the analysis statistics, refusing when the one it needs is None.
    Adding a baseline is one score function and one entry in ``BASELINES``."""

    name: str
    score: Callable[[LoadedModel | None, SelectionStats | None], torch.Tensor]


def _magnitude(loaded: LoadedModel | None, stats: SelectionStats | None) -> torch.Tensor:
    if loaded is None:
        raise BrickworkError("magnitude pruning needs the model")
    return weight_magnitude(loaded)


def _generic(loaded: LoadedModel | None, stats: SelectionStats | None) -> torch.Tensor:
    if stats is None:
        raise BrickworkError("the generic baseline needs the analysis statistics")
    return stats.generic


BASELINES: Registry[Baseline] = Registry(
    "baseline", (Baseline("magnitude", _magnitude), Baseline("generic", _generic))
)
