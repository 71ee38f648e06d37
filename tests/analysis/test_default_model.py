"""The analysis on the real default model, on a small slice of the built-in suite (slow)."""

import pytest

from brickwork import load_builtin_suite, load_model
from brickwork.analysis import AnalysisSettings, analyze

pytestmark = pytest.mark.slow


def test_default_model_analysis_runs_and_beats_random_neurons():
    samples = load_builtin_suite()
    keep = {}
    for s in samples:  # 8 train and 4 test prompts per functionality
        quota = 8 if s.split == "train" else 4
        if keep.setdefault((s.functionality, s.split), []).__len__() < quota:
            keep[s.functionality, s.split].append(s)
    subset = [s for group in keep.values() for s in group]
    settings = AnalysisSettings(eval_per_functionality=2, curve_per_functionality=1, cett_tokens=64)
    results = analyze(load_model(), subset, settings=settings, progress=False).results
    assert results["n_layers"] == 30 and results["d_ff"] == 1536
    assert all(v > 1 for v in results["ablation"]["baseline_ppl"].values())
    summary = results["ablation"]["summary"]
    # Even selected on 8 prompts per functionality, a functionality's own neurons matter more
    # to it than random neurons do (full-suite numbers: docs/results/analysis.md).
    assert summary["diagonal_mean"] > summary["random_mean"]
