"""Self-distillation data for recovering a compact model: no new data, only the train split.

Each train sample gives two rows: its chat-formatted prompt followed by its reference, and the
prompt followed by the dense model's own greedy continuation of it. A row is (context tokens,
target tokens); the recovery loss is the KL to the dense model on the targets' positions. Dense
continuations are deterministic, so they are cached per prompt (in memory, and in ``cache_dir``
if given) under a hash of the dense weights and the length.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from brickwork.bricks.train_eval import Row
from brickwork.data.sample import Sample
from brickwork.errors import BrickworkError
from brickwork.io import write_text_atomically
from brickwork.models.load import LoadedModel
from brickwork.models.tokens import batches, greedy_generate, pad, prompt_tokens

_MEMORY: dict[str, dict[str, list[int]]] = {}


def continuations(
    dense: LoadedModel,
    samples: list[Sample],
    tokens: int,
    cache_dir: str | Path | None = None,
    batch_size: int = 8,
) -> list[list[int]]:
    """The dense model's greedy continuation (token ids, at most ``tokens``) of each prompt;
    only prompts not cached yet are generated."""
    key = hashlib.sha256(f"{dense.fingerprint}|{tokens}".encode()).hexdigest()[:24]
    file = Path(cache_dir) / f"continuations-{key}.json" if cache_dir else None
    cache = _MEMORY.setdefault(key, {})
    if file is not None and file.is_file():
        cache.update(json.loads(file.read_text(encoding="utf-8")))
    prompts = {_prompt_key(s.prompt): s.prompt for s in samples}
    missing = [p for k, p in prompts.items() if k not in cache]
    if missing:
        new = _generate(dense, missing, tokens, batch_size)
        cache.update({_prompt_key(p): ids for p, ids in zip(missing, new, strict=True)})
    if file is not None and (missing or not file.is_file()):
        file.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(cache)
        write_text_atomically(file, text)
    return [cache[_prompt_key(s.prompt)] for s in samples]


def _prompt_key(prompt: str) -> str:
    return hashlib.sha256(prompt.encode()).hexdigest()[:32]


def _generate(dense: LoadedModel, prompts: list[str], tokens: int, batch_size: int) -> list:
    tokenizer = dense.tokenizer
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    stops = {tokenizer.eos_token_id, pad_id} - {None}
    out: list[list[int]] = []
    for chunk in batches(prompts, batch_size):
        ids, mask = pad([prompt_tokens(tokenizer, p, chat=True) for p in chunk], pad_id, "left")
        generated = greedy_generate(dense.model, ids, tokens, pad_id, attention_mask=mask)
        for row in generated[:, ids.shape[1] :].tolist():
            end = next((i for i, t in enumerate(row) if t in stops), len(row))
            out.append(row[: end + 1] if end < len(row) else row)  # keep the stop token
    return out


def distillation_rows(
    dense: LoadedModel,
    samples: list[Sample],
    seq_len: int,
    continuation_tokens: int,
    cache_dir: str | Path | None = None,
) -> list[Row]:
    """Rows of at most ``seq_len`` tokens: the prompt's end, then a reference or a continuation
    (at most half of ``seq_len``)."""
    if not samples:
        raise BrickworkError("recovery needs train samples of the functionality")
    tokenizer = dense.tokenizer
    targets = []
    for sample in samples:
        if sample.reference:
            targets.append(tokenizer(sample.reference, add_special_tokens=False)["input_ids"])
    if continuation_tokens > 0:
        targets += continuations(dense, samples, continuation_tokens, cache_dir)
    prompts = [s for s in samples if s.reference] + (samples if continuation_tokens > 0 else [])
    rows = []
    for sample, target in zip(prompts, targets, strict=True):
        target = target[: seq_len // 2]
        if target:
            context = prompt_tokens(tokenizer, sample.prompt, chat=True)
            rows.append((context[-(seq_len - len(target)) :], target))
    if not rows:
        raise BrickworkError("no distillation rows: the samples have no reference or continuation")
    return rows
