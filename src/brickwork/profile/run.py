"""profile_model: stream a dataset's prompts through the model and accumulate neuron statistics.

Batches are formed from the whole dataset (sorted by length) before sharding, so a shard runs
exactly the batches it would run in a single process: shards merge by addition into the same
profile. Under ``torchrun`` every rank takes its shard and the ranks all-reduce (gloo).
"""

from __future__ import annotations

import os
import sys
import time

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

import brickwork
from brickwork.data.sample import Sample, dataset_hash
from brickwork.errors import BrickworkError
from brickwork.models.load import LoadedModel
from brickwork.models.tokens import batches as cut
from brickwork.models.tokens import pad
from brickwork.profile.accumulate import Batch, add_batch_counts, add_layer
from brickwork.profile.capture import capture_activations, down_projection_norms
from brickwork.profile.store import ADDITIVE, Profile
from brickwork.training.distributed import join_torchrun

NORMALIZATION = "indicator / max indicator of the same token and layer"


def profile_model(
    loaded: LoadedModel,
    samples: list[Sample],
    *,
    batch_size: int = 8,
    max_tokens: int = 256,
    bins: int = 200,
    hist_stride: int = 2,
    shard: tuple[int, int] = (0, 1),
    seed: int = 0,
    command: str | None = None,
    progress: bool = True,
) -> Profile:
    """Profile every FFN neuron on ``samples`` (or on shard ``i`` of ``n`` of them)."""
    if not samples:
        raise BrickworkError("the dataset is empty: nothing to profile")
    shard = _distributed_shard(shard)
    model, family = loaded.model, loaded.family
    functionalities = sorted({s.functionality for s in samples})
    meta = _metadata(loaded, samples, functionalities, shard, max_tokens, batch_size, seed, command)
    meta["hist_stride"] = hist_stride
    profile = Profile.empty(
        len(samples),
        len(family.layer_modules(model)),
        family.d_ff(model.config),
        len(functionalities),
        bins,
        down_projection_norms(model, family),
        meta,
    )
    device = loaded.device  # statistics accumulate where the model runs, moved back once
    groups = torch.tensor([functionalities.index(s.functionality) for s in samples], device=device)
    tensors, state = {k: v.to(device) for k, v in profile.tensors.items()}, {}

    def callback(layer: int, activation: torch.Tensor) -> None:
        add_layer(tensors, layer, activation.to(device), state["batch"])

    started = time.perf_counter()
    batches = prompt_batches(loaded.tokenizer, samples, batch_size, max_tokens, shard)
    desc = "profiling" if shard[1] == 1 else f"profiling shard {shard[0] + 1} of {shard[1]}"
    bar = tqdm(batches, desc=desc, unit="batch", disable=not progress)
    with torch.no_grad(), capture_activations(model, family, callback):
        for batch in bar:
            rows, input_ids, attention, content = (t.to(device) for t in batch)
            state["batch"] = Batch(
                rows, groups[rows], content, len(functionalities), bins, hist_stride
            )
            add_batch_counts(tensors, state["batch"])
            # The base model skips the LM head: profiling needs no logits.
            model.base_model(input_ids=input_ids, attention_mask=attention, use_cache=False)
    profile.tensors.update((k, v.cpu()) for k, v in tensors.items())
    if dist.is_initialized():
        _all_reduce(profile)
    profile.meta["seconds"] = round(time.perf_counter() - started, 3)
    return profile


def prompt_batches(
    tokenizer, samples: list[Sample], batch_size: int, max_tokens: int, shard=(0, 1)
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Length-sorted, right-padded batches of this shard: (rows, input_ids, attention, content).

    ``content`` marks prompt tokens: not padding, not special tokens such as BOS.
    """
    index, count = shard
    if not 0 <= index < count:
        raise BrickworkError(f"shard must be i/n with 0 <= i < n, got {index}/{count}")
    encoded = _encode(tokenizer, samples, max_tokens)
    batches = _batches(encoded, batch_size)[index::count]
    pad_id = tokenizer.pad_token_id
    return [(torch.tensor(rows), *_pad([encoded[r] for r in rows], pad_id)) for rows in batches]


def _metadata(loaded, samples, functionalities, shard, max_tokens, batch_size, seed, command):
    return {
        "model_fingerprint": loaded.fingerprint,
        "model_source": loaded.source,
        "family": loaded.family.name,
        "dataset_hash": dataset_hash(samples),
        "sample_ids": [s.id for s in samples],
        "sample_functionalities": [s.functionality for s in samples],
        "sample_splits": [s.split for s in samples],
        "functionalities": functionalities,
        "max_tokens": max_tokens,
        "batch_size": batch_size,
        "normalization": NORMALIZATION,
        "seed": seed,
        "shard": f"{shard[0]}/{shard[1]}",
        "brickwork_version": brickwork.__version__,
        "command": command if command is not None else " ".join(sys.argv),
    }


def _encode(tokenizer, samples: list[Sample], max_tokens: int) -> list[tuple[list[int], list[int]]]:
    """Token ids and a content mask (1 for prompt tokens, 0 for special tokens) per sample."""
    encoded = tokenizer(
        [s.prompt for s in samples],
        truncation=True,
        max_length=max_tokens,
        return_special_tokens_mask=True,
    )
    pairs = []
    columns = zip(samples, encoded["input_ids"], encoded["special_tokens_mask"], strict=True)
    for sample, ids, special in columns:
        content = [1 - s for s in special]
        if not any(content):
            raise BrickworkError(f"sample {sample.id!r} has no prompt tokens")
        pairs.append((ids, content))
    return pairs


def _batches(encoded: list, batch_size: int) -> list[list[int]]:
    order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i][0]), i))
    return cut(order, batch_size)


def _pad(pairs: list, pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad a batch: input ids, attention mask and content mask, each [B, T]."""
    input_ids, attention = pad([ids for ids, _ in pairs], pad_id)
    return input_ids, attention, pad([mask for _, mask in pairs], 0)[0].bool()


def _distributed_shard(shard: tuple[int, int]) -> tuple[int, int]:
    """Under torchrun (WORLD_SIZE > 1), join the gloo group and take this rank's shard."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return shard
    if shard != (0, 1):
        raise BrickworkError("use either --shard or torchrun, not both")
    return join_torchrun("gloo")


def _all_reduce(profile: Profile) -> None:
    for key in ADDITIVE:
        dist.all_reduce(profile.tensors[key])
    profile.meta["shard"] = "0/1"
    profile.meta["world_size"] = dist.get_world_size()
