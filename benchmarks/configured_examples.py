"""Example generations: dense vs the configured (sliced + recovered) model, one held-out TEST
prompt per functionality, greedy, side by side as a markdown table.

    python benchmarks/configured_examples.py --configured runs/cfg --budget 0.5
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch
from frontier import configured_dir

from brickwork import load_builtin_suite, load_model
from brickwork.bricks.train_eval import generate_answers
from brickwork.configure.build import load_configured
from brickwork.data import FUNCTIONALITIES


def one_line(text: str, limit: int) -> str:
    """The answer on one table line, cut to ``limit`` characters."""
    flat = " ".join(text.split()).replace("|", "\\|")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--configured", type=Path, default=Path("runs/cfg"))
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument("--functionalities", nargs="+", default=list(FUNCTIONALITIES))
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--chars", type=int, default=150, help="cut answers to this length")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(2)
    dense = load_model(args.model)
    test = load_builtin_suite("test")
    rng = random.Random(args.seed)
    print(f"| functionality | prompt | dense | configured {args.budget:.0%} + recovery |")
    print("|---|---|---|---|")
    for functionality in args.functionalities:
        sample = rng.choice([s for s in test if s.functionality == functionality])
        configured = load_configured(configured_dir(args, functionality))
        answers = [
            generate_answers(model, dense.tokenizer, [sample.prompt], args.tokens)[0]
            for model in (dense, configured.loaded)
        ]
        cells = [functionality, one_line(sample.prompt, 90)]
        cells += [one_line(a, args.chars) for a in answers]
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
