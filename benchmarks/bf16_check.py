"""CPU bfloat16 against float32 on the default model: FuncScore top-5% sets and the ablation.

Each dtype's analysis runs in a fresh process (its peak RSS is that analysis alone); then the
top-5% neuron set of every functionality (per layer) is compared between the two, and the
ablation's diagonal-dominant columns. Target (issue 19): overlap >= 95%, same columns.

    python benchmarks/bf16_check.py                     # both dtypes on the full built-in suite
    python benchmarks/bf16_check.py --per-functionality 12 --eval 3   # reduced: fewer samples
    python benchmarks/bf16_check.py --reference /work/wt/demo-analysis  # reuse a float32 run
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def run_one(args) -> None:
    """One analysis in ``args.dtype``, saved to ``args.out``; prints seconds and peak RSS."""
    from brickwork import load_model
    from brickwork.analysis import AnalysisSettings, analyze, save_analysis
    from brickwork.data import load_data

    samples = _subset(load_data("builtin"), args.per_functionality)
    settings = AnalysisSettings()
    if args.eval:
        settings = AnalysisSettings(eval_per_functionality=args.eval, curve_per_functionality=1)
    loaded = load_model(args.model, device="cpu", dtype=args.dtype)
    started = time.perf_counter()
    analysis = analyze(loaded, samples, settings=settings, progress=False, command="bf16_check")
    seconds = time.perf_counter() - started
    save_analysis(analysis, args.out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB -> GiB
    print(json.dumps({"dtype": args.dtype, "seconds": round(seconds, 1), "peak_rss_gib": peak}))


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
    names = a.results["functionalities"]
    overlaps = {}
    for f, name in enumerate(names):
        x, y = top_neurons(a.funcscores[f], fraction), top_neurons(b.funcscores[f], fraction)
        overlaps[name] = round(float((x & y).sum() / x.sum()), 4)
    dominant = [r["ablation"]["diagonal_dominant"] for r in (a.results, b.results)]
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
