"""Combination and stitching of bricks on the default model (SmolLM2-135M-Instruct).

Needs the bricks and purpose embeddings that ``benchmarks/retrieval.py`` leaves in ``--work``.

1. Exactness: our exact linear merge, and its rank-8 SVD re-compression, against PEFT's
   ``add_weighted_adapter`` ("linear", "cat", "svd") on the same two bricks and weights: relative
   Frobenius distance of ΔW from Σ wᵢ·ΔWᵢ over all modules, and time.
2. Merging 3 bricks (en->de, fr->en, GSM8K final answer): each parent's held-out response loss
   alone and in linear / TIES / DARE merges; the share of its improvement over the base it keeps.
3. Subtraction: a rank-8 merge of en->de and fr->en, minus en->de (task arithmetic), the same
   merge minus the unrelated GSM8K brick (control), and the base minus en->de.
4. Retrieve-then-compose on two unseen tasks (fr->de translation, MMLU high-school computer
   science): top-3 bricks by task-level retrieval, merged with uniform weights or weights from a
   CMA-ES search on 8 examples, beside the base model and 3 random bricks (uniform).
5. Stitching: French captions -> English (fr->en brick) -> German (en->de brick), chosen by the
   planner from the descriptions, against the base model translating directly; chrF.

    .venv/bin/python benchmarks/combine.py [--data ../shared/data] [--work /tmp/combine_work]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch
from bricks import chrf
from retrieval import LANG, MT, N_TEST, _samples, mmlu_pairs

from brickwork import load_model
from brickwork.bricks import BrickRepository, attach
from brickwork.bricks.train_eval import response_loss
from brickwork.data import Sample
from brickwork.ops.combine import (
    lora_deltas,
    merge_dare,
    merge_linear,
    merge_ties,
    search_weights,
    task_arithmetic,
)
from brickwork.ops.route import retrieve
from brickwork.ops.stitch import Step, plan_chain, run_pipeline, step_for

PARENTS = ("mt-en-de", "mt-fr-en", "gsm8k")
N_SEARCH = 8


def loss_with(loaded, bricks, samples) -> float:
    with attach(loaded, bricks):
        return response_loss(loaded, samples)


def relative_distance(got: dict, want: dict) -> float:
    num = sum(float(((got[m] - want[m]) ** 2).sum()) for m in want)
    return (num / sum(float((want[m] ** 2).sum()) for m in want)) ** 0.5


def peft_delta(loaded, bricks, weights, combination_type) -> tuple[dict, float]:
    """PEFT's add_weighted_adapter on the same bricks, as ΔW per module, and its time."""
    from peft.tuners.lora import LoraLayer

    with attach(loaded, bricks) as peft_model:
        t0 = time.perf_counter()
        peft_model.add_weighted_adapter([b.name for b in bricks], weights, "combined",
                                        combination_type=combination_type)  # fmt: skip
        seconds = time.perf_counter() - t0
        deltas = {}
        for name, module in peft_model.named_modules():
            if isinstance(module, LoraLayer) and "combined" in module.lora_A:
                a = module.lora_A["combined"].weight.double()
                b = module.lora_B["combined"].weight.double()
                deltas[name] = module.scaling["combined"] * (b @ a)
        peft_model.delete_adapter("combined")
    return deltas, seconds


def exactness(loaded, bricks) -> None:
    print("\n## 1. Exact linear merge vs PEFT add_weighted_adapter (en->de, fr->en)\n")
    print("| weights | method | rank | rel. distance of ΔW from Σ wᵢ·ΔWᵢ | seconds |")
    print("|---|---|---|---|---|")
    for weights in ([0.6, 0.4], [1.0, -0.5]):
        exact = {m: sum(w * d[m] for w, d in zip(weights, map(lora_deltas, bricks), strict=True))
                 for m in lora_deltas(bricks[0])}  # fmt: skip
        for label, rank in (("brickwork linear (exact)", None), ("brickwork linear, SVD", 8)):
            t0 = time.perf_counter()
            merged = merge_linear(bricks, weights, "m", rank=rank)
            seconds = time.perf_counter() - t0
            dist = relative_distance(lora_deltas(merged), exact)
            print(f"| {weights} | {label} | {merged.metrics['rank']} | {dist:.2e} | "
                  f"{seconds:.2f} |")  # fmt: skip
        for kind in ("linear", "cat", "svd"):
            deltas, seconds = peft_delta(loaded, bricks, weights, kind)
            rank = {"linear": 8, "cat": 16, "svd": 8}[kind]
            print(f"| {weights} | PEFT {kind} | {rank} | "
                  f"{relative_distance(deltas, exact):.2e} | {seconds:.2f} |")  # fmt: skip


def merging(loaded, bricks, tests) -> None:
    print("\n## 2. Merging 3 bricks: held-out response loss (nats/token) per parent task\n")
    base = {n: loss_with(loaded, [], s) for n, s in tests.items()}
    alone = {b.name: loss_with(loaded, [b], tests[b.name]) for b in bricks}
    merges = {}
    for label, build in (
        ("linear Σ (w=1), exact rank 24", lambda: merge_linear(bricks, [1.0] * 3, "lin")),
        ("linear Σ (w=1), SVD to rank 8",
         lambda: merge_linear(bricks, [1.0] * 3, "lin8", rank=8)),
        ("linear mean (w=1/3), exact", lambda: merge_linear(bricks, [1 / 3] * 3, "mean")),
        ("TIES (density 0.2, rank 24)", lambda: merge_ties(bricks, [1.0] * 3, "ties", density=0.2)),
        ("DARE (density 0.5, seed 0, rank 24)",
         lambda: merge_dare(bricks, [1.0] * 3, "dare", density=0.5, seed=0)),
    ):  # fmt: skip
        t0 = time.perf_counter()
        merged = build()
        seconds = time.perf_counter() - t0
        error = merged.metrics.get("recompression_error")
        merges[label] = ({n: loss_with(loaded, [merged], s) for n, s in tests.items()}, seconds,
                         error)  # fmt: skip
    names = list(tests)
    print(
        "| model | " + " | ".join(names) + " | kept share of each gain | build s | re-compr. err |"
    )
    print("|---|" + "---|" * (len(names) + 3))
    print("| base | " + " | ".join(f"{base[n]:.3f}" for n in names) + " | - | - | - |")
    print(
        "| parent alone | " + " | ".join(f"{alone[n]:.3f}" for n in names) + " | 1, 1, 1 | - | - |"
    )
    for label, (losses, seconds, error) in merges.items():
        kept = [(base[n] - losses[n]) / (base[n] - alone[n]) for n in names]
        err = f"{error:.3f}" if error is not None else "exact"
        print(f"| {label} | " + " | ".join(f"{losses[n]:.3f}" for n in names) +
              f" | {', '.join(f'{k:.2f}' for k in kept)} | {seconds:.1f} | {err} |")  # fmt: skip


def subtraction(loaded, bricks, tests) -> None:
    en_de, fr_en = bricks[0], bricks[1]
    print("\n## 3. Subtracting a brick (task arithmetic, weight -1)\n")
    both = merge_linear([en_de, fr_en], [1.0, 1.0], "both", rank=8)
    minus = task_arithmetic([both, en_de], [1.0, -1.0], "minus")
    negated = task_arithmetic([en_de], [-1.0], "negated")
    control = task_arithmetic([both, bricks[2]], [1.0, -1.0], "control")
    rows = {"base": [], "en->de brick": [en_de], "fr->en brick": [fr_en],
            "en->de + fr->en (rank 8)": [both], "(en->de + fr->en) - en->de": [minus],
            "(en->de + fr->en) - gsm8k (control)": [control],
            "base - en->de": [negated]}  # fmt: skip
    print("| model | mt-en-de loss | mt-fr-en loss |")
    print("|---|---|---|")
    for label, attached in rows.items():
        losses = [loss_with(loaded, attached, tests[n]) for n in ("mt-en-de", "mt-fr-en")]
        print(f"| {label} | {losses[0]:.3f} | {losses[1]:.3f} |")


def unseen_tasks(data: Path) -> dict[str, list[Sample]]:
    fr = (data / "multi30k_test2016.fr.txt").read_text().splitlines()
    de = (data / "multi30k_test2016.de.txt").read_text().splitlines()
    template = MT.format(src=LANG["fr"], dst=LANG["de"])
    pairs = [(fr[i].strip(), de[i].strip()) for i in range(800, 800 + N_SEARCH + N_TEST)]
    cs = mmlu_pairs(data, "high_school_computer_science")[: N_SEARCH + N_TEST]
    mmlu = "Answer with the letter of the correct option.\n{input}"
    return {"mt-fr-de": _samples("mt-fr-de", template, pairs),
            "mmlu-hs-computer-science": _samples("mmlu-cs", mmlu, cs)}  # fmt: skip


def compose(loaded, repo: BrickRepository, data: Path) -> None:
    print("\n## 4. Retrieve-then-compose on unseen tasks (held-out response loss)\n")
    names = [m["name"] for m in repo.list()]
    print(
        "| unseen task | retrieved (top-3) | base | random 3, uniform | top-3 uniform | "
        "top-3 CMA-ES weights | searched weights | best / base |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rng = random.Random(0)
    for task, samples in unseen_tasks(data).items():
        search, test = samples[:N_SEARCH], samples[N_SEARCH:]
        matches = retrieve(loaded, repo, [s.prompt for s in search], k=3)
        top = [repo.get(m.name) for m in matches]
        control = [repo.get(n) for n in rng.sample(names, 3)]
        base = loss_with(loaded, [], test)
        random_uniform = loss_with(loaded, [merge_linear(control, [1 / 3] * 3, "r")], test)
        uniform = loss_with(loaded, [merge_linear(top, [1 / 3] * 3, "u")], test)
        found = search_weights(loaded, top, search, budget=16, seed=0)
        searched = loss_with(loaded, [merge_linear(top, found.weights, "s")], test)
        weights = ", ".join(f"{w:.2f}" for w in found.weights)
        print(f"| {task} | {', '.join(m.name for m in matches)} | {base:.3f} | "
              f"{random_uniform:.3f} | {uniform:.3f} | {searched:.3f} | {weights} | "
              f"{min(uniform, searched) / base:.3f}x |")  # fmt: skip


PLANS = {
    "Translate the German text into English": ["mt-de-en"],
    "Translate French to English, then translate English into German": ["mt-fr-en", "mt-en-de"],
    "Translate this English sentence into French": ["mt-en-fr"],
    "Complete the Python function, then translate English into German": ["humaneval", "mt-en-de"],
    "Solve the math word problem; answer the geography multiple-choice question":
        ["gsm8k", "mmlu-high-school-geography"],
}  # fmt: skip


def stitching(loaded, repo: BrickRepository, data: Path, n: int = 12) -> None:
    print("\n## 5. Stitching: French -> English -> German (chrF against the German captions)\n")
    metas = repo.list()
    hits = sum([p.brick for p in plan_chain(text, metas)] == want for text, want in PLANS.items())
    print(f"planner: {hits} of {len(PLANS)} instructions get the intended chain")
    plan = plan_chain("Translate the French text into English, then translate the English text "
                      "into German", metas)  # fmt: skip
    print("chosen chain: " + " -> ".join(f"{p.brick} ({p.score:.2f})" for p in plan) + "\n")
    lines = {k: (data / f"multi30k_test2016.{k}.txt").read_text().splitlines()
             for k in ("fr", "en", "de")}  # fmt: skip
    rows = range(800 + N_SEARCH, 800 + N_SEARCH + n)
    french = [lines["fr"][i].strip() for i in rows]
    english, german = [lines["en"][i].strip() for i in rows], [lines["de"][i].strip() for i in rows]
    pairs = {"fr-de": ("fr", "de"), "fr-en": ("fr", "en"), "en-de": ("en", "de")}
    to = {k: MT.format(src=LANG[a], dst=LANG[b]) for k, (a, b) in pairs.items()}
    runs = {
        "base, direct fr->de": [Step(None, to["fr-de"])],
        "base, pivot fr->en->de": [Step(None, to["fr-en"]), Step(None, to["en-de"])],
        "planned bricks, pivot": [step_for(repo.get(p.brick)) for p in plan],
    }
    print("| pipeline | chrF of the English step | chrF German (0-100) | vs base direct |")
    print("|---|---|---|---|")
    base_score = None
    for label, steps in runs.items():
        t0 = time.perf_counter()
        outputs = run_pipeline(loaded, steps, french, max_new_tokens=32)
        score = chrf(outputs[-1], german)
        base_score = base_score or score
        middle = f"{chrf(outputs[0], english):.1f}" if len(steps) > 1 else "-"
        print(f"| {label} | {middle} | {score:.1f} | {score / base_score:.2f}x "
              f"({time.perf_counter() - t0:.0f} s) |")  # fmt: skip
        if label.startswith("planned"):
            print(f"\nexample: {french[0]!r} -> {outputs[0][0]!r} -> {outputs[-1][0]!r} "
                  f"(reference {german[0]!r})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--work", default="/tmp/combine_work")
    parser.add_argument("--only", choices=("exact", "merge", "subtract", "compose", "stitch"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    from retrieval import build_tasks

    data = Path(args.data)
    loaded = load_model("smollm2-135m-instruct")
    repo = BrickRepository(Path(args.work) / "repo", create=False)
    bricks = [repo.get(n) for n in PARENTS]
    tests = {t.name: t.test for t in build_tasks(data) if t.name in PARENTS}
    sections = {"exact": lambda: exactness(loaded, bricks[:2]),
                "merge": lambda: merging(loaded, bricks, tests),
                "subtract": lambda: subtraction(loaded, bricks, tests),
                "compose": lambda: compose(loaded, repo, data),
                "stitch": lambda: stitching(loaded, repo, data)}  # fmt: skip
    for name, run in sections.items():
        if args.only in (None, name):
            t0 = time.perf_counter()
            run()
            print(f"\n({name}: {time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
