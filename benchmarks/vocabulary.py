"""The output-vocabulary brick (LM-head slice + exact screen) with and without FFN slicing.

For one functionality: the slice = tokens of its TRAIN prompts, references and the dense model's
greedy continuations of them, plus the most frequent TRAIN tokens. On its TEST prompts: whether
greedy decoding equals the full head's, how often an outside token had to be recomputed (and how
often the plain norm bound would have fallen back to the full head), TEST reference perplexity,
and decode / prefill tokens/s (batch 1, interleaved rounds, same process; medians and the spread
of the per-round ratio) and memory of dense / sliced head / compact FFN at each budget (neurons by
TRAIN importance of the functionality) / both.

    python benchmarks/vocabulary.py --model gemma3-270m --functionality writing --budgets 0.5 0.3
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

import torch
from speed_rounds import measure_model, prefill_ids, print_speed_table, speed_rounds

from brickwork import load_builtin_suite, load_model
from brickwork.bricks.vocabulary import (
    SCREENS,
    collect_vocabulary,
    frequent_tokens,
    sliced_head,
    vocabulary_brick,
)
from brickwork.configure.compact import gather_ffn
from brickwork.configure.evaluate import mean_nll, parameter_bytes
from brickwork.configure.select import top_per_layer
from brickwork.configure.token_sparsity import calibration_ids
from brickwork.models.tokens import prompt_prefix
from brickwork.profile.capture import capture_activations, down_projection_norms


def train_importance(loaded, samples) -> torch.Tensor:
    """Mean |a| over the samples' tokens x ||W_down[:, i]|| per layer and neuron [L, D]."""
    sums: dict[int, torch.Tensor] = {}
    count = 0

    def keep(i, a):
        a = a.abs().reshape(-1, a.shape[-1])
        sums[i] = sums.get(i, 0) + a.sum(dim=0)

    with torch.no_grad(), capture_activations(loaded.model, loaded.family, keep):
        for ids in calibration_ids(loaded, samples):
            loaded.model(input_ids=ids, use_cache=False)
            count += ids.shape[1]
    mean = torch.stack([sums[i] for i in sorted(sums)]) / count
    return mean * down_projection_norms(loaded.model, loaded.family)


def greedy(model, ids, n, pad):
    with torch.no_grad():
        return model.generate(input_ids=ids, max_new_tokens=n, do_sample=False, pad_token_id=pad)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--functionality", default="writing")
    parser.add_argument("--continuation", type=int, default=32)
    parser.add_argument("--frequent", type=int, default=4096)
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.5])
    parser.add_argument("--test-prompts", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--speed-rounds", type=int, default=3)
    parser.add_argument("--prefill-tokens", type=int, default=256)
    parser.add_argument("--screens", nargs="+", default=list(SCREENS), choices=SCREENS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    loaded = load_model(args.model)
    tok, pad, f = loaded.tokenizer, loaded.tokenizer.pad_token_id, args.functionality
    vocab = loaded.model.config.vocab_size
    train_all = load_builtin_suite("train")
    train = [s for s in train_all if s.functionality == f]
    test = [s for s in load_builtin_suite("test") if s.functionality == f]
    start = time.perf_counter()
    tokens = collect_vocabulary(
        loaded, [s.prompt for s in train], [s.reference for s in train], args.continuation
    )
    texts = [t for s in train_all for t in (s.prompt, s.reference or "")]
    tokens = torch.cat([tokens, frequent_tokens(loaded, texts, args.frequent)])
    brick = vocabulary_brick(f"{f}-vocab", f, loaded.fingerprint, tokens, vocab, "train+freq")
    built = time.perf_counter() - start
    importance = train_importance(loaded, train)
    compact = {b: gather_ffn(loaded, top_per_layer(importance, b)).loaded for b in args.budgets}
    print(f"# Vocabulary brick: {args.model} ({loaded.fingerprint}), functionality {f}\n")
    print(
        f"Slice: {brick.spec.n_tokens} of {vocab} tokens ({brick.spec.n_tokens / vocab:.1%}); "
        f"{len(train)} TRAIN prompts, {args.continuation} continuation tokens each, "
        f"{args.frequent} most frequent TRAIN tokens; built in {built:.0f} s. "
        f"FFN: {', '.join(f'{b:.0%}' for b in args.budgets)} of neurons by TRAIN importance "
        f"of {f}.\n"
    )
    prompts = [torch.tensor([prompt_prefix(tok, s.prompt)]) for s in test[: args.test_prompts]]
    tokens_t = brick.tensors["tokens"]
    full = [greedy(loaded.model, ids, args.tokens, pad) for ids in prompts]
    for screen in args.screens:
        _greedy_check(loaded, tokens_t, screen, prompts, full, args.tokens, pad)
    groups, last = [f], args.screens[-1]
    configs = {"dense": (loaded, None)}
    configs.update({f"sliced head ({s})": (loaded, s) for s in args.screens})
    for budget, small in compact.items():
        configs[f"FFN {budget:.0%}"] = (small, None)
        configs[f"FFN {budget:.0%} + sliced head ({last})"] = (small, last)
    nll = {}
    for name, (model, screen) in configs.items():
        with sliced_head(model.model, tokens_t, screen) if screen else nullcontext():
            nll[name] = mean_nll(model, test, groups)
    _speed(loaded, configs, tokens_t, prompts[0], nll, args, pad)


def _greedy_check(loaded, tokens, screen, prompts, full, n, pad) -> None:
    """How many greedy outputs equal the full head's (``full``), and the screen's statistics."""
    with sliced_head(loaded.model, tokens, screen) as head:
        outs = [greedy(loaded.model, ids, n, pad) for ids in prompts]
        stats = dict(head.stats)
    same = sum(int(torch.equal(o, d)) for o, d in zip(outs, full, strict=True))
    positions, norm_bound = stats["positions"], stats["norm_bound_fallback"]
    print(
        f"{screen} screen, greedy ({len(prompts)} TEST prompts x {n} tokens): {same}/"
        f"{len(prompts)} identical to the full head. Positions with an outside token recomputed "
        f"(screen fallback): {stats['fallback']}/{positions} "
        f"({stats['fallback'] / positions:.1%}), "
        f"outside tokens recomputed per step: {stats['recomputed'] / max(1, positions):.1f}; "
        f"the norm bound ||h||·max||w|| alone would fall back to the full head at "
        f"{norm_bound}/{positions} ({norm_bound / positions:.0%}).\n"
    )


def _speed(loaded, configs, tokens, prompt, nll, args, pad) -> None:
    ids = prefill_ids(loaded.model, args.prefill_tokens)
    memory = {}

    def measure(name, model, screen):
        model = model.model
        with sliced_head(model, tokens, screen) if screen else nullcontext() as head:
            extra = 0
            if screen:
                extra = head.screen.numel() * head.screen.element_size() + head.rows.numel() * 4
            memory[name] = (parameter_bytes(model) + extra) / 2**20
            return measure_model(model, prompt, ids, args.tokens, pad)

    runs = speed_rounds(
        {n: (lambda n=n, m=m, s=s: measure(n, m, s)) for n, (m, s) in configs.items()},
        args.speed_rounds,
    )
    dense_ppl = float(nll["dense"].exp()[0])
    print("| model | TEST ref. perplexity | vs dense |\n|---|---|---|")
    for name in configs:
        ppl = float(nll[name].exp()[0])
        print(f"| {name} | {ppl:.2f} | {ppl / dense_ppl - 1:+.1%} |")
    print(f"\nSpeed: decode {args.tokens} tokens, prefill {args.prefill_tokens} tokens.\n")
    print_speed_table(runs, memory)


if __name__ == "__main__":
    main()
