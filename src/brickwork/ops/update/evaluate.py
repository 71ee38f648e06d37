"""Edit metrics, in the style of EasyEdit (teacher-forced, top-1 per token):

- reliability: on the edited prompt, the share of the new target's tokens that are the model's
  top-1 prediction given the prompt and the target's earlier tokens (mean over facts);
- generalization: the same on the fact's paraphrases;
- generalization_prefixed: the paraphrases behind unrelated text (``EVAL_PREFIXES``, none of them
  an edit context), as CounterFact writes its paraphrase prompts: a subject that opens a text sits
  at position 0, the attention sink of a model without a BOS token (SmolLM2), which the anchor's
  Llama-2 never sees;
- generalization_inside: the paraphrases whose text does not open with the subject;
- generalization_known: the paraphrases the unedited model completes with the true object
  (``known_paraphrases``: the check the prompts pass, applied to each paraphrase); a paraphrase
  the model cannot answer before the edit does not test whether the edit moved its knowledge;
- locality: on the neighbourhood prompts (the same relation, other subjects), the share of the
  unedited model's greedy next ``LOCALITY_TOKENS`` tokens that are still top-1 after the edit;
- locality_unrelated: the same on a fact's optional ``unrelated`` prompts (other relations, as
  in EasyEdit's ZsRE locality);
- ``first``: the stricter first-token variant (the target's first token is top-1);
- suite perplexity: of the built-in suite's test references (chat template), token-weighted.

Beside each, the generation-based metric (``*_gen``, ``generation.py``): what greedy decoding
says, no teacher forcing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import torch

from brickwork.data.edits import EditFact
from brickwork.models.load import LoadedModel
from brickwork.models.tokens import batches, pad
from brickwork.ops.update.common import encode, opens, target_ids
from brickwork.ops.update.generation import answer_metrics

LOCALITY_TOKENS = 3
BATCH = 16
EVAL_PREFIXES = ("Yesterday it rained all afternoon. ", "Let me tell you something. ")


def _top1(loaded: LoadedModel, model: Callable, rows: list[tuple[list[int], list[int]]]):
    """For each (context, continuation): whether each continuation token is top-1."""
    out = []
    for chunk in batches(rows, BATCH):
        ids, mask = pad([c + t[:-1] for c, t in chunk], loaded.tokenizer.pad_token_id)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits
        for b, (c, t) in enumerate(chunk):
            picked = logits[b, len(c) - 1 : len(c) - 1 + len(t)].argmax(-1)
            out.append((picked == torch.tensor(t)).tolist())
    return out


def target_scores(
    loaded: LoadedModel, prompts: list[str], targets: list[str], model: Callable | None = None
) -> list[list[bool]]:
    """Per prompt, whether each token of its target is the top-1 prediction (teacher-forced)."""
    tok = loaded.tokenizer
    rows = [(encode(tok, p), target_ids(tok, t)) for p, t in zip(prompts, targets, strict=True)]
    return _top1(loaded, model or loaded.model, rows)


def greedy(
    loaded: LoadedModel, prompts: list[str], n: int = LOCALITY_TOKENS, model: Callable | None = None
) -> list[list[int]]:
    """The next ``n`` greedy tokens of every prompt (no cache; prompts are short)."""
    model = model or loaded.model
    out = []
    for chunk in batches(prompts, BATCH):
        rows = [encode(loaded.tokenizer, p) for p in chunk]
        new = [[] for _ in rows]
        for _ in range(n):
            ids, mask = pad(
                [r + g for r, g in zip(rows, new, strict=True)], loaded.tokenizer.pad_token_id
            )
            with torch.no_grad():
                logits = model(input_ids=ids, attention_mask=mask).logits
            for b, (r, g) in enumerate(zip(rows, new, strict=True)):
                g.append(int(logits[b, len(r) + len(g) - 1].argmax()))
        out += new
    return out


def knows(loaded: LoadedModel, facts: list[EditFact], n: int = 8) -> list[bool]:
    """Whether the greedy continuation of each fact's prompt starts with its ``target_true``."""
    continuations = greedy(loaded, [f.prompt for f in facts], n)
    return [
        loaded.tokenizer.decode(c).strip().lower().startswith(f.target_true.strip().lower())
        for f, c in zip(facts, continuations, strict=True)
    ]


def neighbourhood_reference(loaded: LoadedModel, facts: list[EditFact]) -> dict[str, list[int]]:
    """The unedited model's greedy tokens for every neighbourhood prompt (locality reference)."""
    prompts = sorted({p for f in facts for p in [*f.neighborhood, *f.unrelated]})
    return dict(zip(prompts, greedy(loaded, prompts), strict=True))


def known_paraphrases(loaded: LoadedModel, facts: list[EditFact]) -> set[tuple[str, str]]:
    """(paraphrase, target_true) for the paraphrases whose greedy continuation starts with their
    fact's ``target_true``."""
    asked = [replace(f, prompt=p) for f in facts if f.target_true for p in f.paraphrases]
    answers = knows(loaded, asked)
    return {(f.prompt, f.target_true) for f, ok in zip(asked, answers, strict=True) if ok}


def fact_metrics(
    loaded: LoadedModel,
    facts: list[EditFact],
    reference: dict[str, list[int]],
    model: Callable | None = None,
    known: set[tuple[str, str]] | None = None,
) -> list[dict]:
    """Reliability, generalization and locality (token-level, first-token and generated) per
    fact; with ``known`` (``known_paraphrases``), generalization on those paraphrases too."""
    tok, rows, spans = loaded.tokenizer, [], []
    for f in facts:
        new = target_ids(tok, f.target_new)
        prefixed = [c + p for p in f.paraphrases for c in EVAL_PREFIXES]
        groups = [
            [f.prompt],
            list(f.paraphrases),
            prefixed,
            list(f.neighborhood),
            list(f.unrelated),
        ]
        spans.append([len(g) for g in groups])
        rows += [(encode(tok, p), new) for p in groups[0] + groups[1] + groups[2]]
        rows += [(encode(tok, p), reference[p]) for p in groups[3] + groups[4]]
    hits = iter(_top1(loaded, model or loaded.model, rows))
    answers = answer_metrics(loaded, facts, model, known)
    out = []
    for f, sizes, generated in zip(facts, spans, answers, strict=True):
        edit, para, prefixed, neigh, unrelated = ([next(hits) for _ in range(n)] for n in sizes)
        inside = [h for p, h in zip(f.paraphrases, para, strict=True) if not opens(p, f.subject)]
        row = {
            "id": f.prompt if f.id is None else f.id,
            "reliability": _mean(edit[0]),
            "reliability_first": float(edit[0][0]),
            "generalization": _mean([_mean(h) for h in para]),
            "generalization_first": _mean([float(h[0]) for h in para]),
            "generalization_prefixed": _mean([_mean(h) for h in prefixed]),
            **_locality(neigh),
            **generated,
        }
        if inside:
            row["generalization_inside"] = _mean([_mean(h) for h in inside])
        answered = [
            h
            for p, h in zip(f.paraphrases, para, strict=True)
            if (p, f.target_true) in (known or ())
        ]
        if answered:
            row["generalization_known"] = _mean([_mean(h) for h in answered])
        if unrelated:
            row["locality_unrelated"] = _mean([_mean(h) for h in unrelated])
            row["locality_unrelated_gen"] = _mean([all(h) for h in unrelated])
        out.append(row)
    return out


def _locality(neighbours: list[list[bool]]) -> dict:
    """Locality on the neighbourhood prompts' hits; none without neighbours (a sequence leaves
    out those it edits, ``sequential_eval``)."""
    if not neighbours:
        return {}
    return {
        "locality": _mean([_mean(h) for h in neighbours]),
        "locality_first": _mean([float(h[0]) for h in neighbours]),
        "locality_gen": _mean([all(h) for h in neighbours]),
    }


def summarize(rows: list[dict]) -> dict:
    keys = list(dict.fromkeys(k for r in rows for k in r if k != "id"))  # a key may be missing
    return {k: _mean([r[k] for r in rows if k in r]) for k in keys} | {"facts": len(rows)}


def _mean(values) -> float:
    values = [float(v) for v in values]
    return sum(values) / len(values) if values else math.nan


def short_suite_batches(loaded: LoadedModel) -> list:
    """The suite's test references, prompts cut to their last 96 tokens and references to 48
    (the full-length measure takes a minute per call on 2 shared cores)."""
    from brickwork.analysis.loss import reference_batches
    from brickwork.data import FUNCTIONALITIES, load_builtin_suite

    samples = load_builtin_suite("test")
    return reference_batches(
        loaded.tokenizer,
        samples,
        list(FUNCTIONALITIES),
        max_prompt_tokens=96,
        max_reference_tokens=48,
    )


def suite_perplexity(loaded: LoadedModel, batches=None) -> float:
    """Token-weighted perplexity of the built-in suite's test references."""
    from brickwork.analysis.loss import functionality_losses, reference_batches
    from brickwork.data import FUNCTIONALITIES, load_builtin_suite

    if batches is None:
        samples = load_builtin_suite("test")
        batches = reference_batches(loaded.tokenizer, samples, list(FUNCTIONALITIES))
    losses = functionality_losses(loaded, batches, len(FUNCTIONALITIES))
    counts = torch.zeros(len(FUNCTIONALITIES), dtype=torch.float64)
    for batch in batches:
        counts.index_add_(0, batch.groups, torch.ones(len(batch.groups), dtype=torch.float64))
    return math.exp(float((losses * counts).sum() / counts.sum()))
