"""Rebuild the large built-in edit set (``builtin-large``) from the hand-written candidates:
keep the facts the model knows (greedy continuation starts with the true object), count the
paraphrases it knows, split dev/test per relation and pick neighbourhood prompts
(brickwork/data/edit_set.py). Writes ``large.jsonl`` and ``large_build.json`` in the package data.

    python scripts/build_edit_set.py [--model smollm2-135m-instruct] [--seed 0] [--misses 5]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from brickwork.data.edit_set import BUILD_RECORD, as_fact, build, read_candidates
from brickwork.data.edits import LARGE_FILE, builtin_edits_path
from brickwork.models import DEFAULT_MODEL, load_model
from brickwork.ops.update.evaluate import greedy, knows


class CachedKnows:
    """``knows`` on the model, each fact asked for as many greedy tokens as its true object
    needs (plus one), answers cached by (prompt, object) in a JSON file so a rerun resumes."""

    def __init__(self, loaded, cache: Path):
        self.loaded, self.cache = loaded, cache
        self.answers = json.loads(cache.read_text()) if cache.is_file() else {}
        self.asked = 0  # prompts run on the model (not cached)

    def __call__(self, facts):
        asking = [f for f in facts if _key(f) not in self.answers]
        self.asked += len(asking)
        by_length = {}
        for f in asking:
            n = len(self.loaded.tokenizer.encode(" " + f.target_true)) + 1
            by_length.setdefault(n, []).append(f)
        for n, group in sorted(by_length.items()):
            started = time.perf_counter()
            for i in range(0, len(group), 128):
                chunk = group[i : i + 128]
                ok = knows(self.loaded, chunk, n)
                self.answers.update({_key(f): o for f, o in zip(chunk, ok, strict=True)})
                self.cache.parent.mkdir(parents=True, exist_ok=True)
                self.cache.write_text(json.dumps(self.answers))
            seconds = time.perf_counter() - started
            print(f"  asked {len(group)} prompts for {n} tokens ({seconds:.0f} s)", flush=True)
        return [self.answers[_key(f)] for f in facts]


def _key(fact) -> str:
    return f"{fact.prompt}\t{fact.target_true}"


def show_misses(loaded, candidates, kept_ids, per_relation: int) -> None:
    """The greedy continuations of a few candidates the model does not know, per relation."""
    missed = {}
    for c in candidates:
        if c.key not in kept_ids and len(missed.setdefault(c.relation, [])) < per_relation:
            missed[c.relation].append(as_fact(c, c.answers[0], c.answers[0]))
    facts = [f for rows in missed.values() for f in rows]
    for fact, ids in zip(facts, greedy(loaded, [f.prompt for f in facts], 6), strict=True):
        said = loaded.tokenizer.decode(ids)
        print(f"  miss {fact.prompt!r} -> {said!r} (true: {fact.target_true})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dev-share", type=float, default=0.25)
    parser.add_argument("--misses", type=int, default=0, help="show N misses per relation")
    parser.add_argument("--dry-run", action="store_true", help="count only, write nothing")
    parser.add_argument(
        "--cache", type=Path, help="answers so far (runs/edit_set_knows_MODEL.json)"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    loaded = load_model(args.model)
    candidates = read_candidates()
    cache = args.cache or Path(f"runs/edit_set_knows_{Path(args.model).name}.json")
    asked = CachedKnows(loaded, cache)
    facts, record = build(candidates, asked, seed=args.seed, dev_share=args.dev_share)
    seconds = time.perf_counter() - started
    print(f"{'relation':<16} {'candidates':>10} {'known':>6} {'kept':>5} {'dev':>4} {'test':>5}")
    for relation, row in record["relations"].items():
        print(
            f"{relation:<16} "
            + " ".join(f"{v:>{w}}" for v, w in zip(row.values(), (10, 6, 5, 4, 5), strict=True))
        )
    known_para = record["known_paraphrases"]
    print(
        f"{len(facts)} facts kept of {len(candidates)} candidates in "
        f"{sum(r['kept'] > 0 for r in record['relations'].values())} relations; "
        f"{sum(known_para.values())} of {2 * len(facts)} paraphrases known; {seconds:.0f} s"
    )
    if args.misses:
        show_misses(loaded, candidates, {f.id for f in facts}, args.misses)
    if args.dry_run:
        return
    record.update(model=args.model, seconds=round(seconds, 1), prompts_run=asked.asked)
    path = builtin_edits_path(LARGE_FILE)
    path.write_text("".join(json.dumps(f.to_dict()) + "\n" for f in facts), encoding="utf-8")
    builtin_edits_path(BUILD_RECORD).write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {path} and {BUILD_RECORD}")


if __name__ == "__main__":
    main()
