"""Token-level FFN sparsity at equal budgets: quality, and whether a gathered kernel is faster.

1. Quality: reference perplexity on a seeded subset of the built-in TEST split (and GSM8K /
   Multi30k references from --data) for dense; TEAL, CATS (thresholds calibrated on TRAIN tokens);
   the per-token top-|a| oracle; GRIFFIN (prompt-selected compact model, no prior); and a random
   per-token mask of the same budget (control). The kept share of neurons is measured on TEST.
2. Speed: decode tokens/s (HF generate, batch 1) of dense vs the gathered sparse FFN
   (``sparse_decode``) at each budget, interleaved rounds in this process; and one FFN layer
   alone (one token), dense vs gathered.

    flock /work/main/.heavy.lock env OMP_NUM_THREADS=2 PYTHONPATH=src \
        .venv/bin/python benchmarks/token_sparsity.py --data ../shared/data
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from configure import real_eval_samples, test_subset

from brickwork import load_builtin_suite, load_model
from brickwork.analysis.masking import edit_activations
from brickwork.configure.evaluate import decode_speed, mean_nll
from brickwork.configure.prompted import prompted_losses_at
from brickwork.configure.sparse_ffn import SparseFfn, sparse_decode
from brickwork.configure.token_sparsity import (
    METHODS,
    apply_sparsity,
    calibrate,
    ffn_read_share,
    kept_share,
)
from brickwork.models.tokens import prompt_prefix


def random_mask(loaded, budget: float, seed: int = 0):
    """Control: every token keeps a random ``budget`` share of each layer's neurons."""
    generator = torch.Generator().manual_seed(seed)

    def edit(layer, a):
        keep = torch.rand(a.shape, generator=generator) < budget
        return a * keep.to(a.dtype)

    return edit_activations(loaded, edit)


def section_quality(loaded, calibrated, args, log) -> None:
    samples = test_subset(args.per_functionality, args.seed)
    if args.data:
        samples += real_eval_samples(args.data, args.real_per_set, offset=10)
    groups = sorted(
        {s.functionality for s in samples}, key=[s.functionality for s in samples].index
    )
    suite = [g for g in groups if g not in ("gsm8k", "multi30k")]
    dense = mean_nll(loaded, samples, groups)
    rows = {"dense": (dense, 1.0, 1.0)}
    start = time.perf_counter()
    griffin = prompted_losses_at(loaded, samples, groups, args.budgets)
    for b in args.budgets:
        for method in METHODS:
            sparsity = calibrated[method][b]
            with apply_sparsity(loaded, sparsity):
                nll = mean_nll(loaded, samples, groups)
            kept = kept_share(loaded, sparsity, samples[:: args.kept_stride])
            rows[f"{method} {b:.0%}"] = (nll, kept, ffn_read_share(method, b))
        rows[f"griffin (prompt-selected) {b:.0%}"] = (griffin[b], b, b)
        with random_mask(loaded, b, args.seed):
            rows[f"control: random per-token {b:.0%}"] = (mean_nll(loaded, samples, groups), b, 1.0)
    log(f"(quality: {time.perf_counter() - start:.0f} s)")
    log(
        f"\n## Reference perplexity ({args.per_functionality} TEST samples per functionality"
        f"{f', {args.real_per_set} per real set' if args.data else ''}); kept = measured share of"
        " FFN neurons non-zero on TEST; read = share of FFN weights a decode step must read\n"
    )
    log("| model | kept | read | " + " | ".join(groups) + " | mean increase (suite) |")
    log("|---|---|---|" + "---|" * (len(groups) + 1))
    ppl0 = dense.exp()
    index = [groups.index(g) for g in suite]
    for name, (nll, kept, read) in rows.items():
        ppl = nll.exp()
        cells = [
            f"{p:.2f} ({p / d - 1:+.0%})" for p, d in zip(ppl.tolist(), ppl0.tolist(), strict=True)
        ]
        inc = float((ppl[index] / ppl0[index] - 1).mean())
        log(f"| {name} | {kept:.0%} | {read:.0%} | " + " | ".join(cells) + f" | {inc:+.1%} |")


def _ffn_ms(fn, x, repeats: int) -> float:
    with torch.no_grad():
        fn(x)
        start = time.perf_counter()
        for _ in range(repeats):
            fn(x)
    return (time.perf_counter() - start) / repeats * 1000


def section_speed(loaded, calibrated, args, log) -> None:
    prompt = torch.tensor([prompt_prefix(loaded.tokenizer, "Write a short story about a cat.")])
    pad = loaded.tokenizer.pad_token_id
    family = loaded.family
    layer = family.layer_modules(loaded.model)[len(family.layer_modules(loaded.model)) // 2]
    x = torch.randn(loaded.model.config.hidden_size)
    names = ["dense"] + [f"{m} {b:.0%}" for b in args.budgets for m in ("teal", "cats")]
    decode, ffn = dict.fromkeys(names, 0.0), dict.fromkeys(names, float("inf"))
    for _ in range(args.speed_rounds):
        for name in names:
            if name == "dense":
                decode[name] = max(
                    decode[name], decode_speed(loaded.model, prompt, args.tokens, pad)
                )
                ffn[name] = min(ffn[name], _ffn_ms(family.ffn(layer), x, args.ffn_repeats))
                continue
            method, pct = name.split()
            sparsity = calibrated[method][float(pct[:-1]) / 100]
            with sparse_decode(loaded, sparsity) as model:
                decode[name] = max(decode[name], decode_speed(model, prompt, args.tokens, pad))
                module = family.ffn(layer)
                assert isinstance(module, SparseFfn)
                ffn[name] = min(ffn[name], _ffn_ms(module.gathered, x, args.ffn_repeats))
    log(
        f"\n## Decode speed: gathered sparse FFN vs dense ({torch.get_num_threads()} threads, "
        f"batch 1, {args.tokens} new tokens, best of {args.speed_rounds} interleaved rounds)\n"
    )
    log("| model | decode tok/s | x dense | one FFN layer, 1 token (ms) | x dense |")
    log("|---|---|---|---|---|")
    for name in names:
        log(
            f"| {name} | {decode[name]:.1f} | {decode[name] / decode['dense']:.2f} | "
            f"{ffn[name]:.3f} | {ffn['dense'] / ffn[name]:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.7, 0.5, 0.3])
    parser.add_argument("--per-functionality", type=int, default=5)
    parser.add_argument("--real-per-set", type=int, default=4)
    parser.add_argument("--calib-stride", type=int, default=3, help="every n-th TRAIN sample")
    parser.add_argument("--kept-stride", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--speed-rounds", type=int, default=3)
    parser.add_argument("--ffn-repeats", type=int, default=200)
    parser.add_argument("--sections", nargs="+", default=["quality", "speed"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    loaded = load_model(args.model)
    train = load_builtin_suite("train")[:: args.calib_stride]
    start = time.perf_counter()
    calibrated = {m: calibrate(loaded, m, args.budgets, train) for m in METHODS}
    print(f"# Token-level sparsity: {args.model} ({loaded.fingerprint})\n")
    print(f"Calibrated on {len(train)} TRAIN samples in {time.perf_counter() - start:.0f} s")
    if "quality" in args.sections:
        section_quality(loaded, calibrated, args, print)
    if "speed" in args.sections:
        section_speed(loaded, calibrated, args, print)


if __name__ == "__main__":
    main()
