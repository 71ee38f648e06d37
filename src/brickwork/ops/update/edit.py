"""edit(): one fact (ROME) or several (batch) -> a delta brick; the model is left unchanged."""

from __future__ import annotations

import time

import torch

import brickwork
from brickwork.bricks.brick import Brick, check_name
from brickwork.errors import BrickworkError
from brickwork.models.load import LoadedModel
from brickwork.ops.update.evaluate import greedy
from brickwork.ops.update.rome import EditSettings, covariance, fact_update, solve_update
from brickwork.ops.update.store import delta_brick


def check_facts(loaded: LoadedModel, facts: list[dict]) -> list[str]:
    """The model's current greedy answers; an error when a fact's ``target_true`` is not what
    the model says, or the model already says the new target."""
    for f in facts:
        for field in ("prompt", "subject", "target_new"):
            if not str(f.get(field, "")).strip():
                raise BrickworkError(f"a fact needs a non-empty {field!r}")
    outputs = [
        loaded.tokenizer.decode(g).strip() for g in greedy(loaded, [f["prompt"] for f in facts], 8)
    ]
    for f, said in zip(facts, outputs, strict=True):
        old, new = f.get("target_true"), f["target_new"]
        if old and not said.lower().startswith(old.strip().lower()):
            raise BrickworkError(
                f"the model does not produce {old!r} for {f['prompt']!r} (it says {said!r}); "
                "there is no such fact to edit"
            )
        if said.lower().startswith(new.strip().lower()):
            raise BrickworkError(f"the model already says {new!r} for {f['prompt']!r}")
    return outputs


def fact_keys_values(
    loaded: LoadedModel, facts: list[dict], settings: EditSettings, cov: torch.Tensor | None
):
    """Keys [d_ff, m], values δ [d_model, m] (a fact's δ once per key) and per-fact records."""
    keys, values, records = [], [], []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        for f in facts:
            mine, delta, record = fact_update(loaded, f, settings, cov)
            keys.append(mine)
            values += [delta] * mine.shape[1]
            records.append(record)
    return torch.cat(keys, 1), torch.stack(values, 1), records


def edit(
    loaded: LoadedModel,
    facts: list[dict],
    name: str,
    settings: EditSettings | None = None,
    check: bool = True,
) -> Brick:
    """A delta brick that writes ``facts`` (dicts with prompt, subject, target_new and optionally
    target_true, and ``keep``: texts whose predictions the edit must not change) into one
    layer's FFN output projection. Apply it with ``apply_edit``."""
    settings = settings or EditSettings()
    settings.check()
    check_name(name)
    if not facts:
        raise BrickworkError("no facts to edit")
    started = time.perf_counter()
    said = check_facts(loaded, facts) if check else None
    cov = covariance(loaded, settings)
    keys, values, records = fact_keys_values(loaded, facts, settings, cov)
    u, v = solve_update(keys, values, cov, settings.mode, settings.memit_lambda)
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
    return delta_brick(loaded, name, settings.layer, u, v, update, facts, provenance, metrics)
