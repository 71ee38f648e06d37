"""Customized brick retrieval on the default model (SmolLM2-135M-Instruct).

Builds one LoRA brick per task (17 tasks: 10 from the real data in ``--data`` and the built-in
suite's 7 functionalities), cached in ``--work`` so reruns are cheap, then:

1. gives every brick its purpose embedding from its **training** prompts;
2. picks the scoring (``lda``, ``standardise`` or ``centre``, see ``brickwork.ops.scorings``) and
   the number of training prompts per brick (24 or all 48) on validation instructions (held out
   from training) at the library's default layer and pooling, then reports top-1 and top-3
   accuracy on separate test instructions, beside a random ranking and a TF-IDF nearest-centroid
   baseline over the same training prompts; a sweep over every layer and pooling is reported as
   a sensitivity check (val and test side by side, not used for the choice). The base model's
   states of every prompt are cached in ``--work``/features.safetensors (one forward pass each),
   so reruns only redo the arithmetic;
3. times a query over 500 entries (the 17 bricks' statistics replicated with noise), apart from
   the query's single forward pass, which is timed separately, and saving/loading that index.

Training stops after ``--train-minutes``; rerun to continue (trained bricks are kept).
``--retrain TASK=STEPS ...`` retrains those bricks with more steps (rank 8), keeping their purpose
embeddings (e.g. in a copy of the repository, as docs/results/combine.md's second run does).

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
from brickwork.bricks.train import LoraSettings, train_task_brick
from brickwork.data import FUNCTIONALITIES, Sample
from brickwork.ops.retrieval import Purpose, RetrievalIndex
from brickwork.ops.route import (
    DEFAULT_LAYER,
    DEFAULT_POOLING,
    EMBEDDING_KEY,
    SECOND_MOMENT_KEY,
    STATES_KEY,
    prompt_features,
    with_embedding,
)
from brickwork.ops.scorings import SCORINGS

N_TRAIN, N_VAL, N_TEST = 48, 8, 20  # per task
N_EMBED = 24  # training prompts per brick in the first cached split; the choice is made on val
EMBED_CHOICES = (24, 48)  # 48: every training prompt
SPLITS = ("embed", "embed2", "val", "test")  # embed2: the training prompts after the first 24
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
    return [
        Sample(f"{name}-{i}", template.replace("{input}", x), name, reference=y)
        for i, (x, y) in enumerate(pairs)
    ]


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
    pairs = [
        (r["question"], "The answer is " + r["answer"].split("####")[-1].strip() + ".")
        for r in rows[: N_TRAIN + N_VAL + N_TEST]
    ]
    return _task(
        "gsm8k",
        "Solve grade school math word problems and give the final number",
        "Solve this math word problem.\n{input}",
        pairs,
    )


def humaneval_task(data: Path) -> Task:
    rows = [json.loads(x) for x in (data / "humaneval.jsonl").read_text().splitlines()]
    pairs = [(r["prompt"], r["canonical_solution"]) for r in rows[: N_TRAIN + N_VAL + N_TEST]]
    return _task(
        "humaneval",
        "Complete the body of a Python function from its signature and docstring",
        "Complete this Python function.\n{input}",
        pairs,
    )


def mmlu_pairs(data: Path, subject: str) -> list[tuple[str, str]]:
    with (data / "mmlu" / f"{subject}_test.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return [(f"{q}\nA. {a}\nB. {b}\nC. {c}\nD. {d}", ans) for q, a, b, c, d, ans in rows]


def mmlu_task(data: Path, subject: str) -> Task:
    words = subject.replace("_", " ")
    return _task(
        f"mmlu-{subject.replace('_', '-')}",
        f"Answer multiple-choice questions on {words} with the letter of the correct option",
        MMLU,
        mmlu_pairs(data, subject),
    )


def suite_task(functionality: str) -> Task:
    train = [s for s in load_builtin_suite("train") if s.functionality == functionality]
    test = [s for s in load_builtin_suite("test") if s.functionality == functionality]
    return Task(
        f"suite-{functionality}",
        f"Everyday {functionality} requests (built-in suite)",
        "{input}",
        train[:N_TRAIN],
        test[:N_VAL],
        test[N_VAL : N_VAL + N_TEST],
    )


def build_tasks(data: Path) -> list[Task]:
    """The 17 retrieval tasks (the compose benchmark's unseen tasks are not among them)."""
    tasks = [
        translation_task(data, "en", "de", 0),
        translation_task(data, "en", "fr", 200),
        translation_task(data, "de", "en", 400),
        translation_task(data, "fr", "en", 600),
        gsm8k_task(data),
        humaneval_task(data),
    ]
    subjects = (
        "high_school_geography",
        "global_facts",
        "moral_scenarios",
        "elementary_mathematics",
    )
    tasks += [mmlu_task(data, s) for s in subjects]
    return tasks + [suite_task(f) for f in FUNCTIONALITIES]


def train_bricks(
    loaded,
    tasks: list[Task],
    repo: BrickRepository,
    minutes: float,
    retrain: dict[str, int] | None = None,
) -> bool:
    """Train (or reuse) one brick per task; False when the time budget ran out first.

    ``retrain`` {task: steps}: (re)train those tasks' bricks with that many steps at rank 8 unless
    the stored brick already has them; a replaced brick's purpose embedding (base-model states of
    the same training prompts, independent of the LoRA) is carried over to the new one."""
    retrain = retrain or {}
    started, have = time.perf_counter(), {m["name"] for m in repo.list()}
    for task in tasks:
        if task.name in have and (
            task.name not in retrain or _steps(repo.get(task.name)) == retrain[task.name]
        ):
            continue
        if time.perf_counter() - started > minutes * 60:
            return False
        steps = retrain.get(task.name, REAL.get(task.name, 4))
        rank = 8 if task.name in REAL or task.name in retrain else 4
        every = min(steps, 8) if task.name in retrain else steps  # retrained: best of val checks
        brick = train_task_brick(
            loaded,
            task.train,
            task.val,
            task.name,
            task.description,
            settings=LoraSettings(
                rank=rank, steps=steps, lr=2e-3, eval_every=every, target_modules=TARGETS
            ),
            progress=False,
        )
        if task.name in have:
            brick = _with_purpose_of(repo.get(task.name), brick)
        repo.add(brick, overwrite=task.name in have)
        print(
            f"trained {task.name}: {steps} steps, {brick.metrics['train_seconds']:.0f} s, "
            f"held-out loss {brick.metrics['heldout_loss_before']:.3f} -> "
            f"{brick.metrics['heldout_loss_after']:.3f}",
            flush=True,
        )
    return True


def _steps(brick) -> int:
    return brick.provenance["parameters"]["steps"]


def _with_purpose_of(old, new):
    """``new`` carrying ``old``'s purpose embedding, description and prompt template."""
    from dataclasses import replace

    keys = (EMBEDDING_KEY, SECOND_MOMENT_KEY, STATES_KEY)
    if EMBEDDING_KEY not in old.tensors:
        return new
    spec = {
        **new.spec,
        **{k: old.spec[k] for k in ("purpose_embedding", "prompt_template") if k in old.spec},
    }
    return replace(
        new,
        tensors={**new.tensors, **{k: old.tensors[k] for k in keys}},
        spec=spec,
        description=old.description,
    )


def purposes(features: dict, tasks: list[Task], key, n_embed: int) -> list[Purpose]:
    """Each brick's purpose statistics from its first ``n_embed`` training prompts."""
    out = []
    for task in tasks:
        states = torch.cat([features[task.name]["embed"][key], features[task.name]["embed2"][key]])[
            :n_embed
        ].double()
        out.append(Purpose(task.name, "", states.mean(0), (states**2).mean(0), len(states), states))
    return out


def accuracy(features: dict, tasks: list[Task], splits: tuple[str, ...], config: tuple) -> dict:
    """{split: (top-1, top-3, per-task top-1)} of the library's index for one (layer, pooling,
    scoring, number of embedding prompts), instruction level (one query per instruction)."""
    layer, pooling, scoring, n_embed = config
    key = (layer, pooling)
    index = RetrievalIndex.build(
        purposes(features, tasks, key, n_embed), layer, pooling, "x", scoring
    )
    assert index.scoring == scoring
    return {split: _accuracy(index, features, tasks, split, key) for split in splits}


def _accuracy(index, features, tasks, split, key) -> tuple:
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
    return top1 / total, top3 / total, per_task


def task_level_accuracy(features: dict, tasks: list[Task], config: tuple, size: int = 4) -> float:
    """Top-1 when a task is given as ``size`` test instructions averaged (task level)."""
    layer, pooling, scoring, n_embed = config
    key = (layer, pooling)
    index = RetrievalIndex.build(
        purposes(features, tasks, key, n_embed), layer, pooling, "x", scoring
    )
    hits = total = 0
    for task in tasks:
        vectors = features[task.name]["test"][key]
        for start in range(0, len(vectors) - size + 1, size):
            best = index.query(vectors[start : start + size].mean(0), 1)[0].name
            hits, total = hits + (best == task.name), total + 1
    return hits / total


def tfidf_accuracy(tasks: list[Task], n_embed: int) -> tuple[float, float]:
    """Control: TF-IDF nearest centroid over the same embedding (training) prompts."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity

    vectorizer = TfidfVectorizer(sublinear_tf=True).fit(
        [s.prompt for t in tasks for s in t.train[:n_embed]]
    )
    centroids = torch.stack(
        [
            torch.tensor(
                vectorizer.transform([s.prompt for s in t.train[:n_embed]]).mean(axis=0)
            ).flatten()
            for t in tasks
        ]
    )
    top1 = top3 = total = 0
    for i, task in enumerate(tasks):
        scores = cosine_similarity(vectorizer.transform([s.prompt for s in task.test]), centroids)
        for row in torch.tensor(scores):
            ranked = row.topk(3).indices.tolist()
            top1, top3, total = top1 + (ranked[0] == i), top3 + (i in ranked), total + 1
    return top1 / total, top3 / total


def prompt_states(loaded, tasks: list[Task], cache: Path) -> dict:
    """{task: {split: {(layer, pooling): [n, hidden]}}} for every layer, cached in ``cache``."""
    from safetensors.torch import load_file, save_file

    layers = list(range(len(loaded.family.layer_modules(loaded.model)))) + [-1]
    stored = load_file(str(cache)) if cache.is_file() else {}
    features = {t.name: {s: {} for s in SPLITS} for t in tasks}
    for task in tasks:
        samples = {
            "embed": task.train[:N_EMBED],
            "embed2": task.train[N_EMBED:N_TRAIN],
            "val": task.val,
            "test": task.test,
        }
        for split in SPLITS:
            keys = {
                (layer, pooling): f"{task.name}|{split}|{layer}|{pooling}"
                for layer in layers
                for pooling in ("mean", "last")
            }
            if not all(k in stored for k in keys.values()):
                computed = prompt_features(loaded, [s.prompt for s in samples[split]], layers)
                stored.update({keys[k]: v.contiguous() for k, v in computed.items()})
                save_file(stored, str(cache))
            features[task.name][split] = {k: stored[name] for k, name in keys.items()}
    return features


def measure_retrieval(loaded, tasks: list[Task], cache: Path) -> tuple[dict, tuple, dict]:
    """Accuracy for every (layer, pooling, scoring, n_embed) on val and test; the configuration
    chosen on val among the scorings and prompt counts at the default layer and pooling (best
    val top-1, then val top-3, then the order of SCORINGS, then more prompts)."""
    features = prompt_states(loaded, tasks, cache)
    keys = list(features[tasks[0].name]["val"])
    configs = [(*key, scoring, n) for key in keys for scoring in SCORINGS for n in EMBED_CHOICES]
    table = {c: accuracy(features, tasks, ("val", "test"), c) for c in configs}
    candidates = [c for c in configs if c[:2] == (DEFAULT_LAYER, DEFAULT_POOLING)]

    def preference(c):
        return (table[c]["val"][0], table[c]["val"][1], -list(SCORINGS).index(c[2]), c[3])

    chosen = max(candidates, key=preference)
    return table, chosen, features


def embed_into_repository(loaded, tasks: list[Task], repo: BrickRepository, config) -> float:
    """Store every brick again with its purpose embedding (chosen setting); returns seconds."""
    started = time.perf_counter()
    layer, pooling, _, n_embed = config
    for task in tasks:
        brick = repo.get(task.name)
        described = with_embedding(
            loaded,
            brick,
            [s.prompt for s in task.train[:n_embed]],
            task.description,
            layer=layer,
            pooling=pooling,
            template=task.template,
        )
        repo.add(described, overwrite=True)
    return time.perf_counter() - started


def measure_latency(
    loaded, repo: BrickRepository, tasks: list[Task], work: Path, entries: int = 500
) -> dict:
    """Query time over ``entries`` bricks (the real bricks' prompt states replicated, each copy
    shifted by its own small random vector),
    saving and loading that index, the query's forward pass and loading the real index."""
    from safetensors import safe_open

    index = RetrievalIndex.from_repository(repo, loaded.fingerprint)
    generator = torch.Generator().manual_seed(0)
    real = []
    for name in index.names:
        with safe_open(str(repo.bricks_dir / name / "weights.safetensors"), framework="pt") as f:
            real.append(f.get_tensor("brickwork.purpose_states").double())
    fake = []
    for i in range(entries):
        states = real[i % len(real)]
        noise = (
            0.05
            * states.abs().mean()
            * torch.randn(states.shape[1], generator=generator, dtype=torch.float64)
        )
        states = states + noise
        fake.append(
            Purpose(f"brick-{i}", "", states.mean(0), (states**2).mean(0), len(states), states)
        )
    t0 = time.perf_counter()
    big = RetrievalIndex.build(fake, index.layer, index.pooling, index.base_model)
    build = time.perf_counter() - t0
    path = big.save(work / "index_500.safetensors")
    t0 = time.perf_counter()
    loaded_big = RetrievalIndex.load(path)
    load_big = time.perf_counter() - t0
    queries = [t.test[0].prompt for t in tasks[:10]]
    forward = []
    for text in queries:
        t0 = time.perf_counter()
        vector = index.embed(loaded, text)
        forward.append(time.perf_counter() - t0)
    search = []
    for _ in range(200):
        t0 = time.perf_counter()
        loaded_big.query(vector, 3)
        search.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    RetrievalIndex.from_repository(repo, loaded.fingerprint)
    load = time.perf_counter() - t0
    return {
        "entries": entries,
        "query_ms": 1000 * statistics.median(search),
        "build_ms": 1000 * build,
        "load_index_ms": 1000 * load_big,
        "forward_ms": 1000 * statistics.median(forward),
        "load_17_ms": 1000 * load,
        "scoring": index.scoring,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--work", default="/tmp/combine_work")
    parser.add_argument("--train-minutes", type=float, default=12.0)
    parser.add_argument(
        "--accuracy-only",
        action="store_true",
        help="stop after the accuracy table (needs no bricks)",
    )
    parser.add_argument(
        "--train-only", action="store_true", help="train the bricks (cached in --work), then stop"
    )
    parser.add_argument(
        "--retrain",
        nargs="*",
        default=[],
        metavar="TASK=STEPS",
        help="(re)train these bricks with this many steps (rank 8)",
    )
    args = parser.parse_args()
    retrain = {k: int(v) for k, v in (item.split("=") for item in args.retrain)}
    torch.set_num_threads(2)
    loaded = load_model("smollm2-135m-instruct")
    tasks = build_tasks(Path(args.data))
    work = Path(args.work)
    repo = BrickRepository(work / "repo")
    if not args.train_only:
        table, chosen, features = measure_retrieval(loaded, tasks, work / "features.safetensors")
        report_accuracy(tasks, table, chosen, features)
    if args.accuracy_only:
        return
    if not train_bricks(loaded, tasks, repo, args.train_minutes, retrain):
        print("training budget used up: rerun to train the remaining bricks")
        return
    if args.train_only:
        return
    seconds = embed_into_repository(loaded, tasks, repo, chosen)
    report_latency(len(tasks), measure_latency(loaded, repo, tasks, work), seconds, chosen[3])


def report_accuracy(tasks, table, chosen, features) -> None:
    n = len(tasks)
    print(
        f"\n{n} bricks; {N_VAL} validation and {N_TEST} test instructions per task (held out); "
        f"{len(table)} configurations compared on validation\n"
    )
    print("| method | val top-1 | test top-1 | test top-3 | test top-1 / random |")
    print("|---|---|---|---|---|")
    print(f"| random ranking | {1 / n:.3f} | {1 / n:.3f} | {3 / n:.3f} | 1.00x |")
    for n_embed in EMBED_CHOICES:
        tfidf = tfidf_accuracy(tasks, n_embed)
        print(
            f"| TF-IDF nearest centroid ({n_embed} training prompts) | - | {tfidf[0]:.3f} | "
            f"{tfidf[1]:.3f} | {tfidf[0] * n:.2f}x |"
        )
    default = [c for c in table if c[:2] == (DEFAULT_LAYER, DEFAULT_POOLING)]
    for config in [chosen, *(c for c in default if c != chosen)]:
        mark = " **(chosen on val)**" if config == chosen else ""
        _row(table, config, mark, n)
    best = {}  # the best configuration on val per (scoring, n_embed) over every layer/pooling
    for config in table:
        group = config[2:]
        if group not in best or table[config]["val"][:2] > table[best[group]]["val"][:2]:
            best[group] = config
    print(
        "\nsensitivity (not used for the choice): the best layer and pooling on val per "
        "scoring and prompt count, and the previous run's setting\n"
    )
    print("| method | val top-1 | test top-1 | test top-3 | test top-1 / random |")
    print("|---|---|---|---|---|")
    for config in dict.fromkeys([*best.values(), (29, "mean", "centre", 24)]):
        _row(table, config, "", n)
    oracle = max(table, key=lambda c: table[c]["test"][0])
    print(
        f"\nbest test top-1 of any of the {len(table)} configurations (oracle, for scale): "
        f"{table[oracle]['test'][0]:.3f} ({oracle})"
    )
    per_task = table[chosen]["test"][2]
    print(
        "\nper task, test top-1 (chosen setting): "
        + ", ".join(f"{name} {value:.2f}" for name, value in per_task.items())
    )
    real = [v for k, v in per_task.items() if not k.startswith("suite-")]
    suite = [v for k, v in per_task.items() if k.startswith("suite-")]
    print(
        f"mean over the {len(real)} real-data tasks: {sum(real) / len(real):.3f}; over the "
        f"{len(suite)} built-in suite tasks: {sum(suite) / len(suite):.3f}"
    )
    print(
        f"task level (4 test instructions averaged per query), chosen setting: "
        f"{task_level_accuracy(features, tasks, chosen):.3f}",
        flush=True,
    )


def _row(table: dict, config: tuple, mark: str, n: int) -> None:
    val, test = table[config]["val"], table[config]["test"]
    print(
        f"| layer {config[0]}, {config[1]}, {config[2]}, {config[3]} prompts{mark} | "
        f"{val[0]:.3f} | {test[0]:.3f} | {test[1]:.3f} | {test[0] * n:.2f}x |"
    )


def report_latency(n: int, latency: dict, seconds: float, n_embed: int) -> None:
    print(f"\nembedding {n} bricks (with_embedding, {n_embed} prompts each): {seconds:.1f} s")
    print(f"index scoring: {latency['scoring']}")
    print(
        f"query over {latency['entries']} entries: {latency['query_ms']:.3f} ms (median); "
        f"building that index {latency['build_ms']:.1f} ms, loading it from safetensors "
        f"{latency['load_index_ms']:.1f} ms; the query's forward pass: "
        f"{latency['forward_ms']:.1f} ms; loading the index of {n} bricks from the repository: "
        f"{latency['load_17_ms']:.1f} ms"
    )


if __name__ == "__main__":
    main()
