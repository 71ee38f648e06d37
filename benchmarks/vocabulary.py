"""The output-vocabulary brick (LM-head slice + exact screen) with and without FFN slicing.

For one functionality: the slice = tokens of its TRAIN prompts, references and the dense model's
greedy continuations of them, plus the most frequent TRAIN tokens. On its TEST prompts: whether
greedy decoding equals the full head's, how often an outside token had to be recomputed (and how
often the plain norm bound would have fallen back to the full head), TEST reference perplexity,
and decode tokens/s (batch 1, interleaved rounds, same process) of dense / sliced head / compact
FFN (neurons by TRAIN importance of the functionality) / both.

    flock /work/main/.heavy.lock env OMP_NUM_THREADS=2 PYTHONPATH=src \
        .venv/bin/python benchmarks/vocabulary.py --model gemma3-270m --functionality writing
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

import torch

from brickwork import load_builtin_suite, load_model
from brickwork.bricks import attach
from brickwork.bricks.vocabulary import (
    collect_vocabulary,
    frequent_tokens,
    sliced_head,
    vocabulary_brick,
)
from brickwork.configure.compact import gather_ffn
from brickwork.configure.evaluate import decode_speed, mean_nll
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
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument("--test-prompts", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--speed-rounds", type=int, default=2)
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
    compact = gather_ffn(loaded, top_per_layer(train_importance(loaded, train), args.budget))
    print(f"# Vocabulary brick: {args.model} ({loaded.fingerprint}), functionality {f}\n")
    print(
        f"Slice: {brick.spec.n_tokens} of {vocab} tokens ({brick.spec.n_tokens / vocab:.1%}); "
        f"{len(train)} TRAIN prompts, {args.continuation} continuation tokens each, "
        f"{args.frequent} most frequent TRAIN tokens; built in {built:.0f} s. "
        f"FFN: {args.budget:.0%} of neurons by TRAIN importance of {f}.\n"
    )
    prompts = [torch.tensor([prompt_prefix(tok, s.prompt)]) for s in test[: args.test_prompts]]
    compact_base = compact.loaded
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
    nll[f"FFN {args.budget:.0%}"] = mean_nll(compact_base, test, groups)
    tokens_t = brick.tensors["tokens"]
    with sliced_head(compact_base.model, tokens_t):
        nll[f"FFN {args.budget:.0%} + sliced head"] = mean_nll(compact_base, test, groups)
    positions, norm_bound = stats["positions"], stats["norm_bound_fallback"]
    print(
        f"Greedy ({len(prompts)} TEST prompts x {args.tokens} tokens): {same}/{len(prompts)} "
        f"identical to the full head. Positions with an outside token recomputed (screen "
        f"fallback): {stats['fallback']}/{positions} ({stats['fallback'] / positions:.1%}), "
        f"outside tokens recomputed per step: {stats['recomputed'] / max(1, positions):.1f}; "
        f"the norm bound ||h||·max||w|| alone would fall back to the full head at "
        f"{norm_bound}/{positions} ({norm_bound / positions:.0%}).\n"
    )
    _speed(loaded, compact_base, tokens_t, prompts[0], nll, args, pad)


def _speed(loaded, compact_base, tokens, prompt, nll, args, pad) -> None:
    configs = {
        "dense": (loaded.model, False),
        "sliced head": (loaded.model, True),
        f"FFN {args.budget:.0%}": (compact_base.model, False),
        f"FFN {args.budget:.0%} + sliced head": (compact_base.model, True),
    }
    speed = dict.fromkeys(configs, 0.0)
    extra = {}
    for _ in range(args.speed_rounds):
        for name, (model, sliced) in configs.items():
            with sliced_head(model, tokens) if sliced else nullcontext() as head:
                speed[name] = max(speed[name], decode_speed(model, prompt, args.tokens, pad))
                if sliced:
                    extra[name] = head.screen.numel() * 2 + head.rows.numel() * 4
    dense_ppl = float(nll["dense"].exp()[0])
    print(
        "| model | TEST ref. perplexity | vs dense | decode tok/s | x dense | head copies MB |\n"
        "|---|---|---|---|---|---|"
    )
    for name in configs:
        ppl = float(nll[name].exp()[0])
        mb = extra.get(name, 0) / 2**20
        print(
            f"| {name} | {ppl:.2f} | {ppl / dense_ppl - 1:+.1%} | {speed[name]:.1f} | "
            f"{speed[name] / speed['dense']:.2f} | {mb:.0f} |"
        )


if __name__ == "__main__":
    main()
