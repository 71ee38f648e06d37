"""Growing the default model: a new capability by depth or width growth, and continual plugins.

``--only depth`` / ``--only width``: teach English->German translation of Multi30k captions
(``--data``) by training only the grown parameters (two LLaMA-Pro identity blocks, or new FFN
neurons), against a full fine-tune of as many existing parameters (the two copied blocks, or as
many existing neurons in the same layers). Captions 0-299 train, 300-339 pick the best step,
340-439 are the held-out test (response loss; chrF of greedy translations of the first
``--generate``). Forgetting: the perplexity of the built-in suite's test references for its seven
functionalities, before and after. Both arms keep close to the base with a KL term on the suite's
*train* split (``--preserve-weight``; 0 turns it off).

``--only continual``: three task bricks added one after another (en->de, en->fr, GSM8K answer
format), a nearest-centroid router over the base model's mean prompt state; each task's held-out
metric right after it was learned and after the last addition, routing accuracy, and controls.

    .venv/bin/python benchmarks/grow.py --only depth|width|continual [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from pathlib import Path

import torch
from bricks import PROMPT, chrf, translation_samples, unrelated_losses

from brickwork import load_builtin_suite, load_model
from brickwork.bricks import attach
from brickwork.bricks.train_eval import generate_answers, response_loss
from brickwork.data import FUNCTIONALITIES, Sample
from brickwork.ops.grow import grow_depth, grow_experts, grow_width
from brickwork.ops.grow.continual import (
    PluginSystem,
    add_task,
    prompt_embeddings,
    route,
    routed_answers,
)
from brickwork.ops.grow.train import GrowTrainSettings, layer_slices, neuron_slices, train_slices


def translation_metrics(loaded, model, test: list[Sample], n_generate: int) -> dict:
    loss = response_loss(loaded, test)
    chosen = test[:n_generate]
    outputs = generate_answers(model, loaded.tokenizer, [s.prompt for s in chosen],
                               max_new_tokens=40)  # fmt: skip
    outputs = [o.strip().split("\n")[0] for o in outputs]
    per, overall = unrelated_losses(loaded)
    return {"loss": loss, "chrf": chrf(outputs, [s.reference for s in chosen]),
            "suite_loss": overall, "suite_per": per, "example": outputs[0]}  # fmt: skip


def init_check(loaded, samples: list[Sample]) -> list[str]:
    """Max |logit change| at init of each growth on the default model, on the given prompts."""
    ids = loaded.tokenizer([s.prompt for s in samples], return_tensors="pt", padding=True)
    n = len(loaded.family.layer_modules(loaded.model))
    few, two, at = (
        sorted({0, n // 2, n - 1}),
        sorted({n // 6, n - 1 - n // 6}),
        sorted({0, n // 2, n}),
    )
    growths = {
        f"width, zero output (64 neurons in layers {few})": lambda: grow_width(loaded, few, 64),
        f"width, Net2Net split (64 neurons in layers {few})": lambda: grow_width(
            loaded, few, 64, method="split"
        ),
        f"depth (blocks before layers {at})": lambda: grow_depth(loaded, at),
        f"experts, 4 copies, top-2 (layers {two})": lambda: grow_experts(loaded, two, 4),
        f"experts, 4 neuron groups, all active (layers {two})": lambda: grow_experts(
            loaded, two, 4, mode="groups"
        ),
    }
    with torch.no_grad():
        base = loaded.model(**ids).logits
        lines = [
            "| growth at init | max abs logit change | logit scale (max abs) |",
            "|---|---|---|",
        ]
        for label, grow in growths.items():
            grown = grow()
            diff = (grown.loaded.model(**ids).logits - base).abs().max().item()
            lines.append(f"| {label} | {diff:.2e} | {base.abs().max().item():.1f} |")
            del grown
    return lines


def growth_benchmark(loaded, args) -> list[str]:
    train = translation_samples(args.data, 0, 300)
    valid = translation_samples(args.data, 300, 40)
    test = translation_samples(args.data, 340, 100)
    base = translation_metrics(loaded, loaded.model, test, args.generate)
    print("base", _growth_row("base model", base, base), flush=True)
    checks = init_check(loaded, test[:4]) if args.only == "depth" else []
    if args.only == "depth":
        grown = grow_depth(loaded, args.positions)
        baseline = layer_slices(loaded, grown.history[-1]["copied_from"])
        copied = grown.history[-1]["copied_from"]
        what = f"identity blocks before layers {args.positions} (copies of layers {copied})"
        control = f"full fine-tune of the copied layers {grown.history[-1]['copied_from']}"
    else:
        layers = list(range(args.first_layer, len(loaded.family.layer_modules(loaded.model))))
        grown = grow_width(loaded, layers, args.neurons)
        d_ff = loaded.family.d_ff(loaded.model.config)
        baseline = neuron_slices(loaded, layers, d_ff - args.neurons, d_ff)
        what = f"{args.neurons} new FFN neurons in each of layers {layers[0]}-{layers[-1]}"
        control = f"fine-tune of {args.neurons} existing neurons in each of the same layers"
    settings = GrowTrainSettings(steps=args.steps, lr=args.lr, batch_size=8,
                                 eval_every=args.eval_every, max_seconds=args.seconds,
                                 preserve_weight=args.preserve_weight)  # fmt: skip
    preserve = load_builtin_suite("train") if args.preserve_weight > 0 else None
    arms = {"grown (only new parameters train)": grown.trainable}
    if not args.no_baseline:
        arms[f"baseline: {control}"] = baseline
    results, notes = {}, []
    for label, trainable in arms.items():
        source = grown.loaded if trainable is grown.trainable else loaded
        trained, m = train_slices(source, trainable, train, valid, settings=settings,
                                  preserve=preserve, reference=loaded)  # fmt: skip
        results[label] = translation_metrics(trained, trained.model, test, args.generate)
        print(_growth_row(label, results[label], base), m, flush=True)
        notes.append(
            f"- {label}: {m['trainable_parameters']:,} trainable parameters, "
            f"{m['steps_run']} steps x batch 8 in {m['train_seconds']:.0f} s, best "
            f"validation step {m['best_step']} (validation loss "
            f"{m['heldout_loss_before']:.3f} -> {m['heldout_loss_after']:.3f})."
        )
        del trained
    table = _growth_table(what, base, results, notes, args)
    return table + (
        ["", "Output at init on 4 test prompts (default model):", "", *checks] if checks else []
    )


def _growth_table(what: str, base: dict, results: dict, notes: list[str], args) -> list[str]:
    lines = [f"### {args.only.capitalize()} growth: {what}", "",
             "| model | test response loss | test ppl | chrF (greedy, "
             f"{args.generate}) | suite ppl (7 functionalities) | suite ppl change |",
             "|---|---|---|---|---|---|",
             _growth_row("base model", base, base)]  # fmt: skip
    lines += [_growth_row(label, r, base) for label, r in results.items()]
    lines += ["", "Per-functionality suite perplexity (test references):", "",
              "| functionality | base | " + " | ".join(results) + " |",
              "|---|---|" + "---|" * len(results)]  # fmt: skip
    for i, f in enumerate(FUNCTIONALITIES):
        cells = [f"{math.exp(r['suite_per'][i]):.3f}" for r in results.values()]
        lines.append(f"| {f} | {math.exp(base['suite_per'][i]):.3f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        *notes,
        "",
        f"Example (first test caption): base `{base['example']}`; "
        + "; ".join(f"{k.split(' ')[0]} `{r['example']}`" for k, r in results.items()),
    ]
    return lines


def _growth_row(label: str, r: dict, base: dict) -> str:
    change = math.exp(r["suite_loss"] - base["suite_loss"]) - 1
    return (f"| {label} | {r['loss']:.3f} ({r['loss'] / base['loss']:.3f}x) | "
            f"{math.exp(r['loss']):.2f} | {r['chrf']:.2f} ({r['chrf'] - base['chrf']:+.2f}) | "
            f"{math.exp(r['suite_loss']):.3f} | {change:+.2%} |")  # fmt: skip


FRENCH = "Translate this English sentence into French:\n{en}"


def continual_tasks(data: Path, n: int = 24) -> dict[str, dict]:
    """Three tasks with train / validation / test samples, a metric and an answer length."""
    english = (data / "multi30k_test2016.en.txt").read_text(encoding="utf-8").splitlines()
    french = (data / "multi30k_test2016.fr.txt").read_text(encoding="utf-8").splitlines()
    de = lambda a, n: translation_samples(data, a, n)  # noqa: E731
    fr = lambda a, n: [Sample(f"fr-{i}", FRENCH.format(en=english[i].strip()), "translation",  # noqa: E731
                              reference=french[i].strip()) for i in range(a, a + n)]  # fmt: skip
    rows = [json.loads(x) for x in (data / "gsm8k_test.jsonl").read_text().splitlines()]
    gsm = lambda a, n: [Sample(f"gsm-{i}", rows[i]["question"], "math",  # noqa: E731
                               reference="#### " + rows[i]["answer"].split("####")[-1].strip())
                        for i in range(a, a + n)]  # fmt: skip
    return {
        "en-de": {"train": de(0, 160), "valid": de(600, n), "test": de(700, n), "tokens": 40},
        "en-fr": {"train": fr(160, 160), "valid": fr(624, n), "test": fr(724, n), "tokens": 40},
        "gsm8k-format": {"train": gsm(0, 160), "valid": gsm(160, n), "test": gsm(200, n),
                         "tokens": 10},
    }  # fmt: skip


def task_metric(name: str, outputs: list[str], test: list[Sample]) -> float:
    """chrF for translation; for GSM8K, % of answers in the '#### <number>' format."""
    outputs = [o.strip().split("\n")[0] for o in outputs]
    if name.startswith("gsm"):
        return 100 * sum(bool(re.fullmatch(r"#### -?[\d,.]+", o)) for o in outputs) / len(outputs)
    return chrf(outputs, [s.reference for s in test])


def continual_benchmark(loaded, args) -> list[str]:
    tasks = continual_tasks(args.data, args.task_test)
    system, learnt, times = PluginSystem(loaded.fingerprint), {}, {}
    options = dict(rank=8, steps=args.brick_steps, lr=1e-3, batch_size=8,
                   eval_every=args.brick_steps)  # fmt: skip
    for name, task in tasks.items():
        started = time.perf_counter()
        system = add_task(system, loaded, name, task["train"], task["valid"], **options)
        times[name] = time.perf_counter() - started
        learnt[name] = _routed_metric(system, loaded, name, task)
        print(f"learnt {name}: {learnt[name]:.2f} ({times[name]:.0f} s)", flush=True)
    final = {n: _routed_metric(system, loaded, n, t) if n != name else learnt[n]
             for n, t in tasks.items()}  # fmt: skip
    base, merged = {}, {}
    for n, t in tasks.items():
        prompts = [s.prompt for s in t["test"]]
        base[n] = task_metric(n, generate_answers(loaded, loaded.tokenizer, prompts,
                                                  t["tokens"]), t["test"])  # fmt: skip
        with attach(loaded, [task.brick for task in system.tasks]) as model:
            merged[n] = task_metric(n, generate_answers(model, loaded.tokenizer, prompts,
                                                        t["tokens"]), t["test"])  # fmt: skip
    accuracy = _routing_accuracy(system, loaded, tasks)
    lines = [
        "### Continual plugins: three tasks added one after another",
        "",
        f"| task (metric on {args.task_test} held-out) | base model | right after learned "
        "| after the last addition | change | all bricks attached, no routing |",
        "|---|---|---|---|---|---|",
    ]
    for n in tasks:
        lines.append(f"| {n} | {base[n]:.2f} | {learnt[n]:.2f} | {final[n]:.2f} | "
                     f"{final[n] - learnt[n]:+.2f} | {merged[n]:.2f} |")  # fmt: skip
    lines += ["", f"Routing accuracy on all {sum(len(t['test']) for t in tasks.values())} "
              f"held-out prompts after the last addition: {accuracy['all']:.1%} "
              f"({', '.join(f'{k} {v:.0%}' for k, v in accuracy.items() if k != 'all')}).",
              "Brick training (s, incl. centroid): "
              + ", ".join(f"{k} {v:.0f}" for k, v in times.items()) + "."]  # fmt: skip
    return lines


def _routed_metric(system, loaded, name: str, task: dict) -> float:
    answers, _ = routed_answers(system, loaded, [s.prompt for s in task["test"]], task["tokens"])
    return task_metric(name, answers, task["test"])


def _routing_accuracy(system, loaded, tasks: dict) -> dict:
    result, hits, total = {}, 0, 0
    for index, (name, task) in enumerate(tasks.items()):
        routes = route(system, prompt_embeddings(loaded, [s.prompt for s in task["test"]]))
        right = sum(r == index for r in routes)
        result[name] = right / len(routes)
        hits, total = hits + right, total + len(routes)
    return {"all": hits / total, **result}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("depth", "width", "continual"), required=True)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--generate", type=int, default=24)
    parser.add_argument("--positions", type=lambda t: [int(x) for x in t.split(",")],
                        default=[10, 20])  # fmt: skip
    parser.add_argument("--first-layer", type=int, default=10, help="width: grow layers k..last")
    parser.add_argument("--neurons", type=int, default=192, help="width: new neurons per layer")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=200.0, help="training budget per arm")
    parser.add_argument("--preserve-weight", type=float, default=1.0)
    parser.add_argument("--brick-steps", type=int, default=25)
    parser.add_argument(
        "--task-test", type=int, default=24, help="continual: test prompts per task"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the fine-tune baseline")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    torch.manual_seed(0)
    loaded = load_model(args.model)
    print(f"model {args.model} ({loaded.fingerprint}); prompt: {PROMPT!r}")
    if args.only == "continual":
        lines = continual_benchmark(loaded, args)
    else:
        lines = growth_benchmark(loaded, args)
    print("\n".join(lines))
    print(f"\ntotal wall clock {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
