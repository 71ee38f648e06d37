"""The metrics printed after one ``brickwork edit``, as EasyEdit prints them per edit.

For the edited facts (``evaluate.fact_metrics``, teacher-forced and generated): reliability on
the edited prompt; generalization on the fact's paraphrases (when it has any); locality on its
neighbourhood prompts (when it has any). Beside them, the ``keep`` texts checked: each keep
text's greedy next ``LOCALITY_TOKENS`` tokens before and after the edit; ``keep`` is the share of
those tokens still top-1 (teacher-forced) and ``keep_gen`` the share of texts whose greedy
answer is unchanged. The keep texts are in the edit's objective (ROME's KL term), so they show
whether the edit honoured them, not locality on unseen prompts.
"""

from __future__ import annotations

from collections.abc import Callable

from brickwork.data.edits import EditFact
from brickwork.models.load import LoadedModel
from brickwork.ops.update.common import encode
from brickwork.ops.update.evaluate import (
    _top1,
    fact_metrics,
    greedy,
    neighbourhood_reference,
    summarize,
)

ANSWER_TOKENS = 6  # greedy tokens shown after each edited prompt
SHOWN = 10  # at most this many answers and changed keep texts are printed
# (key, label, what it counts) in print order; a key is printed when measured
LINES = (
    ("reliability", "reliability", "edited prompt"),
    ("generalization", "generalization", "paraphrase"),
    ("locality", "locality", "neighbourhood prompt"),
    ("keep", "keep texts unchanged", "--keep text"),
)


def keep_reference(loaded: LoadedModel, facts: list[EditFact]) -> dict[str, list[int]]:
    """The unedited model's greedy tokens for every neighbourhood, unrelated and keep text;
    call before the edit is applied."""
    reference = neighbourhood_reference(loaded, facts)
    texts = sorted({t for f in facts for t in f.keep} - set(reference))
    return reference | dict(zip(texts, greedy(loaded, texts), strict=True))


def edit_metrics(
    loaded: LoadedModel,
    facts: list[EditFact],
    reference: dict[str, list[int]],
    model: Callable | None = None,
) -> dict:
    """On the edited model (``model``, or ``loaded.model``): the mean metrics over ``facts``
    (None where not measured), the counts behind them, each prompt's greedy answer and the keep
    texts whose greedy answer changed, as {"text", "before", "after"} (decoded)."""
    tok = loaded.tokenizer
    rows = fact_metrics(loaded, facts, reference, model)
    has = {"reliability": lambda f: True, "generalization": lambda f: f.paraphrases}
    has["locality"] = lambda f: f.neighborhood
    # each metric over the facts that have its prompts (a fact without paraphrases has none)
    summary = {
        k: summarize([r for r, f in zip(rows, facts, strict=True) if w(f)]) for k, w in has.items()
    }
    texts = list(dict.fromkeys(t for f in facts for t in f.keep))
    hits = _top1(loaded, model or loaded.model, [(encode(tok, t), reference[t]) for t in texts])
    changed = [t for t, h in zip(texts, hits, strict=True) if not all(h)]
    after = dict(zip(changed, greedy(loaded, changed, model=model), strict=True))
    counts = {
        "reliability": len(facts),
        "generalization": sum(len(f.paraphrases) for f in facts),
        "locality": sum(len(f.neighborhood) for f in facts),
        "keep": len(texts),
    }
    metrics = {}
    for key, _, _ in LINES:
        measured = counts[key] > 0
        if key == "keep":
            tf = sum(map(sum, hits)) / sum(map(len, hits)) if measured else None
            gen = 1 - len(changed) / len(texts) if measured else None
        else:
            tf = summary[key][key] if measured else None
            gen = summary[key][f"{key}_gen"] if measured else None
        metrics[key], metrics[f"{key}_gen"] = tf, gen
    said = greedy(loaded, [f.prompt for f in facts], ANSWER_TOKENS, model)
    return {
        "metrics": metrics,
        "answers": [
            {"prompt": f.prompt, "answer": tok.decode(a)} for f, a in zip(facts, said, strict=True)
        ],
        "counts": counts,
        "keep_changed": [
            {"text": t, "before": tok.decode(reference[t]), "after": tok.decode(after[t])}
            for t in changed
        ],
    }


def format_metrics(result: dict) -> list[str]:
    """Readable lines: the edited prompts' answers, one line per measured metric
    (teacher-forced, generated), then the changed keep texts."""
    metrics, counts = result["metrics"], result["counts"]
    lines = ["greedy answers after the edit:"]
    lines += [f"  {a['prompt']} ->{a['answer']!r}" for a in result["answers"][:SHOWN]]
    lines += ["edit metrics (EasyEdit's definitions):      teacher-forced  generated"]
    for key, label, unit in LINES:
        if metrics[key] is None:
            continue
        n = counts[key]
        what = f"{n} {unit}{'s' if n != 1 else ''}"
        lines.append(
            f"  {label:<22} {what:<20} {metrics[key]:>8.1%}  {metrics[f'{key}_gen']:>9.1%}"
        )
    for row in result["keep_changed"][:SHOWN]:
        lines.append(f"  changed: {row['text']!r} ->{row['after']!r} (was{row['before']!r})")
    if counts["keep"] and not result["keep_changed"]:
        lines.append("  every --keep text's greedy answer is unchanged")
    return lines
