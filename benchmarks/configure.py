"""Configured models on the default model: router, compact FFNs vs dense vs baselines, MoE groups.

Everything side by side in one process (SmolLM2-135M-Instruct, CPU):
1. Router accuracy: trained on the built-in TRAIN split; scored on the TEST split and on real
   prompts (--data): GSM8K -> math, HumanEval -> coding, Multi30k -> translation, MMLU
   global_facts / geography -> knowledge, MMLU moral_scenarios -> ethics.
2. Quality at FFN budgets 50/30/20/10%: reference perplexity per functionality on a seeded subset
   of the TEST split and on real sets (GSM8K solutions, Multi30k en->fr), for the dense model, the
   configured model (prompt-selected "GRIFFIN" + the routed functionality's prior; and the static
   routed selection) and two instruction-agnostic controls (weight magnitude; mean activation over
   all train data). GSM8K final-answer accuracy on a few problems.
3. Speed and memory: decode tokens/s (HF generate, batch 1, 48 new tokens), prefill tokens/s
   (one forward of 8x256 tokens), parameter bytes; dense vs compact in this process.
4. Token-level MoE over the neuron-group bricks (--bricks): perplexity vs share of groups per token
   for the similarity and trained routers, the oracle and a random control; measured speed.

    flock /tmp/bw_heavy.lock .venv/bin/python benchmarks/configure.py \
        --analysis runs/demo --bricks runs/bricks [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import time
from pathlib import Path

import torch

from brickwork import load_builtin_suite, load_model
from brickwork.analysis.masking import mask_lowest
from brickwork.bricks import BrickRepository
from brickwork.bricks.train_eval import generate_answers
from brickwork.configure.compact import gather_ffn
from brickwork.configure.evaluate import (
    decode_speed,
    mean_nll,
    parameter_bytes,
    prefill_speed,
    routed_static_nll,
)
from brickwork.configure.moe import moefy, train_group_routers
from brickwork.configure.pipeline import PRIOR_MIX
from brickwork.configure.prompted import (
    dense_prefill,
    prompt_compact,
    prompted_generate,
    quiet_cache_warning,
)
from brickwork.configure.prompted import prompted_losses_at as prompted_nll_at
from brickwork.configure.router import route, router_accuracy, save_router, train_router
from brickwork.configure.select import baseline_selection, check_stats, load_stats
from brickwork.data import Sample
from brickwork.models.tokens import prompt_prefix

BUDGETS = (0.7, 0.5, 0.3, 0.2, 0.1)
REAL_SETS = ("gsm8k", "multi30k")


def real_router_sets(data: Path, n: int) -> dict[str, tuple[list[str], str]]:
    """Real prompts and the functionality they should route to."""
    gsm = [json.loads(x)["question"] for x in _lines(data / "gsm8k_test.jsonl")[:n]]
    humaneval = [json.loads(x)["prompt"] for x in _lines(data / "humaneval.jsonl")[:n]]
    english = _lines(data / "multi30k_test2016.en.txt")[:n]
    multi30k = [f"Translate this English sentence into French:\n{e}" for e in english]
    facts = _mmlu(data, "global_facts", n // 2) + _mmlu(data, "high_school_geography", n - n // 2)
    return {
        "GSM8K": (gsm, "math"),
        "HumanEval": (humaneval, "coding"),
        "Multi30k en-fr": (multi30k, "translation"),
        "MMLU facts+geography": (facts, "knowledge"),
        "MMLU moral_scenarios": (_mmlu(data, "moral_scenarios", n), "ethics"),
    }


def _lines(path: Path) -> list[str]:
    return [x for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _mmlu(data: Path, subject: str, n: int) -> list[str]:
    with (data / "mmlu" / f"{subject}_test.csv").open(encoding="utf-8") as f:
        rows = list(csv.reader(f))[:n]
    return [f"{q}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:" for q, a, b, c, d, _ in rows]


def real_eval_samples(data: Path, n: int, offset: int) -> list[Sample]:
    """GSM8K (question -> worked solution) and Multi30k (en -> fr) with references."""
    gsm = [json.loads(x) for x in _lines(data / "gsm8k_test.jsonl")[offset : offset + n]]
    english = _lines(data / "multi30k_test2016.en.txt")[offset : offset + n]
    french = _lines(data / "multi30k_test2016.fr.txt")[offset : offset + n]
    samples = [
        Sample(f"gsm8k-{i}", g["question"], "gsm8k", reference=g["answer"].split("####")[0].strip())
        for i, g in enumerate(gsm)
    ]
    samples += [
        Sample(
            f"multi30k-{i}",
            f"Translate this English sentence into French:\n{e}",
            "multi30k",
            reference=f,
        )
        for i, (e, f) in enumerate(zip(english, french, strict=True))
    ]
    return samples


def test_subset(per_functionality: int, seed: int) -> list[Sample]:
    rng = random.Random(seed)
    test = load_builtin_suite("test")
    chosen = []
    for f in sorted({s.functionality for s in test}):
        chosen += rng.sample([s for s in test if s.functionality == f], per_functionality)
    return chosen


def final_number(text: str) -> str | None:
    numbers = re.findall(r"-?\d[\d,]*\.?\d*", text)
    return numbers[-1].replace(",", "").rstrip(".") if numbers else None


def gsm8k_correct(answer: str, reference: str) -> bool:
    expected = reference.split("####")[-1].strip().replace(",", "")
    got = final_number(answer)
    try:
        return got is not None and float(got) == float(expected)
    except ValueError:
        return False


def section_router(loaded, args, log) -> tuple:
    started = time.perf_counter()
    router = train_router(loaded, load_builtin_suite("train"))
    test = load_builtin_suite("test")
    result = router_accuracy(
        router, loaded, [s.prompt for s in test], [s.functionality for s in test]
    )
    rows = [
        ("built-in TEST split", result["n"], "its label", result["accuracy"], result["predicted"])
    ]
    for name, (prompts, expected) in real_router_sets(args.data, args.router_real).items():
        r = router_accuracy(router, loaded, prompts, [expected] * len(prompts))
        rows.append((name, r["n"], expected, r["accuracy"], r["predicted"]))
    log("\n## Router (logistic regression on pooled hidden states; trained on TRAIN only)\n")
    log(
        f"Layers pooled: {router.layers}; chance = 1/{len(router.functionalities)} = "
        f"{1 / len(router.functionalities):.1%}; {time.perf_counter() - started:.0f} s\n"
    )
    log("| prompts | n | expected | accuracy | predicted |\n|---|---|---|---|---|")
    for name, n, expected, acc, predicted in rows:
        log(f"| {name} | {n} | {expected} | {acc:.1%} | {predicted} |")
    return router


def section_quality(loaded, stats, router, args, log) -> dict:
    samples = test_subset(args.per_functionality, args.seed)
    samples += real_eval_samples(args.data, args.real_per_set, offset=args.router_real)
    groups = stats.functionalities + list(REAL_SETS)
    probs = route(router, loaded, [s.prompt for s in samples])
    routed = [stats.functionalities[i] for i in probs.argmax(dim=-1).tolist()]
    prior = {s.id: stats.importance[stats.index(r)] for s, r in zip(samples, routed, strict=True)}
    nll = {"dense": mean_nll(loaded, samples, groups)}
    start = time.perf_counter()
    prompted = prompted_nll_at(
        loaded, samples, groups, args.budgets, lambda s: prior[s.id], PRIOR_MIX
    )
    if args.ablation:
        alone = prompted_nll_at(loaded, samples, groups, args.budgets)
    oracle = prompted_nll_at(loaded, samples, groups, args.budgets, oracle=True)
    log(f"(prompt-selected losses: {time.perf_counter() - start:.0f} s)", quiet=True)
    for budget in args.budgets:
        pct = f"{budget:.0%}"
        nll[f"configured prompt+prior {pct}"] = prompted[budget]
        if args.ablation:
            nll[f"configured prompt only {pct}"] = alone[budget]
        nll[f"configured static {pct}"] = routed_static_nll(
            loaded, stats, samples, routed, groups, budget
        )
        for kind in ("magnitude", "generic"):
            compact = gather_ffn(loaded, baseline_selection(kind, budget, loaded, stats))
            nll[f"baseline {kind} {pct}"] = mean_nll(compact.loaded, samples, groups)
        # Not deployable: the selection sees the reference. The ceiling of a per-sequence set.
        nll[f"reference: per-sequence oracle {pct}"] = oracle[budget]
        with mask_lowest(loaded, 1 - budget):  # not a compact model: a per-token upper bound
            nll[f"reference: per-token top-|a| {pct}"] = mean_nll(loaded, samples, groups)
    dense = nll["dense"].exp()
    log(
        f"\n## Reference perplexity ({args.per_functionality} TEST samples per functionality, "
        f"{args.real_per_set} per real set; routed by the router)\n"
    )
    log("| model | " + " | ".join(groups) + " | mean increase (suite) |")
    log("|---|" + "---|" * (len(groups) + 1))
    suite = len(stats.functionalities)
    for name, value in nll.items():
        ppl = value.exp()
        cells = [
            f"{p:.2f}" if name == "dense" else f"{p:.2f} ({p / d - 1:+.0%})"
            for p, d in zip(ppl.tolist(), dense.tolist(), strict=True)
        ]
        mean_inc = float((ppl[:suite] / dense[:suite] - 1).mean())
        log(f"| {name} | " + " | ".join(cells) + f" | {mean_inc:+.1%} |")
    return {k: v.tolist() for k, v in nll.items()}


def section_gsm8k(loaded, stats, router, args, log) -> None:
    rows = [json.loads(x) for x in _lines(args.data / "gsm8k_test.jsonl")]
    rows = rows[args.router_real + args.real_per_set :][: args.gsm8k]
    prompts = [r["question"] + "\nGive the final answer as a number." for r in rows]
    tok = loaded.tokenizer
    answers = {"dense": generate_answers(loaded, tok, prompts, args.gsm8k_tokens, batch_size=10)}
    compact = gather_ffn(loaded, baseline_selection("magnitude", 0.3, loaded, stats))
    answers["baseline magnitude 30%"] = generate_answers(
        compact.loaded, tok, prompts, args.gsm8k_tokens, batch_size=10
    )
    compact = gather_ffn(loaded, baseline_selection("generic", 0.3, loaded, stats))
    answers["baseline generic 30%"] = generate_answers(
        compact.loaded, tok, prompts, args.gsm8k_tokens, batch_size=10
    )
    math = stats.importance[stats.index("math")]
    answers["configured prompt+prior 30%"] = [
        prompted_generate(loaded, p, 0.3, args.gsm8k_tokens, math, PRIOR_MIX)[0] for p in prompts
    ]
    log(
        f"\n## GSM8K final-answer accuracy ({len(prompts)} problems, greedy, "
        f"{args.gsm8k_tokens} new tokens; prior = math, the label the router gives GSM8K)\n"
    )
    log("| model | correct | accuracy |\n|---|---|---|")
    for name, outs in answers.items():
        hits = sum(gsm8k_correct(a, r["answer"]) for a, r in zip(outs, rows, strict=True))
        log(f"| {name} | {hits}/{len(rows)} | {hits / len(rows):.0%} |")


def next_token_hits(model, firsts: list[int], ids: list[torch.Tensor]) -> list[bool]:
    """Whether the greedy next token after each plain prompt is the fact's true object's first
    token (``firsts``)."""
    hits = []
    with torch.no_grad():
        for first, prompt in zip(firsts, ids, strict=True):
            hits.append(int(model(input_ids=prompt).logits[0, -1].argmax()) == first)
    return hits


def section_facts(loaded, stats, router, args, log) -> None:
    """Knowledge-fact accuracy: plain prompts ("The capital of France is"), next-token top-1."""
    from brickwork.data.edits import CANDIDATES_FILE, builtin_edits_path, load_edits

    tok = loaded.tokenizer
    facts = load_edits(builtin_edits_path(CANDIDATES_FILE))
    ids = [tok(f.prompt, return_tensors="pt")["input_ids"] for f in facts]
    firsts = [tok(" " + f.target_true, add_special_tokens=False)["input_ids"][0] for f in facts]
    dense = next_token_hits(loaded.model, firsts, ids)
    known = [i for i, hit in enumerate(dense) if hit]
    facts, ids = [facts[i] for i in known], [ids[i] for i in known]
    firsts = [firsts[i] for i in known]
    probs = route(router, loaded, [f.prompt for f in facts])
    routed = [stats.functionalities[i] for i in probs.argmax(dim=-1).tolist()]
    counts = {f: routed.count(f) for f in sorted(set(routed))}
    rows = []
    for budget in args.budgets:
        hits = []
        for first, prompt, label in zip(firsts, ids, routed, strict=True):
            prefill = dense_prefill(loaded, prompt)
            prior = stats.importance[stats.index(label)]
            compact = prompt_compact(loaded, prefill, budget, prior, PRIOR_MIX)
            with torch.no_grad(), quiet_cache_warning():
                logits = compact.loaded.model(
                    input_ids=prompt[:, -1:], past_key_values=prefill.cache
                ).logits
            hits.append(int(logits[0, -1].argmax()) == first)
        cells = [sum(hits)]
        for kind in ("generic", "magnitude"):
            compact = gather_ffn(loaded, baseline_selection(kind, budget, loaded, stats))
            cells.append(sum(next_token_hits(compact.loaded.model, firsts, ids)))
        rows.append((budget, *cells))
    log(
        f"\n## Knowledge facts (next-token top-1 on plain prompts; the {len(facts)} of "
        f"{len(dense)} built-in candidate facts the dense model gets right, so dense = 100%; "
        f"routed as {counts})\n"
    )
    log("| budget | configured prompt+prior | baseline generic | baseline magnitude |")
    log("|---|---|---|---|")
    for budget, *cells in rows:
        log(
            f"| {budget:.0%} | "
            + " | ".join(f"{c}/{len(facts)} ({c / len(facts):.0%})" for c in cells)
            + " |"
        )


def section_speed(loaded, stats, args, log) -> None:
    """Each round measures every model once, interleaved; the best round of each counts, so a
    burst of load on the shared machine cannot favour one model."""
    torch.manual_seed(0)
    prefill_ids = torch.randint(0, loaded.model.config.vocab_size, (8, 256))
    prompt = torch.tensor([prompt_prefix(loaded.tokenizer, "Write a short story about a cat.")])
    pad = loaded.tokenizer.pad_token_id
    models = {"dense": loaded.model}
    for budget in args.budgets:
        compact = gather_ffn(loaded, baseline_selection("generic", budget, loaded, stats))
        models[f"compact {budget:.0%}"] = compact.loaded.model
    decode = dict.fromkeys(models, 0.0)
    prefill = dict.fromkeys(models, 0.0)
    for _ in range(args.speed_rounds):
        for name, model in models.items():
            decode[name] = max(decode[name], decode_speed(model, prompt, args.decode_tokens, pad))
            prefill[name] = max(prefill[name], prefill_speed(model, prefill_ids, repeats=1))
    dense_bytes = parameter_bytes(loaded.model)
    log(
        f"\n## Speed and memory (2 CPU threads; same process; best of {args.speed_rounds} "
        "interleaved rounds)\n"
    )
    log(
        "| model | decode tok/s | x dense | prefill tok/s (8x256) | x dense | parameter MB "
        "| x dense |\n|---|---|---|---|---|---|---|"
    )
    for name, model in models.items():
        size = parameter_bytes(model)
        log(
            f"| {name} | {decode[name]:.1f} | {decode[name] / decode['dense']:.2f} | "
            f"{prefill[name]:.0f} | {prefill[name] / prefill['dense']:.2f} | "
            f"{size / 2**20:.1f} | {size / dense_bytes:.2f} |"
        )
    # Prompt selection: the prefill is dense, plus scoring and gathering for each prompt.
    one = prefill_ids[:1]
    start = time.perf_counter()
    for _ in range(2):
        prompt_compact(loaded, dense_prefill(loaded, one), 0.3)
    per_prompt = (time.perf_counter() - start) / 2
    log(
        f"\nPrompt-selected (GRIFFIN) 30%: dense prefill + selection + gather of one 256-token "
        f"prompt = {per_prompt:.2f} s ({255 / per_prompt:.0f} tok/s, vs dense batch-1 "
        f"{prefill_speed(loaded.model, one):.0f} tok/s); its decode runs on the 30% compact "
        "model (row above). It keeps the dense model too, so memory is dense + compact FFN."
    )


def section_moe(loaded, args, log) -> None:
    repository = BrickRepository(args.bricks, create=False)
    groups = [
        repository.get(f"{args.group_method}-groups-layer{i:02d}")
        for i in range(len(loaded.family.layer_modules(loaded.model)))
    ]
    n_groups = groups[0].spec["n_groups"]
    train = [s for s in load_builtin_suite("train")][:: args.moe_train_stride]
    ids = [
        torch.tensor(
            [
                prompt_prefix(loaded.tokenizer, s.prompt)
                + loaded.tokenizer(s.reference, add_special_tokens=False)["input_ids"]
            ]
        )
        for s in train
    ]
    start = time.perf_counter()
    trained = train_group_routers(loaded, groups, ids, steps=150, max_tokens=2048)
    train_seconds = time.perf_counter() - start
    samples = test_subset(args.moe_per_functionality, args.seed)
    functionalities = sorted({s.functionality for s in samples})
    dense = float(mean_nll(loaded, samples, functionalities).mean().exp())
    log(
        f"\n## Token-level MoE over {args.group_method} neuron-group bricks ({n_groups} groups of "
        f"{loaded.family.d_ff(loaded.model.config) // n_groups} neurons per layer)\n"
    )
    log(
        f"Trained routers: {len(train)} TRAIN prompts+references, {train_seconds:.0f} s. "
        f"Perplexity = exp(mean over functionalities of the mean NLL), "
        f"{args.moe_per_functionality} TEST samples per functionality; dense {dense:.2f}.\n"
    )
    log("| groups per token | share of FFN | similarity | trained | random | oracle |")
    log("|---|---|---|---|---|---|")
    for k in args.moe_k:
        cells = []
        for router in ("similarity", "trained", "random", "oracle"):
            moe = moefy(loaded, groups, k, router, trained)
            ppl = float(mean_nll(moe, samples, functionalities).mean().exp())
            cells.append(f"{ppl:.2f} ({ppl / dense - 1:+.0%})")
        log(f"| {k}/{n_groups} | {k / n_groups:.0%} | " + " | ".join(cells) + " |")
    prefill_ids = torch.randint(
        0, loaded.model.config.vocab_size, (8, 256), generator=torch.Generator().manual_seed(0)
    )
    prompt = torch.tensor([prompt_prefix(loaded.tokenizer, "Write a short story about a cat.")])
    pad = loaded.tokenizer.pad_token_id
    dense_dec = decode_speed(loaded.model, prompt, 32, pad)
    dense_pre = prefill_speed(loaded.model, prefill_ids)
    log("\n| model | decode tok/s | x dense | prefill tok/s | x dense |\n|---|---|---|---|---|")
    log(f"| dense | {dense_dec:.1f} | 1.00 | {dense_pre:.0f} | 1.00 |")
    for k in args.moe_k:
        moe = moefy(loaded, groups, k, "trained", trained)
        dec = decode_speed(moe.model, prompt, 32, pad)
        pre = prefill_speed(moe.model, prefill_ids)
        log(
            f"| MoE trained top-{k}/{n_groups} | {dec:.1f} | {dec / dense_dec:.2f} | {pre:.0f} | "
            f"{pre / dense_pre:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--analysis", type=Path, default=Path("runs/demo"))
    parser.add_argument("--bricks", type=Path, default=Path("runs/bricks"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--budgets", type=float, nargs="+", default=list(BUDGETS))
    parser.add_argument("--per-functionality", type=int, default=5)
    parser.add_argument("--real-per-set", type=int, default=4)
    parser.add_argument("--router-real", type=int, default=10)
    parser.add_argument("--gsm8k", type=int, default=8)
    parser.add_argument("--gsm8k-tokens", type=int, default=80)
    parser.add_argument("--decode-tokens", type=int, default=48)
    parser.add_argument("--speed-rounds", type=int, default=3)
    parser.add_argument("--group-method", default="weights")
    parser.add_argument("--moe-k", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--moe-per-functionality", type=int, default=1)
    parser.add_argument("--moe-train-stride", type=int, default=5)
    sections = ["router", "quality", "facts", "gsm8k", "speed", "moe"]
    parser.add_argument("--sections", nargs="+", default=sections)
    parser.add_argument("--save-router", type=Path, help="also save the trained router here")
    parser.add_argument("--ablation", action="store_true", help="also the prompt-only selection")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    started = time.perf_counter()

    def log(text: str, quiet: bool = False) -> None:
        print(text, flush=True)

    loaded = load_model(args.model)
    stats = load_stats(args.analysis)
    check_stats(stats, loaded)
    log(f"# Configured models: {args.model} ({loaded.fingerprint}), analysis {args.analysis}")
    needs_router = {"router", "quality", "facts", "gsm8k"} & set(args.sections)
    router = section_router(loaded, args, log) if needs_router else None
    if args.save_router and router is not None:
        save_router(router, args.save_router)
    if "speed" in args.sections:
        section_speed(loaded, stats, args, log)
    if "quality" in args.sections:
        section_quality(loaded, stats, router, args, log)
    if "facts" in args.sections:
        section_facts(loaded, stats, router, args, log)
    if "moe" in args.sections:
        section_moe(loaded, args, log)
    if "gsm8k" in args.sections:
        section_gsm8k(loaded, stats, router, args, log)
    log(f"\nTotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
