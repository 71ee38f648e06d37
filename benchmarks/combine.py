"""Combination and stitching of bricks on the default model (SmolLM2-135M-Instruct).

Needs the bricks and purpose embeddings that ``benchmarks/retrieval.py`` leaves in ``--work``.

1. Exactness: our exact linear merge, and its rank-8 SVD re-compression, against PEFT's
   ``add_weighted_adapter`` ("linear", "cat", "svd") on the same two bricks and weights: relative
   Frobenius distance of ΔW from Σ wᵢ·ΔWᵢ over all modules, and time.
2. Merging the ``--parents`` bricks (default en->de, fr->en, GSM8K final answer): each parent's
   held-out response loss alone and in linear / TIES / DARE merges; the share of its improvement
   over the base it keeps, and the interference (merged minus parent alone).
3. Subtraction: a rank-8 merge of en->de and fr->en, minus en->de (task arithmetic), the same
   merge minus the unrelated GSM8K brick (control), and the base minus en->de.
4. Retrieve-then-compose on unseen tasks (Multi30k fr->de and de->fr, MMLU high-school
   computer science: no brick was trained on them; and each MMLU subject of the repository with
   its own brick left out): the top-3 bricks by task-level retrieval from 8 search examples,
   merged with uniform weights or with weights from a CMA-ES search on those 8 examples,
   evaluated on the other held-out examples (40 captions, 60 questions) beside the base model
   and 3 random bricks (uniform; mean of 3 draws among the bricks trained >= 16 steps); response
   loss, and for MMLU letter accuracy, generated exact match and the gold letter's NLL.
5. Stitching: French captions -> English (fr->en brick) -> German (en->de brick), chosen by the
   planner from the descriptions, against the base model translating directly; chrF.
6. Stitching: French questions (hand-written in this file: 20 well-known facts, 10 one-step
   arithmetic problems) -> fr->en brick -> an answering step (the base model, or the brick the
   planner picks), against the base model answering the French question directly; accuracy.

    .venv/bin/python benchmarks/combine.py [--data ../shared/data] [--work /tmp/combine_work]
        [--only SECTION] [--parents BRICK ...]
"""

from __future__ import annotations

import argparse
import random
import re
import time
from pathlib import Path

import torch
from retrieval import LANG, MMLU, MT, _samples, mmlu_pairs
from torch.nn.functional import cross_entropy

from brickwork import load_model
from brickwork.bricks import BrickRepository, attach
from brickwork.bricks.train_eval import (
    answer_matches,
    chrf,
    generate_answers,
    response_loss,
    response_rows,
    target_logits,
)
from brickwork.data import Sample
from brickwork.ops.combine import (
    SearchSettings,
    lora_deltas,
    merge_dare,
    merge_linear,
    merge_ties,
    search_weights,
    task_arithmetic,
)
from brickwork.ops.retrieval import retrieve
from brickwork.ops.stitch import Step, plan_chain, run_pipeline, step_for

PARENTS = ("mt-en-de", "mt-fr-en", "gsm8k")
N_SEARCH = 8  # examples the coefficient search (and task-level retrieval) may see
N_UNSEEN_TEST = 40  # other held-out examples per unseen translation task
N_MMLU_TEST = 60  # other held-out questions per unseen MMLU task
SEARCH_BUDGET = 20  # CMA-ES evaluations


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
        peft_model.add_weighted_adapter(
            [b.name for b in bricks], weights, "combined", combination_type=combination_type
        )
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
        exact = {
            m: sum(w * d[m] for w, d in zip(weights, map(lora_deltas, bricks), strict=True))
            for m in lora_deltas(bricks[0])
        }
        for label, rank in (("brickwork linear (exact)", None), ("brickwork linear, SVD", 8)):
            t0 = time.perf_counter()
            merged = merge_linear(bricks, weights, "m", rank=rank)
            seconds = time.perf_counter() - t0
            dist = relative_distance(lora_deltas(merged), exact)
            print(
                f"| {weights} | {label} | {merged.metrics['rank']} | {dist:.2e} | {seconds:.2f} |"
            )
        for kind in ("linear", "cat", "svd"):
            deltas, seconds = peft_delta(loaded, bricks, weights, kind)
            rank = {"linear": 8, "cat": 16, "svd": 8}[kind]
            print(
                f"| {weights} | PEFT {kind} | {rank} | "
                f"{relative_distance(deltas, exact):.2e} | {seconds:.2f} |"
            )


def merging(loaded, bricks, tests) -> None:
    n, rank = len(bricks), sum(b.spec["peft_config"]["r"] for b in bricks)
    print(f"\n## 2. Merging {n} bricks: held-out response loss (nats/token) per parent task\n")
    base = {name: loss_with(loaded, [], s) for name, s in tests.items()}
    alone = {b.name: loss_with(loaded, [b], tests[b.name]) for b in bricks}
    merges = {}
    for label, build in (
        (f"linear Σ (w=1), exact rank {rank}", lambda: merge_linear(bricks, [1.0] * n, "lin")),
        ("linear Σ (w=1), SVD to rank 8", lambda: merge_linear(bricks, [1.0] * n, "lin8", rank=8)),
        (f"linear mean (w=1/{n}), exact", lambda: merge_linear(bricks, [1 / n] * n, "mean")),
        (
            f"TIES (density 0.2, rank {rank})",
            lambda: merge_ties(bricks, [1.0] * n, "ties", density=0.2),
        ),
        (
            f"DARE (density 0.5, seed 0, rank {rank})",
            lambda: merge_dare(bricks, [1.0] * n, "dare", density=0.5, seed=0),
        ),
    ):
        t0 = time.perf_counter()
        merged = build()
        seconds = time.perf_counter() - t0
        error = merged.metrics.get("recompression_error")
        merges[label] = (
            {name: loss_with(loaded, [merged], s) for name, s in tests.items()},
            seconds,
            error,
        )
    names = [b.name for b in bricks]
    print(
        "| model | " + " | ".join(names) + " | kept share of each gain | build s | re-compr. err |"
    )
    print("|---|" + "---|" * (len(names) + 3))
    print("| base | " + " | ".join(f"{base[x]:.3f}" for x in names) + " | - | - | - |")
    print(
        "| parent alone | "
        + " | ".join(f"{alone[x]:.3f}" for x in names)
        + f" | {', '.join(['1'] * n)} | - | - |"
    )
    for label, (losses, seconds, error) in merges.items():
        kept = [(base[x] - losses[x]) / (base[x] - alone[x]) for x in names]
        err = f"{error:.3f}" if error is not None else "exact"
        print(
            f"| {label} | "
            + " | ".join(f"{losses[x]:.3f}" for x in names)
            + f" | {', '.join(f'{k:.2f}' for k in kept)} | {seconds:.1f} | {err} |"
        )
    for label, (losses, _, _) in merges.items():
        print(
            f"interference (merged - parent alone), {label}: "
            + " / ".join(f"{losses[x] - alone[x]:+.3f}" for x in names)
        )


def subtraction(loaded, bricks, tests) -> None:
    en_de, fr_en = bricks[0], bricks[1]
    print("\n## 3. Subtracting a brick (task arithmetic, weight -1)\n")
    both = merge_linear([en_de, fr_en], [1.0, 1.0], "both", rank=8)
    minus = task_arithmetic([both, en_de], [1.0, -1.0], "minus")
    negated = task_arithmetic([en_de], [-1.0], "negated")
    control = task_arithmetic([both, bricks[2]], [1.0, -1.0], "control")
    rows = {
        "base": [],
        "en->de brick": [en_de],
        "fr->en brick": [fr_en],
        "en->de + fr->en (rank 8)": [both],
        "(en->de + fr->en) - en->de": [minus],
        "(en->de + fr->en) - gsm8k (control)": [control],
        "base - en->de": [negated],
    }
    print("| model | mt-en-de loss | mt-fr-en loss |")
    print("|---|---|---|")
    for label, attached in rows.items():
        losses = [loss_with(loaded, attached, tests[n]) for n in ("mt-en-de", "mt-fr-en")]
        print(f"| {label} | {losses[0]:.3f} | {losses[1]:.3f} |")


# MMLU subjects with a brick in the repository: each is also an unseen task with its own brick
# left out of retrieval, search and the random control (leave-one-subject-out)
LEFT_OUT = {
    "mmlu-high-school-geography": "high_school_geography",
    "mmlu-global-facts": "global_facts",
    "mmlu-moral-scenarios": "moral_scenarios",
    "mmlu-elementary-mathematics": "elementary_mathematics",
}


def unseen_tasks(data: Path) -> dict[str, tuple[list[Sample], str | None]]:
    """Tasks no candidate brick was trained on, with the brick left out for each (or None):
    two Multi30k directions absent from the repository (captions 800- and 850-, disjoint from
    the bricks' ranges), an MMLU subject absent from it, and each MMLU subject of the repository
    with its own brick left out. Each has N_SEARCH search examples, then the held-out ones:
    N_UNSEEN_TEST captions, N_MMLU_TEST questions."""
    lines = {k: (data / f"multi30k_test2016.{k}.txt").read_text().splitlines() for k in LANG}
    size = N_SEARCH + N_UNSEEN_TEST

    def captions(src: str, dst: str, start: int) -> list[Sample]:
        pairs = [(lines[src][i].strip(), lines[dst][i].strip()) for i in range(start, start + size)]
        return _samples(f"mt-{src}-{dst}", MT.format(src=LANG[src], dst=LANG[dst]), pairs)

    def questions(subject: str) -> list[Sample]:
        pairs = mmlu_pairs(data, subject)[: N_SEARCH + N_MMLU_TEST]
        return _samples(f"mmlu-{subject}", MMLU, pairs)

    tasks = {"mmlu-hs-computer-science": (questions("high_school_computer_science"), None)}
    tasks |= {brick: (questions(subject), brick) for brick, subject in LEFT_OUT.items()}
    tasks |= {
        "mt-fr-de": (captions("fr", "de", 800), None),
        "mt-de-fr": (captions("de", "fr", 850), None),
    }
    return tasks


def mmlu_scores(loaded, model, samples: list[Sample]) -> dict:
    """Three views of MMLU answers, the same rules for every model: ``letter``, the option letter
    (A-D) with the highest next-token logit at the start of the answer (no format needed);
    ``letter_nll``, the NLL of the gold letter there; ``generated``, whether the greedy answer
    (4 new tokens) opens with the gold letter (LoraHub's exact-match view: the format counts)."""
    tokenizer = loaded.tokenizer
    letters = torch.tensor([tokenizer(x, add_special_tokens=False)["input_ids"][0] for x in "ABCD"])
    rows = [(context, target[:1]) for context, target in response_rows(tokenizer, samples)]
    hits, nll = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(rows), 8):
            logits, targets = target_logits(loaded, rows[i : i + 8])
            hits += int((letters[logits[:, letters].argmax(dim=1)] == targets).sum())
            nll += float(cross_entropy(logits.float(), targets, reduction="sum"))
    answers = generate_answers(model, tokenizer, [s.prompt for s in samples], max_new_tokens=4)
    opens = [re.match(r"\s*\(?([ABCD])\b", a) for a in answers]
    generated = sum(
        bool(m) and m.group(1) == s.reference.strip() for m, s in zip(opens, samples, strict=True)
    )
    n = len(samples)
    return {
        "letter": hits / n,
        "letter_nll": nll / n,
        "generated": generated / n,
        "answers": answers[:3],
    }


def scores(loaded, bricks, samples) -> dict:
    """Held-out response loss, and the MMLU views for MMLU tasks, with ``bricks`` attached."""
    with attach(loaded, bricks) as model:
        out = {"loss": response_loss(loaded, samples)}
        if samples[0].functionality.startswith("mmlu"):
            out |= mmlu_scores(loaded, model, samples)
    return out


def compose(loaded, repo: BrickRepository, data: Path, k: int = 3, draws: int = 3) -> None:
    print(
        f"\n## 4. Retrieve-then-compose on unseen tasks ({N_SEARCH} search examples, then "
        f"{N_UNSEEN_TEST} held-out captions or {N_MMLU_TEST} held-out questions)\n"
    )
    # the random control draws among the bricks trained for >= 16 steps, the ones that changed
    # the model measurably (4-step bricks are nearly the base model: a too-easy control)
    trained = [m["name"] for m in repo.list() if m["provenance"]["parameters"]["steps"] >= 16]
    print(f"random-control pool ({len(trained)} bricks trained >= 16 steps): {', '.join(trained)}")
    names = [m["name"] for m in repo.list()]
    rows, mmlu = [], []
    rng = random.Random(0)
    for task, (samples, left_out) in unseen_tasks(data).items():
        t0 = time.perf_counter()
        search, test = samples[:N_SEARCH], samples[N_SEARCH:]
        candidates = [repo.get(n) for n in names if n != left_out]
        matches = retrieve(loaded, candidates, [s.prompt for s in search], k=k)
        top = [repo.get(m.name) for m in matches]
        pool = [n for n in trained if n != left_out]
        runs = {"base": scores(loaded, [], test)}
        controls = [
            scores(
                loaded,
                [merge_linear([repo.get(n) for n in rng.sample(pool, k)], [1 / k] * k, "r")],
                test,
            )
            for _ in range(draws)
        ]
        runs["random 3"] = {
            key: sum(c[key] for c in controls) / draws for key in controls[0] if key != "answers"
        }
        runs["top-3 uniform"] = scores(loaded, [merge_linear(top, [1 / k] * k, "u")], test)
        found = search_weights(loaded, top, search, settings=SearchSettings(budget=SEARCH_BUDGET))
        runs["top-3 CMA-ES"] = scores(loaded, [merge_linear(top, found.weights, "s")], test)
        control_losses = [c["loss"] for c in controls]
        base, uniform, searched = (
            runs[x]["loss"] for x in ("base", "top-3 uniform", "top-3 CMA-ES")
        )
        rows.append(
            f"| {task} | {left_out or '-'} | "
            f"{', '.join(f'{m.name} ({m.score:.2f})' for m in matches)} | {base:.3f} | "
            f"{runs['random 3']['loss']:.3f} ({min(control_losses):.3f}-{max(control_losses):.3f})"
            f" | {uniform:.3f} | {searched:.3f} | {', '.join(f'{w:.2f}' for w in found.weights)}"
            f" | {uniform / base:.3f}x | {searched / base:.3f}x |"
        )
        print(rows[-1], flush=True)
        print(
            f"  search loss on the {N_SEARCH} search examples: uniform {found.start_loss:.3f} "
            f"-> best {found.loss:.3f} in {found.evaluations} evaluations; "
            f"{time.perf_counter() - t0:.0f} s",
            flush=True,
        )
        if "letter" in runs["base"]:
            views = [
                f"{r['letter']:.3f} / {r['generated']:.3f} / {r['letter_nll']:.3f}"
                for r in runs.values()
            ]
            mmlu.append(f"| {task} | " + " | ".join(views) + " |")
            print(mmlu[-1], flush=True)
            for x in ("base", "top-3 uniform"):
                print(f"  {x} answers: {runs[x]['answers']}", flush=True)
    print(
        "\n| unseen task | brick left out | retrieved (top-3, posterior) | base | random 3, "
        "uniform: mean (range) of 3 draws | top-3 uniform | top-3 CMA-ES | searched weights | "
        "uniform / base | CMA-ES / base |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(
        f"\nMMLU, {N_MMLU_TEST} held-out questions per task: letter accuracy (chance 0.25) / "
        "generated exact match / gold-letter NLL\n"
    )
    print("| unseen task | base | random 3, uniform (mean) | top-3 uniform | top-3 CMA-ES |")
    print("|---|---|---|---|---|")
    print("\n".join(mmlu))


PLANS = {
    "Translate the German text into English": ["mt-de-en"],
    "Translate French to English, then translate English into German": ["mt-fr-en", "mt-en-de"],
    "Translate this English sentence into French": ["mt-en-fr"],
    "Complete the Python function, then translate English into German": ["humaneval", "mt-en-de"],
    "Solve the math word problem; answer the geography multiple-choice question": [
        "gsm8k",
        "mmlu-high-school-geography",
    ],
}


def stitching(loaded, repo: BrickRepository, data: Path, n: int = 12) -> None:
    print("\n## 5. Stitching: French -> English -> German (chrF against the German captions)\n")
    metas = repo.list()
    hits = sum([p.brick for p in plan_chain(text, metas)] == want for text, want in PLANS.items())
    print(f"planner: {hits} of {len(PLANS)} instructions get the intended chain")
    plan = plan_chain(
        "Translate the French text into English, then translate the English text into German", metas
    )
    print("chosen chain: " + " -> ".join(f"{p.brick} ({p.score:.2f})" for p in plan) + "\n")
    lines = {
        k: (data / f"multi30k_test2016.{k}.txt").read_text().splitlines()
        for k in ("fr", "en", "de")
    }
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
        print(
            f"| {label} | {middle} | {score:.1f} | {score / base_score:.2f}x "
            f"({time.perf_counter() - t0:.0f} s) |"
        )
        if label.startswith("planned"):
            print(
                f"\nexample: {french[0]!r} -> {outputs[0][0]!r} -> {outputs[-1][0]!r} "
                f"(reference {german[0]!r})"
            )


# Hand-written for this benchmark (benchmark data, not from ../shared/data): well-known facts and
# one-step arithmetic word problems, in French with an English original and the accepted answers
# (English and French spellings, so answering in either language counts).
FRENCH_KNOWLEDGE = [
    ("Quelle est la capitale de l'Italie ?", "What is the capital of Italy?", ("Rome",)),
    ("Quelle est la capitale du Japon ?", "What is the capital of Japan?", ("Tokyo",)),
    ("Quelle est la capitale de l'Espagne ?", "What is the capital of Spain?", ("Madrid",)),
    ("Quelle est la capitale de l'Allemagne ?", "What is the capital of Germany?", ("Berlin",)),
    (
        "Qui a écrit la pièce Roméo et Juliette ?",
        "Who wrote the play Romeo and Juliet?",
        ("Shakespeare",),
    ),
    (
        "Quelle est la plus grande planète du système solaire ?",
        "What is the largest planet in the solar system?",
        ("Jupiter",),
    ),
    (
        "Sur quel continent se trouve l'Égypte ?",
        "On which continent is Egypt?",
        ("Africa", "Afrique"),
    ),
    (
        "Combien de continents y a-t-il sur Terre ?",
        "How many continents are there on Earth?",
        ("7", "seven", "sept"),
    ),
    (
        "Quel est le plus grand océan du monde ?",
        "What is the largest ocean in the world?",
        ("Pacific", "Pacifique"),
    ),
    ("Qui a peint la Joconde ?", "Who painted the Mona Lisa?", ("Leonardo", "Léonard", "Vinci")),
    (
        "Quelle est la langue officielle du Brésil ?",
        "What is the official language of Brazil?",
        ("Portuguese", "portugais"),
    ),
    (
        "Quel animal est appelé le roi de la jungle ?",
        "Which animal is called the king of the jungle?",
        ("lion",),
    ),
    (
        "Quel gaz les plantes absorbent-elles pour la photosynthèse ?",
        "Which gas do plants absorb for photosynthesis?",
        ("carbon dioxide", "CO2", "dioxyde de carbone"),
    ),
    (
        "Combien de côtés a un triangle ?",
        "How many sides does a triangle have?",
        ("3", "three", "trois"),
    ),
    (
        "Quelle est la planète la plus proche du Soleil ?",
        "Which planet is closest to the Sun?",
        ("Mercury", "Mercure"),
    ),
    (
        "Quel est le plus long fleuve d'Afrique ?",
        "What is the longest river in Africa?",
        ("Nile", "Nil"),
    ),
    (
        "Dans quel pays se trouve la tour Eiffel ?",
        "In which country is the Eiffel Tower?",
        ("France",),
    ),
    (
        "De quelle couleur est le ciel par temps clair ?",
        "What color is the sky on a clear day?",
        ("blue", "bleu"),
    ),
    (
        "À quelle température l'eau gèle-t-elle en degrés Celsius ?",
        "At what temperature in degrees Celsius does water freeze?",
        ("0", "zero", "zéro"),
    ),
    (
        "Qui a été le premier homme à marcher sur la Lune ?",
        "Who was the first man to walk on the Moon?",
        ("Armstrong",),
    ),
]
FRENCH_MATH = [
    (
        "Marie a 12 pommes et en donne 5 à son frère. Combien de pommes lui reste-t-il ?",
        "Marie has 12 apples and gives 5 to her brother. How many apples does she have left?",
        7,
    ),
    (
        "Un livre coûte 8 euros. Combien coûtent 3 livres ?",
        "A book costs 8 euros. How much do 3 books cost?",
        24,
    ),
    (
        "Paul a 5 boîtes de 6 crayons. Combien de crayons a-t-il en tout ?",
        "Paul has 5 boxes of 6 pencils. How many pencils does he have in total?",
        30,
    ),
    (
        "Il y a 30 élèves dans une classe et 12 sont des garçons. Combien y a-t-il de filles ?",
        "There are 30 students in a class and 12 are boys. How many are girls?",
        18,
    ),
    (
        "Un train roule à 60 km par heure pendant 2 heures. Quelle distance parcourt-il ?",
        "A train travels at 60 km per hour for 2 hours. How far does it travel?",
        120,
    ),
    (
        "Sophie a 20 euros et achète un jouet à 14 euros. Combien d'argent lui reste-t-il ?",
        "Sophie has 20 euros and buys a toy for 14 euros. How much money does she have left?",
        6,
    ),
    (
        "Un jardin a 7 rangées de 8 fleurs. Combien de fleurs y a-t-il ?",
        "A garden has 7 rows of 8 flowers. How many flowers are there?",
        56,
    ),
    (
        "Tom partage 36 bonbons également entre 4 amis. Combien de bonbons reçoit chaque ami ?",
        "Tom shares 36 candies equally among 4 friends. How many candies does each friend get?",
        9,
    ),
    (
        "Une boulangerie vend 45 croissants le matin et 35 l'après-midi. Combien de croissants "
        "vend-elle en tout ?",
        "A bakery sells 45 croissants in the morning and 35 in the "
        "afternoon. How many croissants does it sell in total?",
        80,
    ),
    (
        "Léa lit 15 pages par jour. Combien de pages lit-elle en 4 jours ?",
        "Léa reads 15 pages a day. How many pages does she read in 4 days?",
        60,
    ),
]
QA_SETS = {  # name: (questions, answer template, planner instruction, answer tokens)
    "knowledge": (
        FRENCH_KNOWLEDGE,
        "Answer this question in a few words.\n{input}",
        "Translate the French question into English, then answer the general knowledge question",
        32,
    ),
    "math": (
        FRENCH_MATH,
        "Solve this math word problem.\n{input}",
        "Translate the French question into English, then solve the math word problem",
        96,
    ),
}


def correct(answer: str, expected) -> bool:
    """Knowledge: an accepted answer occurs as whole words; math: the last number is right."""
    if isinstance(expected, int):
        numbers = re.findall(r"-?\d+(?:\.\d+)?", answer.replace(",", ""))
        return bool(numbers) and float(numbers[-1]) == expected
    return any(answer_matches(a, answer) for a in expected)


def stitching_questions(loaded, repo: BrickRepository) -> None:
    print("\n## 6. Stitching: French question -> fr->en translation -> answer (accuracy)\n")
    metas, fr_en = repo.list(), repo.get("mt-fr-en")
    to_english = MT.format(src=LANG["fr"], dst=LANG["en"])
    for kind, (questions, template, instruction, tokens) in QA_SETS.items():
        plan = plan_chain(instruction, metas)
        print(
            f"{kind}: planned chain for {instruction!r}: "
            + " -> ".join(f"{p.brick} ({p.score:.2f})" for p in plan)
        )
        answerer = [step_for(repo.get(p.brick)) for p in plan[1:]]
        french, english = [q[0] for q in questions], [q[1] for q in questions]
        runs = {
            "base, French question directly": (french, [Step(None, template)]),
            "base translates, base answers": (
                french,
                [Step(None, to_english), Step(None, template)],
            ),
            "fr->en brick translates, base answers": (
                french,
                [step_for(fr_en), Step(None, template)],
            ),
            "planned chain": (french, [step_for(repo.get(p.brick)) for p in plan]),
            "reference: base, English original": (english, [Step(None, template)]),
        }
        if answerer:
            runs["reference: planned answer brick, English original"] = (english, answerer)
        print(
            f"\n| {kind} ({len(questions)} questions) | accuracy | vs base direct | "
            "seconds |\n|---|---|---|---|"
        )
        base = None
        for label, (inputs, steps) in runs.items():
            t0 = time.perf_counter()
            outputs = run_pipeline(loaded, steps, inputs, max_new_tokens=tokens, full_last=True)
            hits = [correct(a, q[2]) for a, q in zip(outputs[-1], questions, strict=True)]
            accuracy = sum(hits) / len(hits)
            base = accuracy if base is None else base
            ratio = f"{accuracy / base:.2f}x" if base else "-"
            print(
                f"| {label} | {sum(hits)}/{len(hits)} = {accuracy:.2f} | {ratio} | "
                f"{time.perf_counter() - t0:.0f} |",
                flush=True,
            )
            if len(steps) > 1:
                print(
                    f"|   e.g. {inputs[0]!r} -> {outputs[0][0]!r} -> "
                    f"{outputs[-1][0][:80]!r} | | | |"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--work", default="/tmp/combine_work")
    parser.add_argument(
        "--only", choices=("exact", "merge", "subtract", "compose", "stitch", "stitch-qa")
    )
    parser.add_argument(
        "--parents",
        nargs="+",
        default=list(PARENTS),
        help="the bricks merged in section 2 (the first two: section 1 and 3)",
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    from retrieval import build_tasks

    data = Path(args.data)
    loaded = load_model("smollm2-135m-instruct")
    repo = BrickRepository(Path(args.work) / "repo", create=False)
    bricks = [repo.get(n) for n in args.parents]
    tests = {t.name: t.test for t in build_tasks(data) if t.name in args.parents}
    sections = {
        "exact": lambda: exactness(loaded, bricks[:2]),
        "merge": lambda: merging(loaded, bricks, tests),
        "subtract": lambda: subtraction(loaded, bricks, tests),
        "compose": lambda: compose(loaded, repo, data),
        "stitch": lambda: stitching(loaded, repo, data),
        "stitch-qa": lambda: stitching_questions(loaded, repo),
    }
    for name, run in sections.items():
        if args.only in (None, name):
            t0 = time.perf_counter()
            run()
            print(f"\n({name}: {time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
