"""Knowledge editing on the default model: ROME-style rank-one edits, batch edits, injected
neurons and a LoRA knowledge plugin, on the built-in counterfactual set, against the unedited
model measured in the same process (docs/results/update.md).

    .venv/bin/python benchmarks/update.py --filter          # keep the facts the model knows
    .venv/bin/python benchmarks/update.py --split dev [--variants ...] [--layer L]   # choose
    .venv/bin/python benchmarks/update.py --split test [--out runs/update/results.json]

The seeded order's first ``--dev`` facts are for choosing settings, the rest for the results.
Each fact's ``keep`` anchors are statements of the same relation about subjects that occur in
none of its evaluation prompts (from the candidate pool). Every single edit is applied,
measured and undone before the next, so each row of the table is the mean over independent
single edits. Controls: ROME's update with its key direction replaced
by a random direction of the same norm (``random key``), and ROME at one random other layer.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import replace
from pathlib import Path

import torch

from brickwork.bricks import attach
from brickwork.data import load_builtin_suite
from brickwork.data.edits import (
    CANDIDATES_FILE,
    EDITS_FILE,
    EditFact,
    builtin_edits_path,
    load_edits,
)
from brickwork.models import load_model
from brickwork.ops.update import EditSettings, attach_neurons, edit, inject, plugin
from brickwork.ops.update.evaluate import (
    fact_metrics,
    known_paraphrases,
    knows,
    neighbourhood_reference,
    short_suite_batches,
    suite_perplexity,
    summarize,
)
from brickwork.ops.update.rome import covariance, fact_key, solve_update
from brickwork.ops.update.store import delta_brick, write_weights

COLUMNS = (
    "reliability",
    "generalization",
    "locality",
    "reliability_first",
    "generalization_first",
    "locality_first",
    "locality_unrelated",
    "generalization_prefixed",
    "generalization_inside",
    "generalization_known",
    "reliability_gen",
    "generalization_gen",
    "generalization_known_gen",
    "locality_gen",
    "locality_unrelated_gen",
)


def run_filter(loaded) -> None:
    candidates = load_edits(builtin_edits_path("candidates.jsonl"))
    kept = [f for f, ok in zip(candidates, knows(loaded, candidates), strict=True) if ok]
    path = builtin_edits_path(EDITS_FILE)
    path.write_text("".join(json.dumps(f.to_dict()) + "\n" for f in kept), encoding="utf-8")
    by_relation = {}
    for f in candidates:
        total, ok = by_relation.get(f.relation, (0, 0))
        by_relation[f.relation] = (total + 1, ok + (f in kept))
    print(
        f"kept {len(kept)} of {len(candidates)} candidates (greedy continuation starts with "
        f"the true object); per relation: {by_relation}"
    )
    print(f"wrote {path}")


class Weights:
    """Apply a delta brick's change to the weights in place, and put them back (no fingerprints:
    edit()/apply_edit/rollback are tested separately; this keeps the benchmark fast)."""

    def __init__(self, loaded, brick):
        self.loaded, self.brick = loaded, brick

    def __enter__(self):
        write_weights(self.loaded, self.brick, edited=True)
        return self.loaded.model

    def __exit__(self, *exc):
        write_weights(self.loaded, self.brick, edited=False)


def random_key(brick, seed: int):
    """The brick with every key-side factor (v) replaced by a random one of the same row norms:
    the same δ and ‖ΔW‖, the wrong keys (for in-process comparisons only)."""
    g = torch.Generator().manual_seed(seed)
    tensors = dict(brick.tensors)
    for name, v in brick.tensors.items():
        if name.split("@")[0] == "v":
            r = torch.randn(v.shape, generator=g)
            tensors[name] = r * (v.norm(dim=1, keepdim=True) / r.norm(dim=1, keepdim=True))
    return type(brick)(**{**brick.__dict__, "tensors": tensors})


SUITE = {}


def suite_ppl(loaded) -> float:
    """Suite test-reference PPL, prompts cut to their last 96 tokens and references to 48 (the
    full-length measure takes a minute per call on 2 shared cores)."""
    if not SUITE:
        SUITE["batches"] = short_suite_batches(loaded)
    return suite_perplexity(loaded, SUITE["batches"])


def measure(loaded, facts, reference, context, ppl_base, with_ppl: bool) -> dict:
    """``reference``: the unedited model's (greedy neighbourhood tokens, known paraphrases)."""
    with context as model:
        rows = fact_metrics(loaded, facts, reference[0], model=model, known=reference[1])
        ppl = suite_ppl(loaded) if with_ppl else None
    return {"rows": rows, "ppl_ratio": None if ppl is None else ppl / ppl_base}


# Named ROME variants: (with the fact's keep anchors, with the text-initial subject key).
VARIANTS = {
    "rome": (False, False),
    "rome + keep": (True, False),
    "rome + first-token key": (False, True),
    "rome + keep + first-token key": (True, True),
}


def keep_anchors(fact: EditFact, pool: list[EditFact], n: int) -> tuple[str, ...]:
    """Up to ``n`` statements of the same relation about subjects that appear nowhere in the
    fact's own evaluation prompts (so locality is measured on prompts the edit never saw)."""
    seen = " ".join([fact.prompt, *fact.paraphrases, *fact.neighborhood]).lower()
    return tuple(
        [
            f"{c.prompt} {c.target_true}"
            for c in pool
            if c.relation == fact.relation and c.subject.lower() not in seen
        ][:n]
    )


def unrelated_prompts(
    fact: EditFact, facts: list[EditFact], n: int, rng: random.Random
) -> tuple[str, ...]:
    """``n`` neighbourhood prompts of facts of other relations (EasyEdit-style locality)."""
    others = sorted({p for f in facts if f.relation != fact.relation for p in f.neighborhood})
    return tuple(rng.sample(others, n))


def single_edits(loaded, facts, reference, ppl_base, args, log) -> dict:
    n_layers = len(loaded.family.layer_modules(loaded.model))
    # One random other layer for the control (one more covariance to compute).
    other_layer = random.Random(args.seed).choice([x for x in range(n_layers) if x != args.layer])
    names = [*args.variants, "random key", "random layer", "inject", "plugin"]
    out = {k: {"rows": [], "ppl": [], "seconds": [], "values": []} for k in names}
    settings = {
        name: EditSettings(
            layer=args.layer,
            steps=args.steps,
            stop_nll=args.stop_nll,
            covariance=args.covariance,
            first_token_key=VARIANTS[name][1],
            keep_weight=args.keep_weight,
        )
        for name in args.variants
    }
    first = args.variants[0]  # the variant whose δ the controls, injection and batch reuse
    preserve = load_builtin_suite("train") if args.plugin_preserve else None
    deadline = time.perf_counter() + 60 * args.max_minutes
    for i, fact in enumerate(facts):
        if time.perf_counter() > deadline:
            log(f"stopped after {i} facts (--max-minutes {args.max_minutes})")
            break
        with_ppl = i < args.ppl_facts or fact.id in args.ppl_ids
        runs = {}
        for name, s in settings.items():
            given = replace(fact, keep=fact.keep if VARIANTS[name][0] else ())
            started = time.perf_counter()
            brick = edit(loaded, [given], f"edit-{i}", s)
            out[name]["seconds"].append(time.perf_counter() - started)
            out[name]["values"].append(brick.tensors["u"][:, 0])
            runs[name] = Weights(loaded, brick)
            if name == first:
                delta = brick.tensors["u"][:, :1]
                runs["random key"] = Weights(loaded, random_key(brick, i))
        started = time.perf_counter()
        neurons = inject(loaded, [fact], f"inject-{i}", settings[first], values=delta)
        out["inject"]["seconds"].append(time.perf_counter() - started)
        runs["inject"] = attach_neurons(loaded, neurons)
        if i < args.control_facts:
            other = EditSettings(layer=other_layer, steps=args.steps, covariance=args.covariance)
            started = time.perf_counter()
            runs["random layer"] = Weights(loaded, edit(loaded, [fact], f"layer-{i}", other))
            out["random layer"]["seconds"].append(time.perf_counter() - started)
        if i < args.plugin_facts:
            started = time.perf_counter()
            lora = plugin(loaded, [fact], f"plugin-{i}", steps=args.plugin_steps, preserve=preserve)
            out["plugin"]["seconds"].append(time.perf_counter() - started)
            runs["plugin"] = attach(loaded, [lora])
        for name, context in runs.items():
            ppl_here = with_ppl and name not in ("random key", "random layer")
            result = measure(loaded, [fact], reference, context, ppl_base, ppl_here)
            out[name]["rows"] += result["rows"]
            if result["ppl_ratio"] is not None:
                out[name]["ppl"].append(result["ppl_ratio"])
        cells = " | ".join(
            f"{n}: {out[n]['rows'][-1]['reliability']:.2f}/"
            f"{out[n]['rows'][-1]['generalization']:.2f}/{out[n]['rows'][-1]['locality']:.2f}"
            for n in [*args.variants, "inject"]
        )
        log(f"[{i + 1}/{len(facts)}] {fact.prompt} -> {fact.target_new}: {cells}")
    return out


def batch_edit(loaded, facts, values, value_seconds, reference, ppl_base, args) -> dict:
    """One update for all ``facts`` (prefixed keys), reusing their single-edit values δ (the
    same optimisation at the same layer), and the same facts as injected neurons; the time
    adds the single edits' time to the batch step."""
    settings = EditSettings(layer=args.layer, covariance=args.covariance)
    started = time.perf_counter()
    keys = [fact_key(loaded, args.layer, f.prompt, f.subject) for f in facts]
    u, v = solve_update(torch.stack(keys, 1), values, covariance(loaded, settings))
    brick = delta_brick(loaded, "batch", {args.layer: (u, v)}, "batch", facts, {"method": "batch"})
    seconds = time.perf_counter() - started + value_seconds
    out = {}
    result = measure(loaded, facts, reference, Weights(loaded, brick), ppl_base, True)
    out["batch rome"] = {"rows": result["rows"], "ppl": [result["ppl_ratio"]], "seconds": [seconds]}
    started = time.perf_counter()
    neurons = inject(loaded, facts, "batch-inject", settings, values=values)
    seconds = time.perf_counter() - started + value_seconds
    result = measure(loaded, facts, reference, attach_neurons(loaded, neurons), ppl_base, True)
    out["batch inject"] = {
        "rows": result["rows"],
        "ppl": [result["ppl_ratio"]],
        "seconds": [seconds],
    }
    return out


def table(results: dict, base: dict) -> list[str]:
    head = "| method | facts | " + " | ".join(COLUMNS) + " | suite PPL ratio (n) | s/edit |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 4)]
    rows = {"unedited model": {"rows": base["rows"], "ppl": [1.0], "seconds": []}, **results}
    for name, r in rows.items():
        if not r["rows"]:
            continue
        s = summarize(r["rows"])
        ppl = r["ppl"]
        ppl_text = (
            f"{sum(ppl) / len(ppl):.4f} (max {max(ppl):.4f}, n={len(ppl)})"
            if ppl
            else "not measured"
        )
        secs = f"{sum(r['seconds']) / len(r['seconds']):.1f}" if r["seconds"] else "-"
        cells = " | ".join(f"{s[c]:.1%}" for c in COLUMNS)
        lines.append(f"| {name} | {s['facts']} | {cells} | {ppl_text} | {secs} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--filter", action="store_true", help="rebuild counterfact.jsonl")
    parser.add_argument("--split", choices=("dev", "test"), default="test")
    parser.add_argument("--dev", type=int, default=20, help="the first N (seeded order) are dev")
    parser.add_argument("--limit", type=int, default=None, help="single edits on the first N")
    parser.add_argument(
        "--variants", default="rome,rome + keep + first-token key", help=f"of {list(VARIANTS)}"
    )
    parser.add_argument("--keep", type=int, default=3, help="keep anchors per fact")
    parser.add_argument("--keep-weight", type=float, default=100.0)
    parser.add_argument("--plugin-preserve", action="store_true", help="plugin KL on the suite")
    parser.add_argument("--layer", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--stop-nll", type=float, default=EditSettings.stop_nll)
    parser.add_argument("--covariance", default="corpus", choices=("corpus", "identity"))
    parser.add_argument("--ppl-facts", type=int, default=10, help="suite PPL after the first N")
    parser.add_argument(
        "--ppl-ids", type=lambda t: set(t.split(",")), default=set(), help="and after these (ids)"
    )
    parser.add_argument("--control-facts", type=int, default=0, help="random-layer control")
    parser.add_argument("--plugin-facts", type=int, default=20)
    parser.add_argument("--plugin-steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-minutes", type=float, default=20.0, help="for the single edits")
    parser.add_argument("--out", type=Path, default=Path("runs/update.json"))
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    loaded = load_model(args.model)
    if args.filter:
        run_filter(loaded)
        return
    args.variants = [v.strip() for v in args.variants.split(",")]
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}")
    facts = load_edits()
    random.Random(args.seed).shuffle(facts)  # relations mixed, fixed order
    facts = facts[: args.dev] if args.split == "dev" else facts[args.dev :]
    pool = load_edits(builtin_edits_path(CANDIDATES_FILE))
    random.Random(args.seed + 1).shuffle(pool)
    rng = random.Random(args.seed + 2)
    facts = [
        replace(
            f,
            keep=keep_anchors(f, pool, args.keep),
            unrelated=unrelated_prompts(f, facts, 3, rng),
        )
        for f in facts
    ]
    single = facts[: args.limit] if args.limit else facts
    reference = (neighbourhood_reference(loaded, facts), known_paraphrases(loaded, facts))
    started = time.perf_counter()
    ppl_base = suite_ppl(loaded)
    seconds = time.perf_counter() - started
    print(f"{args.split}: {len(facts)} facts; suite PPL {ppl_base:.3f} ({seconds:.1f} s)")
    base = {"rows": fact_metrics(loaded, single, reference[0], known=reference[1])}
    results = single_edits(loaded, single, reference, ppl_base, args, print)
    done = len(results[args.variants[0]]["rows"])
    values = results[args.variants[0]]["values"]
    n = min(args.batch, done)
    if n:
        v = torch.stack(values[:n], 1)
        secs = sum(results[args.variants[0]]["seconds"][:n])
        results.update(batch_edit(loaded, single[:n], v, secs, reference, ppl_base, args))
    for r in results.values():
        r.pop("values", None)
    lines = table(results, base)
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "suite_ppl": ppl_base,
        "fingerprint": loaded.fingerprint,
        "table": lines,
        "results": results,
    }
    args.out.write_text(json.dumps(record, indent=1), encoding="utf-8")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
