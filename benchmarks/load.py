"""Load time of a GGUF model: first load (dequantize + cache as safetensors) against a cached load.

Both loads run in this process against a fresh, temporary cache. Target: cached >= 3x faster.

    .venv/bin/python benchmarks/load.py [--model smollm2-135m-instruct]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from brickwork import load_model


def timed_load(model: str, cache: str) -> tuple[float, str]:
    started = time.perf_counter()
    loaded = load_model(model, cache_dir=cache)
    return time.perf_counter() - started, loaded.fingerprint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        first, fp_first = timed_load(args.model, cache)
        second, fp_second = timed_load(args.model, cache)
    assert fp_first == fp_second, "the cached model is not the same model"
    print(f"model {args.model} ({fp_first})")
    print("| load | seconds |\n|---|---|")
    print(f"| first (GGUF dequantize + cache) | {first:.2f} |")
    print(f"| second (cached safetensors) | {second:.2f} |")
    print(f"speedup: {first / second:.1f}x (target >= 3x)")


if __name__ == "__main__":
    main()
