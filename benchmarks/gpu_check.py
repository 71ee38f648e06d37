"""GPU check: the test suite on CUDA, and speeds on CUDA against the CPU in the same process.

On a machine with a CUDA GPU:

    python benchmarks/gpu_check.py                 # tests on CUDA, then the speed table
    python benchmarks/gpu_check.py --skip-tests --steps 20 --new-tokens 64

The tests run with BRICKWORK_DEVICE=cuda (``load_model``'s default device; float32, so their
tolerances hold). The speed table measures, for each of cpu and cuda (cuda in ``--dtype``):
profile tokens/s, analysis wall time (the default settings on the built-in suite), task-brick
training steps/s and greedy decode tokens/s, and prints cuda/cpu ratios. ``--cpu-from FILE``
reuses CPU numbers saved by an earlier run (``--cpu-only FILE``, which needs no GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch


def run_tests() -> int:
    env = dict(os.environ, BRICKWORK_DEVICE="cuda", PYTHONPATH="src")
    command = [sys.executable, "-m", "pytest", "-q", "-m", "not slow", "tests"]
    return subprocess.run(command, env=env).returncode


def speeds(device: str, dtype: str, args) -> dict:
    from brickwork import load_model
    from brickwork.analysis import analyze
    from brickwork.bricks.train import LoraSettings, train_task_brick
    from brickwork.data import load_data
    from brickwork.data.sample import select_split
    from brickwork.profile import profile_model

    samples = load_data("builtin")
    loaded = load_model(args.model, device=device, dtype=dtype)
    started = time.perf_counter()
    profile = profile_model(loaded, samples, progress=False, command="gpu_check")
    tokens = int(profile.tensors["instance_tokens"].sum())
    row = {"profile_tokens_per_s": tokens / (time.perf_counter() - started)}
    started = time.perf_counter()
    analyze(loaded, samples, progress=False, command="gpu_check")
    row["analysis_seconds"] = time.perf_counter() - started
    train, heldout = select_split(samples, "train"), select_split(samples, "test")
    settings = LoraSettings(steps=args.steps, eval_every=args.steps)
    started = time.perf_counter()
    train_task_brick(loaded, train, heldout, "gpu-check", "math", settings=settings, progress=False)
    row["training_steps_per_s"] = args.steps / (time.perf_counter() - started)
    row["decode_tokens_per_s"] = _decode(loaded, args.new_tokens)
    return row


def _decode(loaded, new_tokens: int) -> float:
    ids = loaded.tokenizer("Write a short poem about the sea.", return_tensors="pt")
    ids = {k: v.to(loaded.device) for k, v in ids.items()}
    with torch.no_grad():
        started = time.perf_counter()
        out = loaded.model.generate(
            **ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False
        )
    return (out.shape[1] - ids["input_ids"].shape[1]) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--dtype", default="bfloat16", help="the CUDA run's dtype")
    parser.add_argument("--steps", type=int, default=20, help="training steps timed")
    parser.add_argument("--new-tokens", type=int, default=64, help="decoded tokens timed")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--cpu-from", help="JSON of CPU speeds from an earlier run")
    parser.add_argument("--cpu-only", help="measure only the CPU row and save it to this JSON")
    args = parser.parse_args()
    if args.cpu_only:
        cpu = speeds("cpu", "float32", args)
        Path(args.cpu_only).write_text(json.dumps(cpu, indent=1), encoding="utf-8")
        return print(json.dumps(cpu))
    if not torch.cuda.is_available():
        sys.exit("error: no CUDA GPU on this machine: this check needs one")
    failed = 0 if args.skip_tests else run_tests()
    cuda = speeds("cuda", args.dtype, args)
    if args.cpu_from:
        with open(args.cpu_from, encoding="utf-8") as file:
            cpu = json.load(file)
    else:
        cpu = speeds("cpu", "float32", args)
    print(f"| measure | cpu float32 | cuda {args.dtype} | cuda / cpu |")
    print("|---|---|---|---|")
    for key in cuda:
        better = cuda[key] / cpu[key] if "per_s" in key else cpu[key] / cuda[key]
        print(f"| {key} | {cpu[key]:.2f} | {cuda[key]:.2f} | {better:.1f}x faster |")
    print(json.dumps({"cpu": cpu, "cuda": cuda, "tests_failed": bool(failed)}))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
