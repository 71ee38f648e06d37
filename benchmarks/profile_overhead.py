"""Capture overhead: tokens/s of a plain forward pass against a forward pass with full profiling.

Both run in this process on the same batches (batch 8 x 256 tokens of the built-in suite's text,
joined and cut into windows). Target: overhead <= 15%.

    .venv/bin/python benchmarks/profile_overhead.py [--model smollm2-135m-instruct] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from brickwork import load_builtin_suite, load_model
from brickwork.data import Sample
from brickwork.profile import profile_model
from brickwork.profile.run import prompt_batches


def text_windows(tokenizer, n_windows: int, window: int) -> list[Sample]:
    """Cut the built-in suite's prompts, joined, into windows of ``window`` tokens."""
    text = "\n\n".join(s.prompt for s in load_builtin_suite())
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    chunks = [ids[i * window : (i + 1) * window] for i in range(n_windows)]
    return [Sample(f"w{i}", tokenizer.decode(c), "text") for i, c in enumerate(chunks)]


def plain_forward(loaded, batches) -> float:
    started = time.perf_counter()
    with torch.no_grad():
        for _, input_ids, attention, _ in batches:
            loaded.model.base_model(input_ids=input_ids, attention_mask=attention, use_cache=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    loaded = load_model(args.model)
    samples = text_windows(loaded.tokenizer, 8 * args.batches, 256)
    batches = prompt_batches(loaded.tokenizer, samples, 8, 256)
    tokens = sum(int(content.sum()) for *_, content in batches)
    plain_forward(loaded, batches[:1])  # warm-up
    plain, captured = [], []
    for _ in range(args.repeats):  # interleaved, so drift affects both alike
        plain.append(plain_forward(loaded, batches))
        started = time.perf_counter()
        profile_model(loaded, samples, batch_size=8, max_tokens=256, progress=False)
        captured.append(time.perf_counter() - started)
    plain_s, captured_s = statistics.median(plain), statistics.median(captured)
    print(
        f"model {loaded.source}: {len(batches)} batches of 8 x 256, {tokens} tokens, "
        f"median of {args.repeats}"
    )
    print("| run | seconds | tokens/s |\n|---|---|---|")
    print(f"| plain forward | {plain_s:.2f} | {tokens / plain_s:.0f} |")
    print(f"| forward + capture + accumulation | {captured_s:.2f} | {tokens / captured_s:.0f} |")
    print(f"capture overhead: {captured_s / plain_s - 1:+.1%} (target <= +15%)")


if __name__ == "__main__":
    main()
