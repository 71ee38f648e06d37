"""Data-parallel task-brick training on CPU: two torchrun processes (gloo) against one process.

The same ``brickwork train task`` command (Multi30k English->German pairs, the same seed and
global batch) runs once as one process and once under ``torchrun --nproc_per_node 2``; the
bricks' held-out losses are compared. Target (issue 19): within 1%.

    python benchmarks/distributed_train.py [--data ../shared/data] [--steps 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bricks import translation_samples

from brickwork.bricks import BrickRepository


def _write_data(data: Path, train: int, heldout: int, path: Path) -> None:
    samples = [
        dataclasses.replace(s, split="train") for s in translation_samples(data, 0, train)
    ] + [dataclasses.replace(s, split="test") for s in translation_samples(data, train, heldout)]
    path.write_text("".join(json.dumps(dataclasses.asdict(s)) + "\n" for s in samples))


def _train(launcher: list, threads: int, name: str, root: Path, args, data: Path) -> dict:
    command = [*launcher, "-m", "brickwork", "train", "task", "--name", name, "--purpose", "de"]
    command += ["--data", str(data), "--repo", str(root / name), "--model", args.model]
    command += ["--steps", str(args.steps), "--batch-size", "8", "--eval-every", str(args.steps)]
    command += ["--lr", "1e-3", "--device", "cpu", "--dtype", "float32", "--quiet"]
    started = time.perf_counter()
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    brick = BrickRepository(root / name).get(name)
    return {**brick.metrics, "wall_seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--train", type=int, default=64, help="training pairs")
    parser.add_argument("--heldout", type=int, default=16, help="held-out pairs")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="distributed-train-"))
    data = root / "pairs.jsonl"
    _write_data(args.data, args.train, args.heldout, data)
    torchrun = Path(sys.executable).parent / "torchrun"
    one = _train([sys.executable], 2, "one", root, args, data)
    two = _train([torchrun, "--standalone", "--nproc_per_node", "2"], 1, "two", root, args, data)
    after = (one["heldout_loss_after"], two["heldout_loss_after"])
    report = {
        "one_process": one,
        "two_processes": two,
        "heldout_loss_relative_difference": abs(after[1] - after[0]) / after[0],
        "wall_ratio_two_over_one": two["wall_seconds"] / one["wall_seconds"],
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
