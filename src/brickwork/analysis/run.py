"""analyze(): the paper's §4 analysis end to end, with the controls the paper lacks.

Neurons are selected on the train split and evaluated on the test split. Every effect has a
random control beside it: random activations for FuncScore, a random neuron set for the ablation,
random sets for the partition similarity.
"""

from __future__ import annotations

import random
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import torch

import brickwork
from brickwork.analysis import ablation, funcscore, selection, sparsity
from brickwork.analysis.drilldown import drilldown
from brickwork.analysis.loss import eval_format, reference_batches
from brickwork.data.sample import Sample, dataset_hash
from brickwork.errors import BrickworkError
from brickwork.models.load import LoadedModel
from brickwork.profile import Profile, profile_model
from brickwork.profile.run import prompt_batches

FORMAT_VERSION = 1


@dataclass(frozen=True)
class AnalysisSettings:
    fraction: float = field(
        default=0.05,
        metadata={"help": "share of neurons per functionality", "above": 0.0, "maximum": 1.0},
    )
    per_layer: bool = field(
        default=True, metadata={"help": "top share of every layer, or of all neurons at once"}
    )
    eval_per_functionality: int = field(
        default=6, metadata={"help": "test samples per functionality for the ablation"}
    )
    curve_per_functionality: int = field(
        default=3, metadata={"help": "test samples per functionality for masked-ratio curves"}
    )
    cett_targets: tuple[float, ...] = field(
        default=(0.1, 0.2),
        metadata={
            "help": "target CETTs (share of FFN output left out)",
            "above": 0.0,
            "maximum": 1.0,
        },
    )
    cett_tokens: int = field(
        default=512, metadata={"help": "test tokens the CETT thresholds are found on"}
    )
    batch_size: int = field(default=8, metadata={"help": "prompts per forward pass"})
    seed: int = field(default=0, metadata={"help": "seed of the random controls"})
    random_sets: int = field(
        default=3,
        metadata={
            "help": "random neuron sets ablated as the control (seeds seed, seed+1, ...); "
            "the first is the 'random' row",
            "minimum": 1,
        },
    )


@dataclass
class Analysis:
    results: dict  # everything reported, JSON-ready
    funcscores: torch.Tensor  # [F, L, D] on the train split
    neuron_sets: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> [L, D] bool
    profile: Profile | None = None


def analyze(
    loaded: LoadedModel,
    samples: list[Sample],
    *,
    settings: AnalysisSettings = AnalysisSettings(),
    profile: Profile | None = None,
    dataset: str = "builtin",
    command: str | None = None,
    progress: bool = True,
) -> Analysis:
    """Run sparsity, FuncScore, ablation and partition analyses on ``samples`` (train + test)."""
    started = time.perf_counter()
    functionalities = sorted({s.functionality for s in samples})
    train, test = _split_rows(samples, functionalities)
    stage = _stages(progress, started, 4 if profile is None else 3)
    if profile is None:
        stage("profiling every FFN neuron")
        profile = profile_model(
            loaded,
            samples,
            batch_size=settings.batch_size,
            seed=settings.seed,
            command=command,
            progress=progress,
        )
    _check_profile(profile, loaded, samples)
    labels = torch.tensor([functionalities.index(s.functionality) for s in samples])
    acts = profile.tensors["instance_mean_abs"]
    stage("FuncScore and partition")
    scores = funcscore.funcscores(acts[train], labels[train], len(functionalities))
    sets = _neuron_sets(scores, acts[train], labels[train], settings)
    results = {
        "format_version": FORMAT_VERSION,
        "settings": asdict(settings),
        "functionalities": functionalities,
        "n_layers": int(acts.shape[1]),
        "d_ff": int(acts.shape[2]),
        "funcscore": _funcscore_results(
            scores, acts, labels, train, test, sets, functionalities, settings
        ),
        "partition": _partition_results(scores, functionalities, settings),
        "drilldown": drilldown(scores, acts, samples, test, functionalities),
    }
    eval_samples = _eval_subset(samples, test, functionalities, settings)
    stage("ablation of each functionality's neurons")
    results["ablation"] = _ablation_results(
        loaded, eval_samples, functionalities, sets, settings, progress
    )
    stage("sparsity: masked-ratio curves and CETT")
    results["sparsity"] = _sparsity_results(
        loaded, samples, test, eval_samples, functionalities, profile, settings, progress
    )
    results["settings"]["eval_format"] = eval_format(loaded.tokenizer)
    results["provenance"] = _provenance(loaded, samples, dataset, settings, command, started)
    return Analysis(results, scores, sets, profile)


def _stages(progress: bool, started: float, total: int):
    """A function that announces each stage of the analysis (to stderr, with the time so far)."""
    import sys

    count = [0]

    def stage(name: str) -> None:
        count[0] += 1
        if progress:
            elapsed = time.perf_counter() - started
            print(
                f"[stage {count[0]}/{total}, {elapsed:.0f} s] {name}", file=sys.stderr, flush=True
            )

    return stage


def _split_rows(samples: list[Sample], functionalities: list[str]) -> tuple[list[int], list[int]]:
    train = [i for i, s in enumerate(samples) if s.split == "train"]
    test = [i for i, s in enumerate(samples) if s.split == "test"]
    for name, rows in (("train", train), ("test", test)):
        present = {samples[i].functionality for i in rows}
        missing = [f for f in functionalities if f not in present]
        if missing:
            raise BrickworkError(f"no {name} samples for {', '.join(missing)}: need both splits")
    if len(functionalities) < 2:
        raise BrickworkError("the analysis needs at least two functionalities")
    return train, test


def _check_profile(profile: Profile, loaded: LoadedModel, samples: list[Sample]) -> None:
    source = profile.meta.get("model_source")
    loaded.require_base(
        profile.meta.get("model_fingerprint"), f"the profile of another model ({source})"
    )
    if profile.meta.get("dataset_hash") != dataset_hash(samples):
        raise BrickworkError("the profile was made on other data (dataset hash differs)")
    if not profile.complete:
        raise BrickworkError("the profile is one shard: merge all shards first")


def _neuron_sets(scores, train_acts, train_labels, settings) -> dict[str, torch.Tensor]:
    """Top-FuncScore sets per functionality, the same without resident neurons, and a random set."""
    n_functionalities, layers, d_ff = scores.shape
    means = torch.stack(
        [train_acts[train_labels == f].mean(dim=0) for f in range(n_functionalities)]
    )
    resident = selection.resident_neurons(means)
    sets = {"resident": resident}
    for f in range(n_functionalities):
        sets[f"top/{f}"] = selection.top_neurons(scores[f], settings.fraction, settings.per_layer)
        sets[f"top-nonresident/{f}"] = selection.top_neurons(
            scores[f], settings.fraction, settings.per_layer, exclude=resident
        )
    sets["random"] = selection.random_neurons(layers, d_ff, settings.fraction, settings.seed)
    return sets


def _funcscore_results(scores, acts, labels, train, test, sets, functionalities, settings) -> dict:
    n_functionalities = len(functionalities)
    generator = torch.Generator().manual_seed(settings.seed)
    noise = torch.randn(acts[train].shape, generator=generator)
    random_scores = funcscore.funcscores(noise, labels[train], n_functionalities)
    test_scores = funcscore.funcscores(acts[test], labels[test], n_functionalities)
    real, control = funcscore.layer_statistics(scores), funcscore.layer_statistics(random_scores)
    per_layer, heldout_top, heldout_random = {}, {}, {}
    for f, name in enumerate(functionalities):
        per_layer[name] = {k: v[f].tolist() for k, v in real.items()}
        per_layer[name].update({f"random_{k}": v[f].tolist() for k, v in control.items()})
        # Generalization: the train-selected neurons' FuncScore on the held-out test split.
        heldout_top[name] = float(test_scores[f][sets[f"top/{f}"]].mean())
        heldout_random[name] = float(test_scores[f][sets["random"]].mean())
    return {
        "split": "train",
        "per_layer": per_layer,
        "heldout_top": heldout_top,
        "heldout_random": heldout_random,
    }


def _partition_results(scores, functionalities, settings) -> dict:
    """Similarity of the per-layer top sets (as the paper's predecessor code computes it)."""
    n_functionalities, layers, d_ff = scores.shape
    tops = [selection.top_neurons(scores[f], settings.fraction) for f in range(n_functionalities)]
    matrix = selection.similarity_matrix(tops)
    randoms = [
        selection.random_neurons(layers, d_ff, settings.fraction, settings.seed + 1 + f)
        for f in range(n_functionalities)
    ]
    random_matrix = selection.similarity_matrix(randoms)
    off = ~torch.eye(n_functionalities, dtype=torch.bool)
    return {
        "rows": functionalities,
        "matrix": matrix.tolist(),
        "random_expected": max(1, round(settings.fraction * d_ff)) / d_ff,
        "random_empirical": float(random_matrix[off].mean()),
        "off_diagonal_mean": float(matrix[off].mean()),
    }


def _eval_subset(samples, test, functionalities, settings) -> list[Sample]:
    """A seeded sample of ``eval_per_functionality`` test samples per functionality."""
    rng = random.Random(settings.seed)
    chosen = []
    for f in functionalities:
        pool = [samples[i] for i in test if samples[i].functionality == f]
        chosen += rng.sample(pool, min(settings.eval_per_functionality, len(pool)))
    return chosen


def _ablation_results(loaded, eval_samples, functionalities, sets, settings, progress) -> dict:
    n_functionalities = len(functionalities)
    batches = reference_batches(
        loaded.tokenizer, eval_samples, functionalities, settings.batch_size
    )
    named = {f"top/{f}": sets[f"top/{f}"] for f in range(n_functionalities)}
    named["random"] = sets["random"]
    named.update(
        {f"top-nonresident/{f}": sets[f"top-nonresident/{f}"] for f in range(n_functionalities)}
    )
    layers, d_ff = sets["random"].shape
    seeds = [settings.seed + i for i in range(settings.random_sets)]
    named.update(
        {
            f"random/{s}": selection.random_neurons(layers, d_ff, settings.fraction, s)
            for s in seeds[1:]
        }
    )
    measured = ablation.ablation_losses(
        loaded, batches, n_functionalities, len(eval_samples), named, progress
    )
    baseline = measured.baseline
    increase = {k: ablation.perplexity_increase(baseline, v) for k, v in measured.losses.items()}
    plain = torch.stack([increase[f"top/{f}"] for f in range(n_functionalities)])
    nonresident = torch.stack([increase[f"top-nonresident/{f}"] for f in range(n_functionalities)])
    off = ~torch.eye(n_functionalities, dtype=torch.bool)
    dominant = ablation.diagonal_dominance(plain)
    randoms = [increase["random"], *(increase[f"random/{s}"] for s in seeds[1:])]
    return {
        "fraction": settings.fraction,
        "selection": "per-layer" if settings.per_layer else "global",
        "eval_samples": len(eval_samples),
        "baseline_ppl": dict(zip(functionalities, baseline.exp().tolist(), strict=True)),
        "rows": [*functionalities, "random"],
        "columns": functionalities,
        "matrix": [*plain.tolist(), increase["random"].tolist()],
        "resident": {
            "rule": selection.RESIDENT_RULE,
            "count": int(sets["resident"].sum()),
            "rows": functionalities,
            "matrix": nonresident.tolist(),
        },
        "diagonal_dominant": dict(zip(functionalities, dominant, strict=True)),
        "summary": {
            "diagonal_mean": float(plain.diagonal().mean()),
            "off_diagonal_mean": float(plain[off].mean()),
            "random_mean": float(increase["random"].mean()),
            "resident_diagonal_mean": float(nonresident.diagonal().mean()),
            "resident_off_diagonal_mean": float(nonresident[off].mean()),
        },
        "random_seeds": {"seeds": seeds, "matrix": [r.tolist() for r in randoms]},
        "per_sample": _per_sample(measured, eval_samples, functionalities, seeds),
    }


def _per_sample(measured, eval_samples, functionalities, seeds) -> dict:
    """Each evaluated sample's summed reference NLL (and token count) per ablated set, so that
    readers can bootstrap the cells: a cell is exp(sum nll / sum tokens - the same unablated) - 1
    over the samples of its column."""
    rows = {f: measured.sample_losses[f"top/{i}"] for i, f in enumerate(functionalities)}
    rows["random"] = measured.sample_losses["random"]
    rows.update({f"random/{s}": measured.sample_losses[f"random/{s}"] for s in seeds[1:]})
    rows.update(
        {
            f"resident-excluded/{f}": measured.sample_losses[f"top-nonresident/{i}"]
            for i, f in enumerate(functionalities)
        }
    )
    return {
        "functionality": [s.functionality for s in eval_samples],
        "tokens": [int(t) for t in measured.tokens.tolist()],
        "baseline_nll": measured.sample_baseline.tolist(),
        "nll": {name: values.tolist() for name, values in rows.items()},
    }


def _sparsity_results(
    loaded, samples, test, eval_samples, functionalities, profile, settings, progress
) -> dict:
    cdfs = sparsity.indicator_cdfs(profile)
    bins = int(profile.meta["bins"])
    edge = int(0.2 * bins) - 1  # cdf[:, edge] = P(normalized value < 0.2)
    curve_samples = [
        s
        for f in functionalities
        for s in [e for e in eval_samples if e.functionality == f][
            : settings.curve_per_functionality
        ]
    ]
    batches = reference_batches(
        loaded.tokenizer, curve_samples, functionalities, settings.batch_size
    )
    norms = profile.tensors["down_norms"]
    curves = sparsity.masked_ratio_losses(
        loaded, batches, len(functionalities), norms, sparsity.MASK_RATIOS, progress
    )
    prompts = prompt_batches(loaded.tokenizer, [samples[i] for i in test], settings.batch_size, 256)
    activations = sparsity.collect_token_activations(loaded, prompts, settings.cett_tokens)
    cett = sparsity.cett_per_layer(loaded, activations, settings.cett_targets)
    ratios = list(sparsity.MASK_RATIOS)
    return {
        "normalization": profile.meta["normalization"],
        "bins": bins,
        "cdf": {name: cdf.tolist() for name, cdf in cdfs.items()},
        "below_0.2": {name: cdf[:, edge].tolist() for name, cdf in cdfs.items()},
        "masked": {
            "ratios": ratios,
            "eval_samples": len(curve_samples),
            "loss": {
                name: {f: curve[:, i].tolist() for i, f in enumerate(functionalities)}
                for name, curve in curves.items()
            },
            "rise_5pct_ratio": {
                name: sparsity.rise_ratio(ratios, curve.mean(dim=1))
                for name, curve in curves.items()
            },
        },
        "cett": {
            "targets": list(settings.cett_targets),
            "tokens": int(activations[0].shape[0]),
            "epsilon": {str(t): [e for e, _ in v] for t, v in cett.items()},
            "activated_ratio": {str(t): [r for _, r in v] for t, v in cett.items()},
            "mean_activated_ratio": {
                str(t): sum(r for _, r in v) / len(v) for t, v in cett.items()
            },
        },
    }


def _provenance(loaded, samples, dataset, settings, command, started) -> dict:
    return {
        "model": loaded.source,
        "model_fingerprint": loaded.fingerprint,
        "family": loaded.family.name,
        "dataset": dataset,
        "dataset_hash": dataset_hash(samples),
        "seed": settings.seed,
        "brickwork_version": brickwork.__version__,
        "command": command if command is not None else " ".join(sys.argv),
        "seconds": round(time.perf_counter() - started, 1),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
