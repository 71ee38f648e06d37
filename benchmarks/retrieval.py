"""Customized brick retrieval on the default model (SmolLM2-135M-Instruct).

Builds one LoRA brick per task (17 tasks: 10 from the real data in ``--data`` and the built-in
suite's 7 functionalities), cached in ``--work`` so reruns are cheap, then:

1. gives every brick its purpose embedding from its **training** prompts;
2. picks the embedding layer and pooling on validation instructions (held out from training),
   then reports top-1 and top-3 accuracy on separate test instructions, beside a random ranking
   and a TF-IDF nearest-centroid baseline over the same training prompts;
3. times a query over 500 entries (the 17 embeddings replicated with noise), apart from the
   query's single forward pass, which is timed separately.

Training stops after ``--train-minutes``; rerun to continue (trained bricks are kept).

    .venv/bin/python benchmarks/retrieval.py [--data ../shared/data] [--work /tmp/combine_work]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from brickwork import load_builtin_suite, load_model
from brickwork.bricks import BrickRepository
from brickwork.bricks.train import train_task_brick
from brickwork.data import FUNCTIONALITIES, Sample
from brickwork.ops.route import RetrievalIndex, prompt_features, with_embedding

N_TRAIN, N_VAL, N_TEST = 48, 8, 20  # per task; embeddings use the first 24 training prompts
N_EMBED = 24
MT = "Translate this {src} sentence into {dst}:\n{{input}}"
LANG = {"en": "English", "de": "German", "fr": "French"}
MMLU = "Answer with the letter of the correct option.\n{input}"
REAL = {"mt-en-de": 24, "mt-fr-en": 24, "gsm8k": 16}  # trained longer, used for merging
# LoRA on every linear layer of the last 8 decoder layers: backward stops there, which makes a
# training step several times cheaper on CPU than LoRA on all 30 layers.
TARGETS = r".*\.layers\.(2[2-9])\.(self_attn|mlp)\.(q|k|v|o|gate|up|down)_proj"


@dataclass
class Task:
    name: str
    description: str
    template: str
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]


def _samples(name: str, template: str, pairs: list[tuple[str, str]]) -> list[Sample]:
    return [Sample(f"{name}-{i}", template.replace("{input}", x), name, reference=y)
            for i, (x, y) in enumerate(pairs)]  # fmt: skip


def _task(name: str, description: str, template: str, pairs: list[tuple[str, str]]) -> Task:
    samples = _samples(name, template, pairs)
    a, b = N_TRAIN, N_TRAIN + N_VAL
    return Task(name, description, template, samples[:a], samples[a:b], samples[b : b + N_TEST])


def translation_task(data: Path, src: str, dst: str, start: int) -> Task:
    lines = {k: (data / f"multi30k_test2016.{k}.txt").read_text().splitlines() for k in (src, dst)}
    end = start + N_TRAIN + N_VAL + N_TEST
    pairs = [(lines[src][i].strip(), lines[dst][i].strip()) for i in range(start, end)]
    description = f"Translate {LANG[src]} text into {LANG[dst]}"
    return _task(f"mt-{src}-{dst}", description, MT.format(src=LANG[src], dst=LANG[dst]), pairs)


def gsm8k_task(data: Path) -> Task:
    rows = [json.loads(x) for x in (data / "gsm8k_test.jsonl").read_text().splitlines()]
    pairs = [(r["question"], "The answer is " + r["answer"].split("####")[-1].strip() + ".")
             for r in rows[: N_TRAIN + N_VAL + N_TEST]]  # fmt: skip
    return _task("gsm8k", "Solve grade school math word problems and give the final number",
                 "Solve this math word problem.\n{input}", pairs)  # fmt: skip


def humaneval_task(data: Path) -> Task:
    rows = [json.loads(x) for x in (data / "humaneval.jsonl").read_text().splitlines()]
    pairs = [(r["prompt"], r["canonical_solution"]) for r in rows[: N_TRAIN + N_VAL + N_TEST]]
    return _task("humaneval", "Complete the body of a Python function from its signature and "
                 "docstring", "Complete this Python function.\n{input}", pairs)  # fmt: skip


def mmlu_pairs(data: Path, subject: str) -> list[tuple[str, str]]:
    with (data / "mmlu" / f"{subject}_test.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return [(f"{q}\nA. {a}\nB. {b}\nC. {c}\nD. {d}", ans) for q, a, b, c, d, ans in rows]


def mmlu_task(data: Path, subject: str) -> Task:
    words = subject.replace("_", " ")
    return _task(f"mmlu-{subject.replace('_', '-')}", f"Answer multiple-choice questions on "
                 f"{words} with the letter of the correct option", MMLU,
                 mmlu_pairs(data, subject))  # fmt: skip


def suite_task(functionality: str) -> Task:
    train = [s for s in load_builtin_suite("train") if s.functionality == functionality]
    test = [s for s in load_builtin_suite("test") if s.functionality == functionality]
    return Task(f"suite-{functionality}", f"Everyday {functionality} requests (built-in suite)",
                "{input}", train[:N_TRAIN], test[:N_VAL], test[N_VAL : N_VAL + N_TEST])  # fmt: skip


def build_tasks(data: Path) -> list[Task]:
    """The 17 retrieval tasks (the compose benchmark's unseen tasks are not among them)."""
    tasks = [translation_task(data, "en", "de", 0), translation_task(data, "en", "fr", 200),
             translation_task(data, "de", "en", 400), translation_task(data, "fr", "en", 600),
             gsm8k_task(data), humaneval_task(data)]  # fmt: skip
    subjects = ("high_school_geography", "global_facts", "moral_scenarios",
                "elementary_mathematics")  # fmt: skip
    tasks += [mmlu_task(data, s) for s in subjects]
    return tasks + [suite_task(f) for f in FUNCTIONALITIES]


def train_bricks(loaded, tasks: list[Task], repo: BrickRepository, minutes: float) -> bool:
    """Train (or reuse) one brick per task; False when the time budget ran out first."""
    started, have = time.perf_counter(), {m["name"] for m in repo.list()}
    for task in tasks:
        if task.name in have:
            continue
        if time.perf_counter() - started > minutes * 60:
            return False
        steps = REAL.get(task.name, 4)
        rank = 8 if task.name in REAL else 4
        brick = train_task_brick(loaded, task.train, task.val, task.name, task.description,
                                 rank=rank, steps=steps, lr=2e-3, eval_every=steps,
                                 target_modules=TARGETS, progress=False)  # fmt: skip
        repo.add(brick)
        print(f"trained {task.name}: {steps} steps, {brick.metrics['train_seconds']:.0f} s, "
              f"held-out loss {brick.metrics['heldout_loss_before']:.3f} -> "
              f"{brick.metrics['heldout_loss_after']:.3f}", flush=True)  # fmt: skip
    return True


def accuracy(features: dict, tasks: list[Task], split: str, key) -> tuple:
    """Top-1 and top-3 of nearest purpose embedding (centred cosine) for one (layer, pooling)."""
    names = [t.name for t in tasks]
    entries = [(t.name, "", features[t.name]["embed"][key].mean(0)) for t in tasks]
    index = RetrievalIndex.build(entries, key[0], key[1], "x")
    top1 = top3 = total = 0
    per_task = {}
    for task in tasks:
        hits = 0
        for vector in features[task.name][split][key]:
            ranked = [m.name for m in index.query(vector, 3)]
            top1, hits = top1 + (ranked[0] == task.name), hits + (ranked[0] == task.name)
            top3 += task.name in ranked
            total += 1
        per_task[task.name] = hits / len(features[task.name][split][key])
    assert len(names) == len(entries)
    return top1 / total, top3 / total, per_task


def tfidf_accuracy(tasks: list[Task]) -> tuple[float, float]:
    """Control: TF-IDF nearest centroid over the same embedding (training) prompts."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity

    vectorizer = TfidfVectorizer(sublinear_tf=True).fit(
        [s.prompt for t in tasks for s in t.train[:N_EMBED]])  # fmt: skip
    centroids = torch.stack([torch.tensor(vectorizer.transform(
        [s.prompt for s in t.train[:N_EMBED]]).mean(axis=0)).flatten() for t in tasks])  # fmt: skip
    top1 = top3 = total = 0
    for i, task in enumerate(tasks):
        scores = cosine_similarity(vectorizer.transform([s.prompt for s in task.test]), centroids)
        for row in torch.tensor(scores):
            ranked = row.topk(3).indices.tolist()
            top1, top3, total = top1 + (ranked[0] == i), top3 + (i in ranked), total + 1
    return top1 / total, top3 / total


def measure_retrieval(loaded, tasks: list[Task]) -> tuple[dict, tuple]:
    """Accuracy for every (layer, pooling) on val and test; the config chosen on val."""
    layers = list(range(len(loaded.family.layer_modules(loaded.model)) + 1))
    layers[-1] = -1  # the final, normed state
    features = {}
    for task in tasks:
        features[task.name] = {
            split: prompt_features(loaded, [s.prompt for s in samples], layers)
            for split, samples in (("embed", task.train[:N_EMBED]), ("val", task.val),
                                   ("test", task.test))}  # fmt: skip
    keys = list(features[tasks[0].name]["val"])
    table = {key: {"val": accuracy(features, tasks, "val", key),
                   "test": accuracy(features, tasks, "test", key)} for key in keys}  # fmt: skip
    chosen = max(keys, key=lambda k: (table[k]["val"][0], table[k]["val"][1], k == (-1, "mean")))
    return table, chosen


def embed_into_repository(loaded, tasks: list[Task], repo: BrickRepository, key) -> float:
    """Store every brick again with its purpose embedding (chosen setting); returns seconds."""
    started = time.perf_counter()
    for task in tasks:
        brick = repo.get(task.name)
        described = with_embedding(loaded, brick, [s.prompt for s in task.train[:N_EMBED]],
                                   task.description, layer=key[0], pooling=key[1],
                                   template=task.template)  # fmt: skip
        repo.add(described, overwrite=True)
    return time.perf_counter() - started


def measure_latency(loaded, repo: BrickRepository, tasks: list[Task], entries: int = 500) -> dict:
    index = RetrievalIndex.from_repository(repo, loaded.fingerprint)
    generator = torch.Generator().manual_seed(0)
    real = index.matrix.float()
    copies = (entries + len(real) - 1) // len(real)
    vectors = real.repeat(copies, 1)[:entries]
    vectors = vectors + 0.05 * torch.randn(vectors.shape, generator=generator)
    names = [f"brick-{i}" for i in range(entries)]
    big = RetrievalIndex.build([(n, "", v) for n, v in zip(names, vectors, strict=True)],
                               index.layer, index.pooling, index.base_model)  # fmt: skip
    queries = [t.test[0].prompt for t in tasks[:10]]
    forward = []
    for text in queries:
        t0 = time.perf_counter()
        vector = index.embed(loaded, text)
        forward.append(time.perf_counter() - t0)
    search = []
    for _ in range(200):
        t0 = time.perf_counter()
        big.query(vector, 3)
        search.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    RetrievalIndex.from_repository(repo, loaded.fingerprint)
    load = time.perf_counter() - t0
    return {"entries": entries, "query_ms": 1000 * statistics.median(search),
            "forward_ms": 1000 * statistics.median(forward), "load_17_ms": 1000 * load}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--work", default="/tmp/combine_work")
    parser.add_argument("--train-minutes", type=float, default=12.0)
    parser.add_argument("--accuracy-only", action="store_true",
                        help="stop after the accuracy table (needs no bricks)")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(2)
    loaded = load_model("smollm2-135m-instruct")
    tasks = build_tasks(Path(args.data))
    repo = BrickRepository(Path(args.work) / "repo")
    saved = Path(args.work, "retrieval.json")
    if saved.is_file():  # the embeddings come from the base model: no need to measure twice
        stored = json.loads(saved.read_text())
        chosen = tuple(stored["chosen"])
        table = {tuple(json.loads(k)): v for k, v in stored["table"].items()}
    else:
        table, chosen = measure_retrieval(loaded, tasks)
        saved.write_text(json.dumps({"chosen": list(chosen), "table": {
            json.dumps(list(k)): v for k, v in table.items()}}, indent=1))  # fmt: skip
    report_accuracy(tasks, table, chosen, tfidf_accuracy(tasks))
    if args.accuracy_only:
        return
    if not train_bricks(loaded, tasks, repo, args.train_minutes):
        print("training budget used up: rerun to train the remaining bricks")
        return
    seconds = embed_into_repository(loaded, tasks, repo, chosen)
    report_latency(len(tasks), measure_latency(loaded, repo, tasks), seconds)


def report_accuracy(tasks, table, chosen, tfidf) -> None:
    n = len(tasks)
    print(
        f"\n{n} bricks, {N_EMBED} training prompts each for the embedding; "
        f"{N_VAL} validation and {N_TEST} test instructions per task (held out)\n"
    )
    print("| method | val top-1 | test top-1 | test top-3 | test top-1 / random |")
    print("|---|---|---|---|---|")
    print(f"| random ranking | {1 / n:.3f} | {1 / n:.3f} | {3 / n:.3f} | 1.00x |")
    print(f"| TF-IDF nearest centroid (training prompts) | - | {tfidf[0]:.3f} | {tfidf[1]:.3f} "
          f"| {tfidf[0] * n:.2f}x |")  # fmt: skip
    shown = [chosen, (-1, "mean"), (-1, "last")] + [(x, "mean") for x in (8, 16, 24)]
    for key in (k for k in dict.fromkeys(shown) if k in table):
        mark = " (chosen on val)" if key == chosen else ""
        val, test = table[key]["val"], table[key]["test"]
        print(f"| embedding layer {key[0]}, {key[1]}{mark} | {val[0]:.3f} | {test[0]:.3f} | "
              f"{test[1]:.3f} | {test[0] * n:.2f}x |")  # fmt: skip
    per_task = table[chosen]["test"][2]
    print("\nper task, test top-1 (chosen setting): " + ", ".join(
        f"{name} {value:.2f}" for name, value in per_task.items()), flush=True)  # fmt: skip


def report_latency(n: int, latency: dict, seconds: float) -> None:
    print(f"\nembedding {n} bricks (with_embedding, {N_EMBED} prompts each): {seconds:.1f} s")
    print(f"query over {latency['entries']} entries: {latency['query_ms']:.3f} ms (median); "
          f"the query's forward pass: {latency['forward_ms']:.1f} ms; loading the index of "
          f"{n} bricks from the repository: {latency['load_17_ms']:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
