"""edit(): one fact (ROME) or several (batch) -> a delta brick; the model is left unchanged."""

from __future__ import annotations

import time

import torch

from brickwork.bricks.brick import Brick
from brickwork.data.edits import EditFact
from brickwork.errors import BrickworkError
from brickwork.models.load import LoadedModel
from brickwork.ops.update.evaluate import greedy
from brickwork.ops.update.rome import (
    EditSettings,
    covariances,
    fact_update,
    solve_update,
    start_edit,
)
from brickwork.ops.update.store import delta_brick, edit_provenance

KNOWN_CHUNK = 32  # facts asked at a time by ``known_facts`` with a limit


def _answers(loaded: LoadedModel, facts: list[EditFact]) -> list[str]:
    for f in facts:
        for field in ("prompt", "subject", "target_new"):
            if not getattr(f, field).strip():
                raise BrickworkError(f"a fact needs a non-empty {field!r}")
    return [
        loaded.tokenizer.decode(g).strip() for g in greedy(loaded, [f.prompt for f in facts], 8)
    ]


def _problem(fact: EditFact, said: str) -> str | None:
    """Why ``fact`` cannot be edited, given what the model says after its prompt (or None)."""
    old, new = fact.target_true, fact.target_new
    if old and not said.lower().startswith(old.strip().lower()):
        return (
            f"the model does not produce {old!r} for {fact.prompt!r} (it says {said!r}); "
            "there is no such fact to edit"
        )
    if said.lower().startswith(new.strip().lower()):
        return f"the model already says {new!r} for {fact.prompt!r}"
    return None


def check_facts(loaded: LoadedModel, facts: list[EditFact]) -> list[str]:
    """The model's current greedy answers; an error when a fact's ``target_true`` is not what
    the model says, or the model already says the new target."""
    outputs = _answers(loaded, facts)
    for f, said in zip(facts, outputs, strict=True):
        problem = _problem(f, said)
        if problem:
            raise BrickworkError(problem)
    return outputs


def known_facts(
    loaded: LoadedModel, facts: list[EditFact], limit: int | None = None
) -> tuple[list[EditFact], list[EditFact]]:
    """(the facts ``check_facts`` accepts, the ones it would refuse): the model does not say
    their ``target_true``, or already says their new target. With ``limit``, facts are asked
    in order, a chunk at a time, until ``limit`` are accepted (the rest are not asked)."""
    kept, refused = [], []
    step = len(facts) if limit is None else max(limit, KNOWN_CHUNK)
    for start in range(0, len(facts), max(step, 1)):
        chunk = facts[start : start + step]
        for f, said in zip(chunk, _answers(loaded, chunk), strict=True):
            if limit is not None and len(kept) >= limit:
                return kept, refused
            (kept if _problem(f, said) is None else refused).append(f)
    return kept, refused


def fact_parts(
    loaded: LoadedModel, facts: list[EditFact], settings: EditSettings, solver=None, covs=None
):
    """Per layer, keys [d_ff, m] and residuals [d_model, m] of every fact's update parts (the
    main layer first); per layer, its C (``covs`` if given); per fact, the optimisation's
    record."""
    covs = covs if covs is not None else covariances(loaded, facts, settings)
    by_layer: dict[int, list] = {settings.layer: []}
    records = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        for f in facts:
            parts, record = fact_update(loaded, f, settings, covs, solver)
            for part in parts:
                by_layer.setdefault(part.layer, []).append(part)
            records.append(record)
    stacked = {
        layer: (torch.cat([p.keys for p in parts], 1), torch.cat([p.residuals() for p in parts], 1))
        for layer, parts in by_layer.items()
    }
    return stacked, covs, records


def edit(
    loaded: LoadedModel,
    facts: list[EditFact],
    name: str,
    settings: EditSettings | None = None,
    check: bool = True,
    solver=None,
    method: str | None = None,
    covs: dict | None = None,
) -> Brick:
    """A delta brick that writes ``facts`` (prompt, subject, target_new and optionally
    target_true, and ``keep``: texts whose predictions the edit must not change) into one
    layer's FFN output projection. Apply it with ``apply_edit``. ``solver`` (keys, residuals)
    -> (u, v) replaces ROME's solve at ``settings.layer`` (``method`` names it); the brick
    keeps that layer's keys (tensor ``keys``) for later edits that must preserve them. ``covs``
    ({layer: C}, ``covariances``) saves recomputing C on a model whose weights moved."""
    settings = start_edit(settings, name, facts, "edit")
    started = time.perf_counter()
    said = check_facts(loaded, facts) if check else None
    stacked, covs, records = fact_parts(loaded, facts, settings, solver, covs)
    updates = {
        layer: solver(keys, residuals)
        if solver is not None and layer == settings.layer
        else solve_update(keys, residuals, covs[layer], settings.mode, settings.memit_lambda)
        for layer, (keys, residuals) in stacked.items()
    }
    seconds = time.perf_counter() - started
    method = method or ("rome" if len(facts) == 1 else f"batch-{settings.mode}")
    metrics = {"seconds": seconds, "value_optimisation": records}
    if said is not None:
        metrics["answers_before"] = said
    update = "rank_one" if len(facts) == 1 else "batch"
    provenance = edit_provenance(loaded, method, settings)
    brick = delta_brick(loaded, name, updates, update, facts, provenance, metrics)
    brick.tensors["keys"] = stacked[settings.layer][0].float().contiguous()
    return brick
