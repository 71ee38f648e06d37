"""Emergent brick extraction from an analysis directory (`brickwork analyze --out DIR`).

- Neuron sets: one brick per functionality from the top-FuncScore selection (and one without
  resident neurons), with the rule and the measured ablation effects recorded.
- Neuron groups (MoEfication): each layer's FFN neurons split into equal-size groups by balanced
  k-means, either on the normalized gate/input weight rows ("weights") or on the neurons'
  per-instance activation profiles from the profile ("coactivation").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans

from brickwork.analysis.results import AnalysisResults
from brickwork.analysis.store import load_analysis
from brickwork.bricks.brick import Brick, neuron_group_brick, neuron_set_brick
from brickwork.errors import BrickworkError
from brickwork.models.load import LoadedModel

GROUP_METHODS = ("weights", "coactivation")


def neuron_set_bricks(
    results: AnalysisResults, neuron_sets: dict[str, torch.Tensor]
) -> list[Brick]:
    """One neuron-set brick per functionality, plain and with resident neurons excluded."""
    ablation = results.ablation
    where = "per layer" if ablation.selection == "per-layer" else "over all layers"
    rule = (
        f"top {ablation.fraction:.1%} of neurons {where} by FuncScore (average precision "
        "of per-instance mean |activation| against the label) on the train split"
    )
    bricks = []
    for i, f in enumerate(results.functionalities):
        for suffix, key, matrix, extra in (
            ("", "top", ablation.matrix, ""),
            (
                "-nonresident",
                "top-nonresident",
                ablation.resident.matrix,
                "; resident neurons excluded: " + ablation.resident.rule,
            ),
        ):
            row = matrix[i]
            metrics = {
                "ablation_ppl_increase_own": row[i],
                "ablation_ppl_increase_others": (sum(row) - row[i]) / (len(row) - 1),
                "heldout_funcscore": results.funcscore.heldout_top[f],
            }
            bricks.append(
                neuron_set_brick(
                    f"{f}-neurons{suffix}",
                    f,
                    results.provenance.model_fingerprint,
                    neuron_sets[f"{key}/{i}"],
                    rule + extra,
                    metrics=metrics,
                    provenance=_provenance(results, "funcscore-top", results.settings),
                    description=f"FFN neurons specialised in {f}{suffix.replace('-', ', ')}",
                )
            )
    return bricks


def balanced_kmeans(features: np.ndarray, n_groups: int, seed: int = 0) -> np.ndarray:
    """Group ids [n] with equal group sizes: k-means centroids (scikit-learn), then an optimal
    equal-capacity assignment of points to centroids (scipy's linear_sum_assignment)."""
    n = len(features)
    if n_groups < 1 or n % n_groups:
        raise BrickworkError(f"{n} neurons do not split into {n_groups} equal groups")
    centers = KMeans(n_groups, n_init=3, random_state=seed).fit(features).cluster_centers_
    cost = ((features[:, None, :] - centers[None, :, :]) ** 2).sum(axis=-1)  # [n, groups]
    slots = np.repeat(np.arange(n_groups), n // n_groups)
    rows, cols = linear_sum_assignment(cost[:, slots])
    assignment = np.empty(n, dtype=np.int64)
    assignment[rows] = slots[cols]
    return assignment


def layer_features(
    method: str, loaded: LoadedModel | None, profile_acts: torch.Tensor | None, layer: int
) -> np.ndarray:
    """Per-neuron feature rows [d_ff, k], L2-normalized."""
    if method == "weights":
        if loaded is None:
            raise BrickworkError("weight clustering needs the model")
        layer_module = loaded.family.layer_modules(loaded.model)[layer]
        rows = loaded.family.input_weight(layer_module).detach().float()
    elif method == "coactivation":
        if profile_acts is None:
            raise BrickworkError("co-activation clustering needs the analysis profile")
        rows = profile_acts[:, layer, :].t().float()  # [d_ff, instances]
        rows = rows - rows.mean(dim=1, keepdim=True)
    else:
        raise BrickworkError(f"unknown grouping method {method!r}; methods: {GROUP_METHODS}")
    return torch.nn.functional.normalize(rows, dim=1).numpy()


def neuron_group_bricks(
    results: AnalysisResults,
    method: str,
    n_groups: int,
    loaded=None,
    profile_acts=None,
    seed: int = 0,
) -> list[Brick]:
    """One neuron-group brick per layer: the layer's FFN split into ``n_groups`` experts."""
    bricks = []
    for layer in range(results.n_layers):
        features = layer_features(method, loaded, profile_acts, layer)
        assignment = torch.from_numpy(balanced_kmeans(features, n_groups, seed))
        bricks.append(
            neuron_group_brick(
                f"{method}-groups-layer{layer:02d}",
                results.provenance.model_fingerprint,
                layer,
                assignment,
                method,
                provenance=_provenance(
                    results, f"balanced-kmeans/{method}", {"n_groups": n_groups, "seed": seed}
                ),
            )
        )
    return bricks


def concentration(
    group_bricks: list[Brick], neuron_sets: dict[str, torch.Tensor], top: int = 2, seed: int = 0
) -> dict:
    """How much of each functionality's neuron set falls into its ``top`` fullest groups per layer,
    averaged over layers, next to random neuron sets of the same size."""
    generator = torch.Generator().manual_seed(seed)

    def share(mask: torch.Tensor) -> float:
        values = []
        for brick in group_bricks:
            layer, assignment = brick.spec["layer"], brick.tensors["assignment"]
            chosen = assignment[mask[layer]]
            if len(chosen):
                counts = torch.bincount(chosen, minlength=brick.spec["n_groups"])
                values.append(float(counts.topk(top).values.sum()) / len(chosen))
        return sum(values) / len(values)

    result = {}
    for name, mask in neuron_sets.items():
        shuffled = torch.stack([row[torch.randperm(len(row), generator=generator)] for row in mask])
        result[name] = {"top_groups_share": share(mask), "random_share": share(shuffled)}
    return result


def _provenance(results: AnalysisResults, method: str, parameters: dict) -> dict:
    p = results.provenance
    return {
        "method": method,
        "parameters": parameters,
        "dataset_hash": p.dataset_hash,
        "seed": p.seed,
        "brickwork_version": p.brickwork_version,
        "analysis_command": p.command,
    }


def extract_bricks(
    analysis_dir: str | Path,
    repository,
    n_groups: int = 16,
    methods: tuple[str, ...] = GROUP_METHODS,
    model: str | None = None,
    overwrite: bool = False,
    trust_remote_code: bool = False,
    **placement: str | None,
) -> dict:
    """Add neuron-set and neuron-group bricks from an analysis to ``repository``; a summary.
    ``model`` (default: the analysed one) is loaded for the weight-based groups (``placement``:
    ``load_model``'s device, dtype and device_map)."""
    from brickwork.models import load_model

    saved = load_analysis(analysis_dir)
    results = saved.results
    fingerprint = results.provenance.model_fingerprint
    sets = neuron_set_bricks(results, saved.neuron_sets)
    loaded = acts = None
    if "weights" in methods:
        loaded = load_model(
            model or results.provenance.model, trust_remote_code=trust_remote_code, **placement
        )
        loaded.require_base(fingerprint, f"the analysis (of {results.provenance.model})")
    if "coactivation" in methods:
        profile = saved.profile()
        train = [i for i, s in enumerate(profile.meta["sample_splits"]) if s == "train"]
        acts = profile.tensors["instance_mean_abs"][train]  # clusters from train data only
    summary = {"neuron_sets": [b.name for b in sets], "groups": {}}
    masks = {b.purpose: b.neuron_mask() for b in sets if not b.name.endswith("-nonresident")}
    bricks = list(sets)
    for method in methods:
        groups = neuron_group_bricks(results, method, n_groups, loaded, acts)
        bricks += groups
        summary["groups"][method] = {
            "bricks": len(groups),
            "groups_per_layer": n_groups,
            "group_size": results.d_ff // n_groups,
            "concentration_top2": concentration(groups, masks),
        }
    for brick in bricks:
        repository.add(brick, overwrite=overwrite)
    return summary
