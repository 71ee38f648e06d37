"""Decode and prefill speed of per-instruction compact models against dense, with its noise.

The compact models keep the top ``budget`` share of every layer's FFN neurons by the TRAIN
importance of one functionality (the per-instruction slice; recovery does not change the shapes,
so it does not change speed). Dense and compact models run in turn in each of ``--rounds``
interleaved rounds in one process, through the same generation path; the table gives medians and
the min-max of the per-round ratio to dense.

    python benchmarks/decode.py --budgets 0.5 0.3 --rounds 5 --tokens 64
"""

from __future__ import annotations

import argparse

import torch
from speed_rounds import measure_model, prefill_ids, print_speed_table, speed_rounds
from vocabulary import train_importance

from brickwork import load_builtin_suite, load_model
from brickwork.configure.compact import gather_ffn
from brickwork.configure.evaluate import parameter_bytes
from brickwork.configure.select import top_per_layer
from brickwork.models.tokens import prompt_prefix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--functionality", default="math")
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.5, 0.3])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--prefill-tokens", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(2)
    loaded = load_model(args.model)
    train = [s for s in load_builtin_suite("train") if s.functionality == args.functionality]
    importance = train_importance(loaded, train)
    models = {"dense": loaded.model}
    for budget in args.budgets:
        compact = gather_ffn(loaded, top_per_layer(importance, budget))
        models[f"compact {budget:.0%}"] = compact.loaded.model
    tok, pad = loaded.tokenizer, loaded.tokenizer.pad_token_id
    prompt = torch.tensor([prompt_prefix(tok, "Write a short story about a cat.")])
    ids = prefill_ids(loaded.model, args.prefill_tokens)
    configs = {
        name: (lambda m=model: measure_model(m, prompt, ids, args.tokens, pad))
        for name, model in models.items()
    }
    runs = speed_rounds(configs, args.rounds)
    print(
        f"# Decode speed: {args.model}, per-instruction FFN slice ({args.functionality}), "
        f"{args.tokens} tokens, prefill {args.prefill_tokens} tokens\n"
    )
    print_speed_table(runs, {n: parameter_bytes(m) / 2**20 for n, m in models.items()})


if __name__ == "__main__":
    main()
