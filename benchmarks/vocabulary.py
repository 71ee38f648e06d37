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
from speed_rounds import measure_model, print_speed_table, speed_rounds

from brickwork import load_builtin_suite, load_model
from brickwork.bricks import attach
from brickwork.bricks.vocabulary import (
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
    same, stats = 0, None
    with attach(loaded, [brick]) as model:
        head = model.get_output_embeddings()
        for ids in prompts:
            sliced_out = greedy(model, ids, args.tokens, pad)
            same += int(torch.equal(sliced_out, greedy(loaded.model, ids, args.tokens, pad)))
        stats = dict(head.stats)
        head.stats.update(dict.fromkeys(head.stats, 0))
    groups = [f]
    nll = {"dense": mean_nll(loaded, test, groups)}
    with attach(loaded, [brick]):
        nll["sliced head"] = mean_nll(loaded, test, groups)
    tokens_t = brick.tensors["tokens"]
    for budget, small in compact.items():
        nll[f"FFN {budget:.0%}"] = mean_nll(small, test, groups)
        with sliced_head(small.model, tokens_t):
            nll[f"FFN {budget:.0%} + sliced head"] = mean_nll(small, test, groups)
    positions, norm_bound = stats["positions"], stats["norm_bound_fallback"]
    print(
        f"Greedy ({len(prompts)} TEST prompts x {args.tokens} tokens): {same}/{len(prompts)} "
        f"identical to the full head. Positions with an outside token recomputed (screen "
        f"fallback): {stats['fallback']}/{positions} ({stats['fallback'] / positions:.1%}), "
        f"outside tokens recomputed per step: {stats['recomputed'] / max(1, positions):.1f}; "
        f"the norm bound ||h||·max||w|| alone would fall back to the full head at "
        f"{norm_bound}/{positions} ({norm_bound / positions:.0%}).\n"
    )
    _speed(loaded, compact, tokens_t, prompts[0], nll, args, pad)


def _speed(loaded, compact, tokens, prompt, nll, args, pad) -> None:
    configs = {"dense": (loaded.model, False), "sliced head": (loaded.model, True)}
    for budget, small in compact.items():
        configs[f"FFN {budget:.0%}"] = (small.model, False)
        configs[f"FFN {budget:.0%} + sliced head"] = (small.model, True)
    ids = torch.randint(
        0,
        loaded.model.config.vocab_size,
        (1, args.prefill_tokens),
        generator=torch.Generator().manual_seed(0),
    )
    memory = {}

    def measure(name, model, sliced):
        with sliced_head(model, tokens) if sliced else nullcontext() as head:
            extra = head.screen.numel() * 2 + head.rows.numel() * 4 if sliced else 0
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
