"""A schema-complete results dict with plausible, seeded random numbers (for report tests)."""

from __future__ import annotations

import numpy as np

BINS = 50
RATIOS = [round(0.1 * i, 1) for i in range(10)]
TARGETS = (0.1, 0.2)


def synthetic_results(
    n_layers: int = 3,
    functionalities: tuple[str, ...] = ("coding", "math", "writing"),
    seed: int = 0,
) -> dict:
    """Results shaped like ``brickwork analyze`` output: F functionalities, L layers."""
    rng = np.random.default_rng(seed)
    funcs = list(functionalities)
    return {
        "format_version": 1,
        "provenance": {
            "model": "synthetic-tiny",
            "model_fingerprint": "sha256:0123456789abcdef",
            "family": "llama",
            "dataset": "builtin-suite",
            "dataset_hash": "sha256:fedcba9876543210",
            "seed": seed,
            "brickwork_version": "0.1.0",
            "command": "brickwork analyze --model synthetic-tiny --out runs/x",
            "seconds": 12.5,
            "created": "2024-09-05T12:00:00+00:00",
        },
        "settings": {
            "fraction": 0.05,
            "selection": "per-layer",
            "eval_per_functionality": 20,
            "eval_format": "chat",
        },
        "functionalities": funcs,
        "n_layers": n_layers,
        "d_ff": 256,
        "sparsity": _sparsity(rng, n_layers, funcs),
        "funcscore": _funcscore(rng, n_layers, funcs),
        "ablation": _ablation(rng, funcs),
        "partition": _partition(rng, funcs),
    }


def _cdfs(rng: np.random.Generator, n_layers: int, skew: float) -> list[list[float]]:
    edges = np.arange(1, BINS + 1) / BINS
    out = []
    for layer in range(n_layers):
        values = rng.beta(0.6, skew + layer, size=4000)
        out.append([float((values < e).mean()) for e in edges])
    return out


def _losses(rng: np.random.Generator, funcs: list[str], knee: float) -> dict[str, list[float]]:
    ratios = np.asarray(RATIOS)
    return {
        f: [float(v) for v in rng.uniform(1.5, 3.0) + 2.0 * np.clip(ratios - knee, 0, None) ** 1.5]
        for f in funcs
    }


def _rise(losses: dict[str, list[float]]) -> float | None:
    mean = np.mean(list(losses.values()), axis=0)
    above = np.nonzero(mean >= 1.05 * mean[0])[0]
    return RATIOS[int(above[0])] if above.size else None


def _sparsity(rng: np.random.Generator, n_layers: int, funcs: list[str]) -> dict:
    cdf = {"activation": _cdfs(rng, n_layers, 3.0), "output": _cdfs(rng, n_layers, 5.0)}
    at = int(0.2 * BINS) - 1  # cdf[l][at] = P(value < 0.2)
    loss = {"activation": _losses(rng, funcs, 0.6), "output": _losses(rng, funcs, 0.75)}
    activated = {str(t): list(rng.uniform(0.35 - t, 0.45 - t, n_layers)) for t in TARGETS}
    return {
        "normalization": "Each value is divided by the per-token maximum in its layer.",
        "bins": BINS,
        "cdf": cdf,
        "below_0.2": {k: [row[at] for row in v] for k, v in cdf.items()},
        "masked": {
            "ratios": RATIOS,
            "loss": loss,
            "rise_5pct_ratio": {k: _rise(v) for k, v in loss.items()},
        },
        "cett": {
            "targets": list(TARGETS),
            "epsilon": {str(t): list(rng.uniform(0.01, 0.1, n_layers)) for t in TARGETS},
            "activated_ratio": activated,
            "mean_activated_ratio": {k: float(np.mean(v)) for k, v in activated.items()},
        },
    }


def _funcscore(rng: np.random.Generator, n_layers: int, funcs: list[str]) -> dict:
    base = 1 / len(funcs)

    def series(lo: float, hi: float) -> list[float]:
        return [float(v) for v in rng.uniform(lo, hi, n_layers)]

    per_layer = {
        f: {
            "best": series(0.7, 0.95),
            "best_5permille": series(0.5, 0.7),
            "mean": series(base - 0.02, base + 0.03),
            "random_best": series(base + 0.05, base + 0.1),
            "random_best_5permille": series(base + 0.02, base + 0.05),
            "random_mean": series(base - 0.01, base + 0.01),
        }
        for f in funcs
    }
    heldout = {f: float(rng.uniform(0.55, 0.85)) for f in funcs}
    return {"split": "train", "per_layer": per_layer, "heldout_top": heldout}


def _ablation_matrix(rng: np.random.Generator, n: int, off_hi: float) -> np.ndarray:
    matrix = rng.uniform(-0.02, off_hi, (n, n))
    matrix[np.diag_indices(n)] = rng.uniform(0.3, 3.0, n)
    return matrix


def _ablation(rng: np.random.Generator, funcs: list[str]) -> dict:
    n = len(funcs)
    own = _ablation_matrix(rng, n, 0.3)
    matrix = np.vstack([own, rng.uniform(-0.01, 0.05, (1, n))])
    resident = _ablation_matrix(rng, n, 0.15)
    off = ~np.eye(n, dtype=bool)
    return {
        "fraction": 0.05,
        "selection": "per-layer",
        "baseline_ppl": {f: float(rng.uniform(3, 12)) for f in funcs},
        "rows": [*funcs, "random"],
        "columns": funcs,
        "matrix": matrix.tolist(),
        "resident": {
            "rule": "active on more than 90% of the instances of every functionality",
            "count": 7,
            "rows": funcs,
            "matrix": resident.tolist(),
        },
        "diagonal_dominant": {f: bool(own[i, i] >= own[:, i].max()) for i, f in enumerate(funcs)},
        "summary": {
            "diagonal_mean": float(np.diag(own).mean()),
            "off_diagonal_mean": float(own[off].mean()) if n > 1 else 0.0,
            "random_mean": float(matrix[-1].mean()),
            "resident_diagonal_mean": float(np.diag(resident).mean()),
            "resident_off_diagonal_mean": float(resident[off].mean()) if n > 1 else 0.0,
        },
    }


def _partition(rng: np.random.Generator, funcs: list[str]) -> dict:
    n = len(funcs)
    upper = np.triu(rng.uniform(0.0, 0.09, (n, n)), 1)
    matrix = upper + upper.T + np.eye(n)
    off = matrix[~np.eye(n, dtype=bool)]
    return {
        "rows": funcs,
        "matrix": matrix.tolist(),
        "random_expected": 0.05,
        "random_empirical": 0.049,
        "off_diagonal_mean": float(off.mean()) if n > 1 else 0.0,
    }


def synthetic_drilldown(results: dict, per_functionality: int = 4, seed: int = 0):
    """(the drill-down of seeded FuncScores and activations, the scores [F, L, D]); neuron
    (0, f) of each functionality f fires on that functionality's prompts only."""
    import torch

    from brickwork.analysis.drilldown import drilldown
    from brickwork.data.sample import Sample

    funcs, layers, d_ff = results["functionalities"], results["n_layers"], results["d_ff"]
    generator = torch.Generator().manual_seed(seed)
    scores = torch.rand(len(funcs), layers, d_ff, generator=generator) * 0.5
    samples = [
        Sample(f"{f}-{i}", f"a {f} prompt <number {i}>", f, split="test")
        for f in funcs
        for i in range(per_functionality)
    ]
    acts = torch.rand(len(samples), layers, d_ff, generator=generator)
    for f, name in enumerate(funcs):
        scores[f, 0, f] = 0.99  # the most specific neuron of f
        for i, s in enumerate(samples):
            acts[i, 0, f] = 5.0 + i if s.functionality == name else 0.0
    rows = list(range(len(samples)))
    return drilldown(scores, acts, samples, rows, funcs), scores
