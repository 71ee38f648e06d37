"""Recovery of compact models by self-distillation, on the default model (SmolLM2-135M-Instruct).

All in one process, ratios against the dense model measured in the same process:
- ``--compare-modes S``: train the kept FFN weights vs a LoRA (rank 16, all linear layers) at 50%
  on two functionalities, each for about S seconds (steps set from a 3-step timing probe);
- otherwise, per budget: for each functionality F, the compact model of F (static selection)
  without and with recovery (KL to dense on F's TRAIN prompts + dense continuations), held-out
  reference perplexity on F's TEST samples (and, with ``--cross``, on every functionality); the
  instruction-agnostic compact model (generic importance) + the same recovery on the union of all
  functionalities' TRAIN prompts, on every functionality; a random-neuron control (same budget,
  same recovery) for ``--random`` functionalities; recovery wall time. Each test sample is scored
  by the model of its labelled functionality (oracle routing). With ``--data``, GSM8K solutions
  (math) and Multi30k en->fr references (translation) too.

    flock /work/main/.heavy.lock env OMP_NUM_THREADS=2 PYTHONPATH=src .venv/bin/python \
        benchmarks/recovery.py --analysis /work/wt/demo-analysis --data ../shared/data \
        --budgets 0.5 0.3 --out /work/wt/recovery-results
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from brickwork import load_builtin_suite, load_model
from brickwork.bricks import attach
from brickwork.configure.compact import gather_ffn
from brickwork.configure.evaluate import mean_nll
from brickwork.configure.recover import RecoverySettings, recover
from brickwork.configure.select import baseline_selection, functionality_selection, load_stats
from brickwork.data import Sample

CACHE = Path("/tmp/brickwork-recovery-cache")
REAL = {"math": "gsm8k", "translation": "multi30k"}  # real sets scored with a functionality


def real_samples(data: Path, n: int) -> list[Sample]:
    """GSM8K solutions (math) and Multi30k en->fr references (translation), first ``n`` each."""
    rows = [json.loads(x) for x in (data / "gsm8k_test.jsonl").read_text().splitlines()[:n]]
    out = [Sample(f"gsm-{i}", r["question"], "gsm8k", r["answer"]) for i, r in enumerate(rows)]
    en = (data / "multi30k_test2016.en.txt").read_text().splitlines()[:n]
    fr = (data / "multi30k_test2016.fr.txt").read_text().splitlines()[:n]
    prompt = "Translate this English sentence into French:\n{}"
    out += [
        Sample(f"m30k-{i}", prompt.format(e), "multi30k", f)
        for i, (e, f) in enumerate(zip(en, fr, strict=True))
    ]
    return out


def nll(loaded, samples, groups, brick=None) -> dict[str, float]:
    context = attach(loaded, [brick]) if brick is not None else nullcontext()
    with context:
        values = mean_nll(loaded, samples, groups)
    return {g: float(v) for g, v in zip(groups, values, strict=True)}


def ppl_ratio(nll_value: float, dense_value: float) -> float:
    return math.exp(nll_value - dense_value)


def row(name, functionality, budget, before, after, dense, seconds, steps, extra=None) -> dict:
    """One table row: perplexity ratios vs dense on the functionality's TEST samples."""
    out = {
        "model": name,
        "functionality": functionality,
        "budget": budget,
        "ratio_before": ppl_ratio(before[functionality], dense[functionality]),
        "ratio_after": ppl_ratio(after[functionality], dense[functionality]),
        "seconds": seconds,
        "steps": steps,
    }
    if extra:
        out.update(extra)
    print(json.dumps(out), flush=True)
    return out


def recovered(dense, compact, train, settings):
    started = time.perf_counter()
    brick = recover(dense, compact, train, settings, cache_dir=CACHE)
    return brick, time.perf_counter() - started


def compare_modes(args, dense, stats, suite, groups, dense_nll) -> list[dict]:
    """Train the FFN weights vs a LoRA at 50% for about ``args.compare_modes`` seconds each."""
    rows = []
    for functionality in args.functionalities[:2]:
        kept = functionality_selection(stats, {functionality: 1.0}, 0.5)
        compact = gather_ffn(dense, kept, {"functionality": functionality, "budget": 0.5})
        train = [s for s in suite["train"] if s.functionality == functionality]
        test = [s for s in suite["test"] if s.functionality == functionality]
        before = nll(compact.loaded, test, groups)
        for mode, lr in (("ffn", args.ffn_lr), ("lora", args.lora_lr)):
            probe = dataclasses.replace(args.settings, mode=mode, lr=lr, steps=3)
            per_step = recovered(dense, compact, train, probe)[0].metrics["train_seconds"] / 3
            steps = max(3, int(args.compare_modes / per_step))
            settings = dataclasses.replace(probe, steps=steps)
            brick, seconds = recovered(dense, compact, train, settings)
            after = nll(compact.loaded, test, groups, brick)
            extra = {"mode": mode, "lr": lr, "seconds_per_step": per_step}
            name = f"compact+recovery ({mode})"
            rows.append(
                row(name, functionality, 0.5, before, after, dense_nll, seconds, steps, extra)
            )
    return rows


def frontier(args, dense, stats, suite, groups, dense_nll) -> list[dict]:
    rows = []
    for budget in args.budgets:
        for functionality in args.functionalities:
            kept = functionality_selection(stats, {functionality: 1.0}, budget)
            rows += per_instruction(args, dense, kept, "per-instruction", functionality, budget)
        for functionality in args.random:
            kept = random_selection(stats.generic.shape, budget, args.settings.seed)
            rows += per_instruction(args, dense, kept, "random control", functionality, budget)
        if not args.no_agnostic:
            rows += agnostic(args, dense, stats, budget)
    return rows


def per_instruction(args, dense, kept, name, functionality, budget) -> list[dict]:
    compact = gather_ffn(dense, kept, {"functionality": functionality, "budget": budget})
    train = [s for s in args.suite["train"] if s.functionality == functionality]
    own = (functionality, REAL.get(functionality))
    scored = args.eval if args.cross else [s for s in args.eval if s.functionality in own]
    before = nll(compact.loaded, scored, args.groups)
    brick, seconds = recovered(dense, compact, train, args.settings)
    after = nll(compact.loaded, scored, args.groups, brick)
    extra = {
        f"after/{g}": ppl_ratio(after[g], args.dense[g])
        for g in after
        if g != functionality and (args.cross or g in own)
    }
    steps = brick.metrics["steps_run"]
    return [row(name, functionality, budget, before, after, args.dense, seconds, steps, extra)]


def agnostic(args, dense, stats, budget) -> list[dict]:
    """The generic compact model + the same recovery on every functionality's train prompts."""
    compact = gather_ffn(dense, baseline_selection("generic", budget, stats=stats))
    before = nll(compact.loaded, args.eval, args.groups)
    brick, seconds = recovered(dense, compact, args.suite["train"], args.settings)
    after = nll(compact.loaded, args.eval, args.groups, brick)
    steps = brick.metrics["steps_run"]
    name = "agnostic (generic)"
    return [row(name, g, budget, before, after, args.dense, seconds, steps) for g in args.groups]


def random_selection(shape, budget: float, seed: int) -> list[torch.Tensor]:
    layers, d_ff = shape
    generator = torch.Generator().manual_seed(seed + 1234)
    k = max(1, round(budget * d_ff))
    return [torch.randperm(d_ff, generator=generator)[:k].sort().values for _ in range(layers)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--analysis", required=True)
    parser.add_argument("--data", type=Path, help="../shared/data: GSM8K and Multi30k too")
    parser.add_argument("--n-real", type=int, default=16)
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.5, 0.3])
    parser.add_argument("--functionalities", nargs="+")
    parser.add_argument("--random", nargs="*", default=[], help="functionalities for the control")
    parser.add_argument("--cross", action="store_true", help="score every functionality")
    parser.add_argument("--no-agnostic", action="store_true", help="skip the agnostic model")
    parser.add_argument("--compare-modes", type=float, help="seconds per mode (mode table)")
    parser.add_argument("--steps", type=int, default=RecoverySettings.steps)
    parser.add_argument("--lr", type=float, default=RecoverySettings.lr)
    parser.add_argument("--ffn-lr", type=float, default=1e-4, help="mode table: FFN weights")
    parser.add_argument("--lora-lr", type=float, default=1e-3, help="mode table: LoRA")
    parser.add_argument("--mode", default=RecoverySettings.mode)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    dense = load_model("smollm2-135m-instruct")
    stats = load_stats(args.analysis)
    args.groups = list(stats.functionalities) + (list(REAL.values()) if args.data else [])
    args.functionalities = args.functionalities or list(stats.functionalities)
    args.suite = {split: load_builtin_suite(split) for split in ("train", "test")}
    args.eval = args.suite["test"] + (real_samples(args.data, args.n_real) if args.data else [])
    args.settings = RecoverySettings(steps=args.steps, lr=args.lr, mode=args.mode, seed=args.seed)
    args.settings.check()
    started = time.perf_counter()
    args.dense = nll(dense, args.eval, args.groups)
    print(
        json.dumps({"model": "dense", "nll": args.dense, "seconds": time.perf_counter() - started})
    )
    if args.compare_modes:
        rows = compare_modes(args, dense, stats, args.suite, args.groups, args.dense)
    else:
        rows = frontier(args, dense, stats, args.suite, args.groups, args.dense)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"dense": args.dense, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
