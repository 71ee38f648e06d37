"""Growing the default model: a new capability by depth or width growth, and continual plugins.

``--only depth`` / ``--only width``: teach English->German translation of Multi30k captions
(``--data``) by training only the grown parameters (two LLaMA-Pro identity blocks, or new FFN
neurons), against a full fine-tune of as many existing parameters (the two copied blocks, or as
many existing neurons in the same layers). Captions 0-299 train, 300-339 pick the best step,
340-439 are the held-out test (response loss; chrF of greedy translations of the first
``--generate``). Forgetting: the perplexity of the built-in suite's test references for its seven
functionalities, before and after, also split into each reference's first tokens and the rest,
with the mean predictive entropy and top-1 statistics (to tell forgetting from calibration). Both
arms keep close to the base with a KL term on the suite's *train* split (``--preserve-weight``;
0 turns it off; ``--no-kl-arm`` adds a grown arm without it). Training is ``--steps`` long,
capped by ``--seconds`` per arm.

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
from dataclasses import replace
from pathlib import Path

import torch
from bricks import PROMPT, translation_samples
from torch.nn.functional import cross_entropy

from brickwork import load_builtin_suite, load_model
from brickwork.analysis.loss import reference_batches
from brickwork.bricks import attach
from brickwork.bricks.train import LoraSettings
from brickwork.bricks.train_eval import chrf, generate_answers, response_loss
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

# the suite's reference tokens are split into the first few (the answer's start) and the rest
HEAD_TOKENS = 4


def suite_losses(loaded) -> dict:
    """The built-in suite's test-reference loss, as ``bricks.unrelated_losses`` measures it
    (per functionality, and overall token-weighted), split into each reference's first
    HEAD_TOKENS tokens and the rest, in the same forward passes; also the mean predictive entropy,
    the top-1 accuracy, and the loss on the tokens the model ranks first and on the others."""
    samples = load_builtin_suite("test")
    batches = reference_batches(loaded.tokenizer, samples, list(FUNCTIONALITIES))
    total = torch.zeros(len(FUNCTIONALITIES), 2, dtype=torch.float64)
    count = torch.zeros_like(total)
    stats = torch.zeros(4, dtype=torch.float64)  # entropy, top-1 hits, NLL on hits, on misses
    with torch.no_grad():
        for b in batches:
            hidden = loaded.model.base_model(
                input_ids=b.input_ids, attention_mask=b.attention, use_cache=False
            ).last_hidden_state
            rows, pos = b.positions[:, 0], b.positions[:, 1]
            logits = loaded.family.logits(loaded.model, hidden[rows, pos])
            nll = cross_entropy(logits.float(), b.targets, reduction="none").double()
            first = torch.full((b.input_ids.shape[0],), 1 << 30, dtype=pos.dtype)
            first = first.scatter_reduce(0, rows, pos, "amin")
            index = b.groups * 2 + (pos - first[rows] >= HEAD_TOKENS).long()
            total.view(-1).index_add_(0, index, nll)
            count.view(-1).index_add_(0, index, torch.ones_like(nll))
            logp = logits.float().log_softmax(-1)
            hit = logits.argmax(-1) == b.targets
            stats += torch.stack(
                [
                    -(logp.exp() * logp).sum(-1).double().sum(),
                    hit.sum(),
                    nll[hit].sum(),
                    nll[~hit].sum(),
                ]
            ).double()
    n = float(count.sum())
    entropy, hits, hit_nll, miss_nll = stats.tolist()
    return {
        "per": (total.sum(1) / count.sum(1)).tolist(),
        "overall": float(total.sum() / count.sum()),
        "head": float(total[:, 0].sum() / count[:, 0].sum()),
        "tail": float(total[:, 1].sum() / count[:, 1].sum()),
        "per_head": (total[:, 0] / count[:, 0]).tolist(),
        "per_tail": (total[:, 1] / count[:, 1]).tolist(),
        "entropy": entropy / n,
        "top1": hits / n,
        "hit_loss": hit_nll / max(hits, 1),
        "miss_loss": miss_nll / max(n - hits, 1),
    }


def translation_metrics(loaded, model, test: list[Sample], n_generate: int) -> dict:
    started = time.perf_counter()
    loss = response_loss(loaded, test)
    chosen = test[:n_generate]
    # one batch: the same greedy outputs as batches of 8 (checked), in about half the time
    outputs = generate_answers(
        model,
        loaded.tokenizer,
        [s.prompt for s in chosen],
        max_new_tokens=40,
        batch_size=max(1, len(chosen)),
    )
    outputs = [o.strip().split("\n")[0] for o in outputs]
    suite = suite_losses(loaded)
    return {
        "loss": loss,
        "chrf": chrf(outputs, [s.reference for s in chosen]),
        "suite_loss": suite["overall"],
        "suite_per": suite["per"],
        "suite": suite,
        "example": outputs[0],
        "eval_seconds": time.perf_counter() - started,
    }


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
    print(
        "base",
        _growth_row("base model", base, base),
        f"eval {base['eval_seconds']:.0f} s",
        {k: v for k, v in base["suite"].items() if "per_" not in k},
        flush=True,
    )
    checks = init_check(loaded, test[:4]) if args.only == "depth" and not args.no_init_check else []
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
    settings = GrowTrainSettings(
        steps=args.steps,
        lr=args.lr,
        batch_size=8,
        eval_every=args.eval_every,
        max_seconds=args.seconds,
        preserve_weight=args.preserve_weight,
    )
    preserve = load_builtin_suite("train") if args.preserve_weight > 0 else None
    # label -> (trainable slices, grown?, KL weight)
    arms = {"grown (only new parameters train)": (grown.trainable, True, args.preserve_weight)}
    if args.no_kl_arm and args.preserve_weight > 0:
        arms["grown, no KL term"] = (grown.trainable, True, 0.0)
    if not args.no_baseline:
        arms[f"baseline: {control}"] = (baseline, False, args.preserve_weight)
    results, notes = {}, []
    for label, (trainable, is_grown, weight) in arms.items():
        source = grown.loaded if is_grown else loaded
        trained, m = train_slices(
            source,
            trainable,
            train,
            valid,
            settings=replace(settings, preserve_weight=weight),
            preserve=preserve if weight > 0 else None,
            reference=loaded,
        )
        results[label] = translation_metrics(trained, trained.model, test, args.generate)
        print(_growth_row(label, results[label], base), flush=True)
        print(
            {k: v for k, v in m.items() if k != "settings"},
            {k: v for k, v in results[label]["suite"].items() if "per_" not in k},
            f"eval {results[label]['eval_seconds']:.0f} s",
            flush=True,
        )
        kl = f"KL weight {weight:g}" if weight > 0 else "no KL term"
        notes.append(
            f"- {label}: {m['trainable_parameters']:,} trainable parameters, {kl}, "
            f"{m['steps_run']} steps x batch 8 in {m['train_seconds']:.0f} s (validation "
            f"included), best validation step {m['best_step']} (validation loss "
            f"{m['heldout_loss_before']:.3f} -> {m['heldout_loss_after']:.3f}); evaluation "
            f"{results[label]['eval_seconds']:.0f} s."
        )
        del trained
    table = _growth_table(what, base, results, notes, args)
    return table + (
        ["", "Output at init on 4 test prompts (default model):", "", *checks] if checks else []
    )


def _growth_table(what: str, base: dict, results: dict, notes: list[str], args) -> list[str]:
    lines = [
        f"### {args.only.capitalize()} growth: {what}",
        "",
        "| model | test response loss | test ppl | chrF (greedy, "
        f"{args.generate}) | suite ppl (7 functionalities) | suite ppl change |",
        "|---|---|---|---|---|---|",
        _growth_row("base model", base, base),
    ]
    lines += [_growth_row(label, r, base) for label, r in results.items()]
    lines += [
        "",
        "Per-functionality suite perplexity (test references):",
        "",
        "| functionality | base | " + " | ".join(results) + " |",
        "|---|---|" + "---|" * len(results),
    ]
    for i, f in enumerate(FUNCTIONALITIES):
        old = base["suite_per"][i]
        cells = [
            f"{math.exp(r['suite_per'][i]):.3f} ({_change(r['suite_per'][i], old)})"
            for r in results.values()
        ]
        lines.append(f"| {f} | {math.exp(base['suite_per'][i]):.3f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Suite perplexity change on each reference's first {HEAD_TOKENS} tokens / on the rest:",
        "",
        "| functionality | " + " | ".join(results) + " |",
        "|---|" + "---|" * len(results),
    ]
    b = base["suite"]
    for i, f in enumerate([*FUNCTIONALITIES, "all"]):
        cells = []
        for r in results.values():
            q = r["suite"]
            head, tail = (
                (q["per_head"][i], q["per_tail"][i]) if f != "all" else (q["head"], q["tail"])
            )
            bh, bt = (b["per_head"][i], b["per_tail"][i]) if f != "all" else (b["head"], b["tail"])
            cells.append(f"{_change(head, bh)} / {_change(tail, bt)}")
        lines.append(f"| {f} | " + " | ".join(cells) + " |")
    if "entropy" in b:
        lines += [
            "",
            "Suite token statistics (all 7 functionalities' test references):",
            "",
            "| model | mean predictive entropy (nats) | top-1 accuracy | loss on top-1 hits "
            "| loss on the other tokens |",
            "|---|---|---|---|---|",
        ]
        for label, q in [("base model", b), *((k, r["suite"]) for k, r in results.items())]:
            lines.append(
                f"| {label} | {q['entropy']:.3f} | {q['top1']:.2%} | "
                f"{q['hit_loss']:.3f} | {q['miss_loss']:.3f} |"
            )
    lines += [
        "",
        *notes,
        "",
        f"Example (first test caption): base `{base['example']}`; "
        + "; ".join(
            f"{k.split(' (')[0].split(':')[0]} `{r['example']}`" for k, r in results.items()
        ),
    ]
    return lines


def _change(loss: float, base: float) -> str:
    return f"{math.exp(loss - base) - 1:+.2%}"


def _growth_row(label: str, r: dict, base: dict) -> str:
    change = math.exp(r["suite_loss"] - base["suite_loss"]) - 1
    return (
        f"| {label} | {r['loss']:.3f} ({r['loss'] / base['loss']:.3f}x) | "
        f"{math.exp(r['loss']):.2f} | {r['chrf']:.2f} ({r['chrf'] - base['chrf']:+.2f}) | "
        f"{math.exp(r['suite_loss']):.3f} | {change:+.2%} |"
    )


FRENCH = "Translate this English sentence into French:\n{en}"


def continual_tasks(data: Path, n: int = 24) -> dict[str, dict]:
    """Three tasks with train / validation / test samples, a metric and an answer length."""
    english = (data / "multi30k_test2016.en.txt").read_text(encoding="utf-8").splitlines()
    french = (data / "multi30k_test2016.fr.txt").read_text(encoding="utf-8").splitlines()

    def de(a, n):
        return translation_samples(data, a, n)

    def fr(a, n):
        return [
            Sample(
                f"fr-{i}",
                FRENCH.format(en=english[i].strip()),
                "translation",
                reference=french[i].strip(),
            )
            for i in range(a, a + n)
        ]

    rows = [json.loads(x) for x in (data / "gsm8k_test.jsonl").read_text().splitlines()]

    def gsm(a, n):
        return [
            Sample(
                f"gsm-{i}",
                rows[i]["question"],
                "math",
                reference="#### " + rows[i]["answer"].split("####")[-1].strip(),
            )
            for i in range(a, a + n)
        ]

    return {
        "en-de": {"train": de(0, 160), "valid": de(600, n), "test": de(700, n), "tokens": 40},
        "en-fr": {"train": fr(160, 160), "valid": fr(624, n), "test": fr(724, n), "tokens": 40},
        "gsm8k-format": {
            "train": gsm(0, 160),
            "valid": gsm(160, n),
            "test": gsm(200, n),
            "tokens": 10,
        },
    }


def task_metric(name: str, outputs: list[str], test: list[Sample]) -> float:
    """chrF for translation; for GSM8K, % of answers in the '#### <number>' format."""
    outputs = [o.strip().split("\n")[0] for o in outputs]
    if name.startswith("gsm"):
        return 100 * sum(bool(re.fullmatch(r"#### -?[\d,.]+", o)) for o in outputs) / len(outputs)
    return chrf(outputs, [s.reference for s in test])


def continual_benchmark(loaded, args) -> list[str]:
    tasks = continual_tasks(args.data, args.task_test)
    system, learnt, times = PluginSystem(loaded.fingerprint), {}, {}
    settings = LoraSettings(
        rank=8, steps=args.brick_steps, lr=1e-3, batch_size=8, eval_every=args.brick_steps
    )
    for name, task in tasks.items():
        started = time.perf_counter()
        system = add_task(system, loaded, name, task["train"], task["valid"], settings=settings)
        times[name] = time.perf_counter() - started
        learnt[name] = _routed_metric(system, loaded, name, task)
        print(f"learnt {name}: {learnt[name]:.2f} ({times[name]:.0f} s)", flush=True)
    final = {
        n: _routed_metric(system, loaded, n, t) if n != name else learnt[n]
        for n, t in tasks.items()
    }
    base, merged, last = {}, {}, {}
    for n, t in tasks.items():
        base[n] = _metric(loaded, loaded, n, t)
        with attach(loaded, [task.brick for task in system.tasks]) as model:
            merged[n] = _metric(model, loaded, n, t)
        if n != name:  # control: no router, the newest brick answers everything
            with attach(loaded, [system.tasks[-1].brick]) as model:
                last[n] = _metric(model, loaded, n, t)
    accuracy, confusion = _routing_accuracy(system, loaded, tasks)
    names = list(tasks)
    lines = [
        "### Continual plugins: three tasks added one after another",
        "",
        f"| task (metric on {args.task_test} held-out) | base model | right after learned "
        "| after the last addition | change | control: newest brick for every prompt "
        "| control: all bricks attached, no routing |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in tasks:
        control = f"{last[n]:.2f}" if n in last else "(is the newest)"
        lines.append(
            f"| {n} | {base[n]:.2f} | {learnt[n]:.2f} | {final[n]:.2f} | "
            f"{final[n] - learnt[n]:+.2f} | {control} | {merged[n]:.2f} |"
        )
    lines += [
        "",
        f"Routing accuracy on all {sum(len(t['test']) for t in tasks.values())} "
        f"held-out prompts after the last addition: {accuracy['all']:.1%} "
        f"({', '.join(f'{k} {v:.0%}' for k, v in accuracy.items() if k != 'all')}); "
        f"chance {1 / len(tasks):.0%}. Confusion (rows: true task, columns: routed to):",
        "",
        "| true task, routed to: | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    lines += [
        f"| {n} | " + " | ".join(str(c) for c in row) + " |"
        for n, row in zip(names, confusion, strict=True)
    ]
    lines += [
        "",
        "Brick training (s, incl. centroid): "
        + ", ".join(f"{k} {v:.0f}" for k, v in times.items())
        + ".",
    ]
    return lines


def _metric(model, loaded, name: str, task: dict) -> float:
    """The task's metric on its test prompts, answered (in one batch) by ``model``."""
    prompts = [s.prompt for s in task["test"]]
    answers = generate_answers(model, loaded.tokenizer, prompts, task["tokens"], len(prompts))
    return task_metric(name, answers, task["test"])


def _routed_metric(system, loaded, name: str, task: dict) -> float:
    prompts = [s.prompt for s in task["test"]]
    answers, _ = routed_answers(system, loaded, prompts, task["tokens"], batch_size=len(prompts))
    return task_metric(name, answers, task["test"])


def _routing_accuracy(system, loaded, tasks: dict) -> tuple[dict, list[list[int]]]:
    result, hits, total, confusion = {}, 0, 0, []
    for index, (name, task) in enumerate(tasks.items()):
        routes = route(system, prompt_embeddings(loaded, [s.prompt for s in task["test"]]))
        confusion.append([routes.count(j) for j in range(len(system.tasks))])
        right = sum(r == index for r in routes)
        result[name] = right / len(routes)
        hits, total = hits + right, total + len(routes)
    return {"all": hits / total, **result}, confusion


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("depth", "width", "continual"), required=True)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--generate", type=int, default=24)
    parser.add_argument(
        "--positions", type=lambda t: [int(x) for x in t.split(",")], default=[10, 20]
    )
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
    parser.add_argument(
        "--no-init-check", action="store_true", help="depth: skip the output-at-init table"
    )
    parser.add_argument(
        "--no-kl-arm", action="store_true", help="also train the grown model without the KL term"
    )
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
