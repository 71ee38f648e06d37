"""General ability checks for edited models, on real data given by path (``--data``; never in
the repository):

- MMLU letter accuracy: zero-shot, question, the four options as "A. ..." lines and "Answer:";
  the model's pick is the letter (" A" .. " D") with the highest next-token logit;
- GSM8K solution perplexity: of the worked solution (before "####") after the question (chat
  template), token-weighted.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import torch

from brickwork.errors import BrickworkError
from brickwork.models.load import LoadedModel
from brickwork.models.tokens import batches, pad

MMLU_SUBJECTS = (
    "global_facts",
    "high_school_geography",
    "high_school_computer_science",
    "elementary_mathematics",
    "moral_scenarios",
)
LETTERS = ("A", "B", "C", "D")
MAX_PROMPT_TOKENS = 320
BATCH = 8


def check_data(data: Path) -> None:
    """One clear error when ``data`` lacks the files these checks read."""
    needed = [data / "gsm8k_test.jsonl", *(data / "mmlu" / f"{s}_test.csv" for s in MMLU_SUBJECTS)]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise BrickworkError(f"--data {data} lacks {', '.join(missing)}")


def mmlu_items(data: Path, per_subject: int) -> list[tuple[str, int]]:
    """(prompt, index of the right letter) for the first ``per_subject`` items of each subject."""
    items = []
    for subject in MMLU_SUBJECTS:
        with (data / "mmlu" / f"{subject}_test.csv").open(encoding="utf-8", newline="") as f:
            for row in list(csv.reader(f))[:per_subject]:
                question, *options, answer = row
                lines = [question, *(f"{k}. {o}" for k, o in zip(LETTERS, options, strict=True))]
                items.append(("\n".join([*lines, "Answer:"]), LETTERS.index(answer.strip())))
    return items


def mmlu_accuracy(loaded: LoadedModel, items: list[tuple[str, int]]) -> float:
    """The share of ``items`` whose highest-scoring letter is the right one."""
    tok = loaded.tokenizer
    letters = [tok(" " + k, add_special_tokens=False)["input_ids"][-1] for k in LETTERS]
    right = 0
    for chunk in batches(items, BATCH):
        rows = [tok(p)["input_ids"][-MAX_PROMPT_TOKENS:] for p, _ in chunk]
        ids, mask = pad(rows, tok.pad_token_id)
        with torch.no_grad():
            logits = loaded.model(input_ids=ids, attention_mask=mask).logits
        for b, (row, (_, answer)) in enumerate(zip(rows, chunk, strict=True)):
            right += int(logits[b, len(row) - 1, letters].argmax()) == answer
    return right / len(items)


def gsm8k_batches(loaded: LoadedModel, data: Path, n: int) -> list:
    """Scoring batches of the first ``n`` GSM8K test solutions after their questions."""
    from brickwork.analysis.loss import reference_batches
    from brickwork.data.sample import Sample

    lines = (data / "gsm8k_test.jsonl").read_text(encoding="utf-8").splitlines()[:n]
    rows = [json.loads(line) for line in lines]
    samples = [
        Sample(f"gsm8k-{i}", r["question"], "math", r["answer"].split("####")[0].strip())
        for i, r in enumerate(rows)
    ]
    return reference_batches(loaded.tokenizer, samples, ["math"], max_reference_tokens=128)


def reference_perplexity(loaded: LoadedModel, scoring: list) -> float:
    """Token-weighted perplexity of the references in ``scoring`` batches."""
    from brickwork.analysis.loss import nll_sums

    total, count = nll_sums(loaded, scoring, 1)
    return math.exp(float(total.sum() / count.sum()))


class Ability:
    """MMLU letter accuracy and GSM8K solution perplexity of a model as it is now, on a fixed
    sample of ``data`` (prepared once)."""

    def __init__(self, loaded: LoadedModel, data: Path, mmlu_per_subject=40, gsm8k=40) -> None:
        check_data(data)
        self.loaded = loaded
        self.items = mmlu_items(data, mmlu_per_subject)
        self.gsm8k = gsm8k_batches(loaded, data, gsm8k)

    def measure(self) -> dict:
        return {
            "mmlu_accuracy": mmlu_accuracy(self.loaded, self.items),
            "mmlu_items": len(self.items),
            "gsm8k_ppl": reference_perplexity(self.loaded, self.gsm8k),
        }
