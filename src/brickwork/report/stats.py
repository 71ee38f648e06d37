"""Statistics the report adds to results.json: medians and bootstrap intervals of the ablation."""

from __future__ import annotations

import numpy as np

from brickwork.analysis.results import Ablation

BOOTSTRAP = 2000  # resamples per cell
LEVEL = 0.95


def finite(values) -> np.ndarray:
    arr = np.asarray(list(values), dtype=float).ravel()
    return arr[np.isfinite(arr)]


def mean_median(values) -> tuple[float | None, float | None]:
    arr = finite(values)
    return (float(arr.mean()), float(np.median(arr))) if arr.size else (None, None)


def off_diagonal(matrix) -> np.ndarray:
    m = np.asarray(matrix, dtype=float)
    return m[~np.eye(len(m), dtype=bool)] if m.size else m


def bootstrap_intervals(abl: Ablation, seed: int = 0) -> dict[str, list[tuple[float, float]]]:
    """Per stored row name, the 95% percentile interval of every column's PPL increase, from
    resampling that column's samples with replacement (the same resample for ablated and
    unablated losses). Empty when results.json holds no per-sample losses."""
    per = abl.per_sample
    if per is None:
        return {}
    rng = np.random.default_rng(seed)
    funcs = np.asarray(per.functionality)
    tokens = np.asarray(per.tokens, dtype=float)
    base = np.asarray(per.baseline_nll, dtype=float)
    rows = {name: np.asarray(v, dtype=float) for name, v in per.nll.items()}
    out: dict[str, list[tuple[float, float]]] = {name: [] for name in rows}
    tail = 100 * (1 - LEVEL) / 2
    for column in abl.columns:
        members = np.flatnonzero(funcs == column)
        draw = rng.choice(members, size=(BOOTSTRAP, members.size)) if members.size else None
        for name, nll in rows.items():
            if draw is None:
                out[name].append((float("nan"), float("nan")))
                continue
            count = tokens[draw].sum(axis=1)
            increase = np.expm1((nll[draw].sum(axis=1) - base[draw].sum(axis=1)) / count)
            lo, hi = np.percentile(increase, [tail, 100 - tail])
            out[name].append((float(lo), float(hi)))
    return out
