"""Sequential editing on the default model: facts edited one after another on the test split of
the built-in edit set (the seeded order of benchmarks/update.py; the first --dev facts are
dev; a set with its own split, as --facts builtin-large, uses it), measured after each
checkpoint over every edit so far, against the unedited model measured in the same process
(docs/results/update.md).

    python benchmarks/update_sequential.py --method alphaedit --edits 50 --data DATA \
        --out runs/update/seq-alphaedit.json
    python benchmarks/update_sequential.py --method rome --edits 50 --data DATA \
        --out runs/update/seq-rome.json
    python benchmarks/update_sequential.py --plot runs/update/seq-*.json \
        --png docs/results/update-sequential.png

One method per run (each fits a short slot); --plot draws the runs' curves into one PNG.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

from brickwork.data.edit_set import preserve_prompts
from brickwork.data.edits import load_edits
from brickwork.models import load_model
from brickwork.ops.update.ability import Ability
from brickwork.ops.update.edit import known_facts
from brickwork.ops.update.methods import EDIT_METHODS
from brickwork.ops.update.rome import EditSettings
from brickwork.ops.update.sequential import checkpoints
from brickwork.ops.update.sequential_eval import describe, evaluate_sequence, plot_curves

SHOWN = (
    "reliability_gen",
    "generalization_gen",
    "generalization_known_gen",
    "locality_gen",
    "reliability",
    "generalization_known",
    "locality",
)


def table(records: list[dict]) -> list[str]:
    head = (
        "| method | edits | "
        + " | ".join(SHOWN)
        + " | suite PPL ratio | MMLU | GSM8K PPL | s/edit |"
    )
    lines = [head, "|" + "---|" * (len(SHOWN) + 6)]
    for r in records:
        for row in [{"edits": 0, **r["before"], "seconds_per_edit": None}, *r["checkpoints"]]:
            cells = " | ".join(f"{row[k]:.1%}" if k in row else "-" for k in SHOWN)
            mmlu = f"{row['mmlu_accuracy']:.1%}" if "mmlu_accuracy" in row else "-"
            gsm = f"{row['gsm8k_ppl']:.3f}" if "gsm8k_ppl" in row else "-"
            secs = "-" if row["seconds_per_edit"] is None else f"{row['seconds_per_edit']:.1f}"
            name = r["method"] if row["edits"] else "unedited"
            lines.append(
                f"| {name} | {row['edits']} | {cells} | {row['ppl_ratio']:.4f} | {mmlu} | {gsm} "
                f"| {secs} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--facts", help="an edit set: a file, builtin (default) or builtin-large")
    parser.add_argument("--method", choices=tuple(EDIT_METHODS), default="alphaedit")
    parser.add_argument("--edits", type=int, default=50)
    parser.add_argument("--checkpoints", help="comma-separated edit counts (default 10,50,100,300)")
    parser.add_argument("--split", choices=("dev", "test"), default="test")
    parser.add_argument(
        "--dev", type=int, default=20, help="a set without splits: the first N (seeded) are dev"
    )
    parser.add_argument(
        "--preserve",
        type=int,
        default=0,
        help="alphaedit: keep the keys of N unscored "
        "candidates per relation in place (edit_set.preserve_prompts; 0: none)",
    )
    parser.add_argument("--preserve-weight", type=float, default=EditSettings.preserve_weight)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, help="folder with mmlu/ and gsm8k_test.jsonl")
    parser.add_argument("--mmlu-per-subject", type=int, default=20)
    parser.add_argument("--gsm8k", type=int, default=20)
    parser.add_argument("--null-energy", type=float, default=EditSettings.null_energy)
    parser.add_argument("--max-minutes", type=float, default=None, help="stop at a checkpoint")
    parser.add_argument("--label", help="the run's name in tables and plots (default: method)")
    parser.add_argument("--out", type=Path, default=Path("runs/update/sequential.json"))
    parser.add_argument("--plot", type=Path, nargs="+", help="draw these runs' JSON instead")
    parser.add_argument("--png", type=Path, default=Path("runs/update/sequential.png"))
    args = parser.parse_args()
    if args.plot:
        records = [json.loads(p.read_text(encoding="utf-8")) for p in args.plot]
        print("\n".join(table(records)))
        print(f"wrote {args.png}" if plot_curves(records, args.png) else "no matplotlib")
        return
    started = time.perf_counter()
    deadline = None if args.max_minutes is None else started + 60 * args.max_minutes
    torch.manual_seed(args.seed)
    loaded = load_model(args.model)
    every = load_edits(args.facts)
    facts = list(every)
    random.Random(args.seed).shuffle(facts)  # relations mixed, fixed order
    if any(f.split for f in facts):  # the set's own split
        facts = [f for f in facts if f.split == args.split]
    else:
        facts = facts[: args.dev] if args.split == "dev" else facts[args.dev :]
    facts, left = known_facts(loaded, facts, args.edits)  # asks only as many as needed
    print(f"{args.split}: {len(facts)} facts the model knows ({len(left)} left out)")
    ability = None
    if args.data:
        ability = Ability(loaded, args.data, args.mmlu_per_subject, args.gsm8k)
    settings = EditSettings(null_energy=args.null_energy, preserve_weight=args.preserve_weight)
    marks = [int(x) for x in args.checkpoints.split(",")] if args.checkpoints else None
    preserve = None
    if args.preserve:
        scored = facts[: max(marks or checkpoints(args.edits, len(facts)))]
        ids = {f.id for f in every}
        preserve = preserve_prompts(scored, args.preserve, args.seed, excluded=ids)
        print(f"preserving the keys of {len(preserve)} prompts of unscored candidates")
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save_partial(partial: dict) -> None:  # a run cut by a time limit keeps its checkpoints
        args.out.with_suffix(".partial.json").write_text(json.dumps(partial), encoding="utf-8")

    record = evaluate_sequence(
        loaded,
        facts,
        args.edits,
        args.method,
        settings,
        ability,
        print,
        marks,
        deadline,
        save_partial,
        preserve,
    )
    print(describe("unedited", {"edits": 0, **record["before"], "seconds_per_edit": 0.0}))
    record["method"] = args.label or args.method
    record |= {
        "args": {k: str(v) for k, v in vars(args).items()},
        "fingerprint": loaded.fingerprint,
    }
    record["minutes"] = (time.perf_counter() - started) / 60
    print("\n".join(table([record])))
    args.out.write_text(json.dumps(record, indent=1), encoding="utf-8")
    print(f"saved {args.out} ({record['minutes']:.1f} min)")


if __name__ == "__main__":
    main()
