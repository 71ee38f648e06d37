"""CPU bfloat16 against float32 on the default model: FuncScore top-5% sets and the ablation.

Each dtype runs in a fresh process: the profile (its peak RSS from /proc, measured from the
loaded model on: the peak over the RSS with the weights loaded, against the estimate of one
batch's activations + the statistics), then the analysis on that profile. The top-5% neuron
set of every functionality (per layer) is then compared between the two dtypes, and the
ablation's diagonal-dominant columns. Targets (issue 19): overlap >= 95%, same columns, peak
within the estimate.

    python benchmarks/bf16_check.py                     # both dtypes on the full built-in suite
    python benchmarks/bf16_check.py --per-functionality 12 --eval 3   # reduced: fewer samples
    python benchmarks/bf16_check.py --reference /work/wt/demo-analysis  # reuse a float32 run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def run_one(args) -> None:
    """One profile then one analysis (on that profile) in ``args.dtype``, saved to ``args.out``;
    prints the seconds, the profile's peak RSS and the estimate it is held against."""
    from brickwork import load_model
    from brickwork.analysis import AnalysisSettings, analyze, save_analysis
    from brickwork.data import load_data
    from brickwork.models.estimate import estimate_memory
    from brickwork.profile import profile_model

    samples = _subset(load_data("builtin"), args.per_functionality)
    settings = AnalysisSettings()
    if args.eval:
        settings = AnalysisSettings(eval_per_functionality=args.eval, curve_per_functionality=1)
    runtime = _rss("VmRSS")  # torch and transformers imported, no weights yet
    loaded = load_model(args.model, device="cpu", dtype=args.dtype)
    loaded_rss = _rss("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) restarts from here
    started = time.perf_counter()
    profile = profile_model(loaded, samples, batch_size=settings.batch_size, progress=False)
    profile_seconds = time.perf_counter() - started
    profile_peak = _rss("VmHWM")
    analysis = analyze(
        loaded, samples, settings=settings, profile=profile, progress=False, command="bf16_check"
    )
    seconds = time.perf_counter() - started
    save_analysis(analysis, args.out)
    functionalities = len({s.functionality for s in samples})
    parts = estimate_memory(
        loaded.model.config,
        next(loaded.model.parameters()).dtype,
        settings.batch_size,
        256,
        len(samples),
        functionalities,
    )
    growth = parts["inference_activations"] + parts["profile_statistics"]
    report = {
        "dtype": args.dtype,
        "samples": len(samples),
        "profile_seconds": round(profile_seconds, 1),
        "seconds": round(seconds, 1),
        "runtime_rss_gib": runtime,
        "after_load_rss_gib": loaded_rss,
        "profile_peak_rss_gib": profile_peak,
        "estimate_gib": {k: parts[k] / 2**30 for k in ESTIMATED},
        "load_over_runtime_gib": loaded_rss - runtime,  # the weights and the model's code
        "profile_peak_over_load_gib": profile_peak - loaded_rss,
        # the profile adds no more than one batch's activations and the statistics
        "within_estimate": profile_peak - loaded_rss <= growth / 2**30,
    }
    print(json.dumps(report))


ESTIMATED = ("weights", "inference_activations", "profile_statistics", "analysis_total")


def _rss(field: str) -> float:
    """A field of /proc/self/status (VmRSS: now, VmHWM: the peak), in GiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError(f"no {field} in /proc/self/status")


def _subset(samples, per_functionality: int | None):
    """The first ``per_functionality`` train and half as many test samples of each one."""
    if not per_functionality:
        return samples
    kept, seen = [], {}
    for s in samples:
        key = (s.functionality, s.split)
        limit = per_functionality if s.split == "train" else max(2, per_functionality // 2)
        if seen.get(key, 0) < limit:
            seen[key] = seen.get(key, 0) + 1
            kept.append(s)
    return kept


def compare(reference: Path, low: Path, fraction: float = 0.05) -> dict:
    from brickwork.analysis import load_analysis
    from brickwork.analysis.selection import top_neurons

    a, b = load_analysis(reference), load_analysis(low)
    names = a.results.functionalities
    overlaps = {}
    for f, name in enumerate(names):
        x, y = top_neurons(a.funcscores[f], fraction), top_neurons(b.funcscores[f], fraction)
        overlaps[name] = round(float((x & y).sum() / x.sum()), 4)
    dominant = [r.ablation.diagonal_dominant for r in (a.results, b.results)]
    return {
        "top5_overlap": overlaps,
        "top5_overlap_min": min(overlaps.values()),
        "diagonal_dominant_float32": dominant[0],
        "diagonal_dominant_bfloat16": dominant[1],
        "same_columns": dominant[0] == dominant[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--reference", help="a finished float32 analysis to compare against")
    parser.add_argument("--per-functionality", type=int, help="train samples per functionality")
    parser.add_argument("--eval", type=int, help="ablation test samples per functionality")
    parser.add_argument("--dtype", help=argparse.SUPPRESS)  # set in the child processes
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dtype:
        return run_one(args)
    root = Path(tempfile.mkdtemp(prefix="bf16-check-"))
    runs = {}
    dtypes = ["bfloat16"] if args.reference else ["float32", "bfloat16"]
    for dtype in dtypes:
        command = [sys.executable, __file__, "--model", args.model, "--dtype", dtype]
        command += ["--out", str(root / dtype)]
        for flag in ("per_functionality", "eval"):
            if getattr(args, flag):
                command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        runs[dtype] = json.loads(output.strip().splitlines()[-1])
    reference = Path(args.reference) if args.reference else root / "float32"
    report = {"runs": runs, **compare(reference, root / "bfloat16"), "torch": torch.__version__}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
