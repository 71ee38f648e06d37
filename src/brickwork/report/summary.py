"""The analysis's key numbers as a few terminal lines (the full story is in report.html)."""

from __future__ import annotations

from brickwork.analysis.results import AnalysisResults, as_results


def _pct(value: float | None) -> str:
    return "not reached by 90%" if value is None else f"{value:.0%}"


def summary_lines(results: AnalysisResults | dict) -> list[str]:
    r = as_results(results)
    sparsity, ablation, prov = r.sparsity, r.ablation, r.provenance
    funcs = r.functionalities
    summary = ablation.summary
    below = {k: sum(v) / len(v) for k, v in sparsity.below.items()}
    rise = sparsity.masked.rise_5pct_ratio
    cett = sparsity.cett.mean_activated_ratio
    per_layer = r.funcscore.per_layer
    best = sum(max(per_layer[f]["best"]) for f in funcs) / len(funcs)
    random_best = sum(max(per_layer[f]["random_best"]) for f in funcs) / len(funcs)
    heldout = r.funcscore.heldout_top
    exceptions = [f for f, ok in ablation.diagonal_dominant.items() if not ok]
    return [
        f"model {prov.model} ({prov.model_fingerprint}), {prov.seconds:.0f} s",
        f"sparsity: normalized indicator < 0.2 for {below['activation']:.1%} (activation) and "
        f"{below['output']:.1%} (output) of (token, neuron) pairs",
        f"masked ratio where loss rises 5%: {_pct(rise['activation'])} by activation, "
        f"{_pct(rise['output'])} by output magnitude",
        "CETT activated ratio: " + ", ".join(f"{v:.1%} at CETT {k}" for k, v in cett.items()),
        f"FuncScore (train): best neuron {best:.3f} on average vs {random_best:.3f} for random "
        f"activations; held-out (test) AP of selected neurons "
        + ", ".join(f"{f} {heldout[f]:.2f}" for f in funcs),
        f"ablation of top {ablation.fraction:.0%} ({ablation.selection}): diagonal "
        f"{summary.diagonal_mean:+.1%}, off-diagonal {summary.off_diagonal_mean:+.1%}, "
        f"random neurons {summary.random_mean:+.1%} (mean PPL change)",
        "diagonal-dominant: "
        + ("all functionalities" if not exceptions else "all but " + ", ".join(exceptions)),
        f"partition similarity off-diagonal {r.partition.off_diagonal_mean:.3f} "
        f"(random sets {r.partition.random_empirical:.3f})",
    ]
