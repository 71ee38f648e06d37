"""Measure sequential editing: edit facts one after another and, after each checkpoint (10, 50,
100, 300 edits, ``checkpoints``), score every edit made so far (not only the last) on
reliability and generalization, their neighbourhoods' locality (the unedited model's greedy
tokens as the reference), the suite's perplexity and, with ``ability`` (``ability.py``), MMLU
letter accuracy and GSM8K solution perplexity. The stack is rolled back at the end."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import replace
from math import nan
from pathlib import Path

from brickwork.data.edits import EditFact
from brickwork.models.load import LoadedModel
from brickwork.ops.update.evaluate import (
    fact_metrics,
    known_paraphrases,
    neighbourhood_reference,
    short_suite_batches,
    suite_perplexity,
    summarize,
)
from brickwork.ops.update.rome import EditSettings
from brickwork.ops.update.sequential import checkpoints, edit_sequentially, roll_back

# The curves a plot shows: (key, label), generation-based metrics first.
CURVES = (
    ("reliability_gen", "reliability (generated)"),
    ("generalization_known_gen", "generalization, known paraphrases (generated)"),
    ("locality_gen", "neighbourhood unchanged (generated)"),
    ("reliability", "reliability (teacher-forced)"),
    ("ppl_ratio", "suite perplexity ratio"),
    ("mmlu_accuracy", "MMLU letter accuracy"),
)


def evaluate_sequence(
    loaded: LoadedModel,
    facts: list[EditFact],
    limit: int,
    method: str,
    settings: EditSettings | None = None,
    ability=None,
    log: Callable[[str], None] = print,
    marks: list[int] | None = None,
    deadline: float | None = None,
    on_checkpoint: Callable[[dict], None] | None = None,
    preserve: list[tuple[str, str]] | None = None,
) -> dict:
    """Edit the first min(limit, len(facts)) facts one after another with ``method``; the record
    holds the unedited model's scores (``before``) and one row per checkpoint (``marks``, or
    ``checkpoints``). Past ``deadline`` (``time.perf_counter()``), it stops at a checkpoint.
    ``on_checkpoint(record so far)`` runs after each checkpoint (to save partial results);
    ``preserve`` goes to ``edit_sequentially``."""
    marks = sorted(m for m in (marks or checkpoints(limit, len(facts))) if m <= len(facts))
    facts, left_out = without_edited_neighbours(facts[: marks[-1]])
    if left_out:
        log(
            f"left out {left_out} neighbourhood prompts the sequence edits (same relation, subject)"
        )
    reference, known = neighbourhood_reference(loaded, facts), known_paraphrases(loaded, facts)
    suite = short_suite_batches(loaded)
    ppl_base = suite_perplexity(loaded, suite)

    def state(n: int, ppl: float | None = None) -> dict:
        row = summarize(fact_metrics(loaded, facts[:n], reference, known=known))
        row["suite_ppl"] = suite_perplexity(loaded, suite) if ppl is None else ppl
        row["ppl_ratio"] = row["suite_ppl"] / ppl_base
        return row | (ability.measure() if ability is not None else {})

    before = state(len(facts), ppl_base)  # the unedited model: its perplexity is ppl_base
    rows, seconds = [], []

    def on_edit(position: int, brick) -> None:
        seconds.append(brick.metrics["seconds"])
        if position in marks:
            started = time.perf_counter()
            row = {"edits": position, **state(position)}
            row["seconds_per_edit"] = sum(seconds) / len(seconds)
            row["measure_seconds"] = time.perf_counter() - started
            rows.append(row)
            log(describe(method, row))
            if on_checkpoint is not None:
                on_checkpoint({"method": method, "before": before, "checkpoints": rows})
            if deadline is not None and time.perf_counter() > deadline and position < marks[-1]:
                raise _OutOfTime

    try:
        roll_back(
            loaded, edit_sequentially(loaded, facts, "seq", method, settings, on_edit, preserve)
        )
    except _OutOfTime:  # edit_sequentially rolled the stack back
        log(f"stopped after {rows[-1]['edits']} edits (out of time)")
    return {
        "method": method,
        "before": before,
        "checkpoints": rows,
        "seconds": seconds,
        "neighbourhood_left_out": left_out,
    }


def without_edited_neighbours(facts: list[EditFact]) -> tuple[list[EditFact], int]:
    """The facts without the neighbourhood prompts that the sequence edits: a neighbour of the
    same relation that names a subject edited for that relation (a sequence that edits Sweden's
    capital is meant to change "The capital of Sweden is", not "The currency of Sweden is"), and
    how many prompts were left out."""
    edited: dict[str | None, list[re.Pattern]] = {}
    for f in facts:
        name = re.compile(rf"(?<!\w){re.escape(f.subject)}(?!\w)", re.IGNORECASE)
        edited.setdefault(f.relation, []).append(name)
    out, left_out = [], 0
    for f in facts:
        names = edited[f.relation]
        kept = tuple(p for p in f.neighborhood if not any(n.search(p) for n in names))
        left_out += len(f.neighborhood) - len(kept)
        out.append(replace(f, neighborhood=kept))
    return out, left_out


class _OutOfTime(Exception):
    pass


def describe(method: str, row: dict) -> str:
    """One line per checkpoint: the generated and teacher-forced scores side by side."""
    parts = [
        f"{method} after {row['edits']} edits:",
        f"reliability {row['reliability_gen']:.1%} (tf {row['reliability']:.1%})",
        f"generalization {row.get('generalization_gen', nan):.1%}",
        f"known {row.get('generalization_known_gen', nan):.1%}",
        f"locality {row.get('locality_gen', nan):.1%} (tf {row.get('locality', nan):.1%})",
        f"suite PPL x{row['ppl_ratio']:.4f}",
    ]
    if "mmlu_accuracy" in row:
        parts.append(f"MMLU {row['mmlu_accuracy']:.1%}, GSM8K PPL {row['gsm8k_ppl']:.3f}")
    parts.append(f"{row['seconds_per_edit']:.1f} s/edit")
    return " ".join(parts)


def plot_curves(records: list[dict], path: Path) -> bool:
    """A PNG of ``CURVES`` against the number of edits, one line per record (method); False
    (nothing written) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    shown = [(k, label) for k, label in CURVES if any(k in r["before"] for r in records)]
    columns = (len(shown) + 1) // 2
    fig, axes = plt.subplots(2, columns, figsize=(3.6 * columns, 6.0), squeeze=False)
    for ax in axes.flat[len(shown) :]:
        ax.set_visible(False)
    for ax, (key, label) in zip(axes.flat, shown, strict=False):  # spare axes hidden
        for record in records:
            points = [(0, record["before"].get(key, 1.0 if key == "ppl_ratio" else None))]
            points += [(r["edits"], r.get(key)) for r in record["checkpoints"]]
            xs, ys = zip(*[(x, y) for x, y in points if y is not None], strict=True)
            ax.plot(xs, ys, marker="o", label=record["method"])
        ax.set_title(label, fontsize=8)
        ax.set_xlabel("sequential edits", fontsize=8)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
