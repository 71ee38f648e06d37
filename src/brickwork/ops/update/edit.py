"""edit(): one fact (ROME) or several (batch) -> a delta brick; the model is left unchanged."""

from __future__ import annotations

import time

import torch

import brickwork
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
from brickwork.ops.update.store import delta_brick


def check_facts(loaded: LoadedModel, facts: list[EditFact]) -> list[str]:
    """The model's current greedy answers; an error when a fact's ``target_true`` is not what
    the model says, or the model already says the new target."""
    for f in facts:
        for field in ("prompt", "subject", "target_new"):
            if not getattr(f, field).strip():
                raise BrickworkError(f"a fact needs a non-empty {field!r}")
    outputs = [
        loaded.tokenizer.decode(g).strip() for g in greedy(loaded, [f.prompt for f in facts], 8)
    ]
    for f, said in zip(facts, outputs, strict=True):
        old, new = f.target_true, f.target_new
        if old and not said.lower().startswith(old.strip().lower()):
            raise BrickworkError(
                f"the model does not produce {old!r} for {f.prompt!r} (it says {said!r}); "
                "there is no such fact to edit"
            )
        if said.lower().startswith(new.strip().lower()):
            raise BrickworkError(f"the model already says {new!r} for {f.prompt!r}")
    return outputs


def fact_parts(loaded: LoadedModel, facts: list[EditFact], settings: EditSettings):
    """Per layer, keys [d_ff, m] and residuals [d_model, m] of every fact's update parts (the
    main layer first); per layer, its C; per fact, the optimisation's record."""
    covs = covariances(loaded, facts, settings)
    by_layer: dict[int, list] = {settings.layer: []}
    records = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        for f in facts:
            parts, record = fact_update(loaded, f, settings, covs)
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
) -> Brick:
    """A delta brick that writes ``facts`` (prompt, subject, target_new and optionally
    target_true, and ``keep``: texts whose predictions the edit must not change) into one
    layer's FFN output projection. Apply it with ``apply_edit``."""
    settings = start_edit(settings, name, facts, "edit")
    started = time.perf_counter()
    said = check_facts(loaded, facts) if check else None
    stacked, covs, records = fact_parts(loaded, facts, settings)
    updates = {
        layer: solve_update(keys, residuals, covs[layer], settings.mode, settings.memit_lambda)
        for layer, (keys, residuals) in stacked.items()
    }
    seconds = time.perf_counter() - started
    provenance = {
        "method": "rome" if len(facts) == 1 else f"batch-{settings.mode}",
        "settings": settings.to_json(),
        "base_model_source": loaded.source,
        "brickwork_version": brickwork.__version__,
    }
    metrics = {"seconds": seconds, "value_optimisation": records}
    if said is not None:
        metrics["answers_before"] = said
    update = "rank_one" if len(facts) == 1 else "batch"
    return delta_brick(loaded, name, updates, update, facts, provenance, metrics)
