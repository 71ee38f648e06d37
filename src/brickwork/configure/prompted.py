"""Prompt-selected compact models (GRIFFIN): a dense prefill picks each layer's neurons.

The prompt runs densely once (all but its last token), which fills the KV cache and records every
layer's FFN activations; the neurons with the largest prompt scores are gathered into a compact
model, which then processes the last prompt token and generates. Prefill stays dense; decode runs
on the compact model.
"""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
from torch.nn.functional import cross_entropy

from brickwork.configure.compact import CompactModel, gather_ffn
from brickwork.configure.select import prompt_scores, prompt_selection
from brickwork.data.sample import Sample
from brickwork.models.load import LoadedModel
from brickwork.models.states import forward_with_states
from brickwork.models.tokens import prompt_tokens
from brickwork.profile.capture import capture_activations, record_activations
from brickwork.training.rng import seeded

MAX_PROMPT_TOKENS = 192  # as analysis/loss.py
MAX_REFERENCE_TOKENS = 64


@dataclass
class Prefill:
    input_ids: torch.Tensor  # [1, T] the whole prompt
    cache: object  # the KV cache of input_ids[:, :-1], from the dense model
    scores: (
        torch.Tensor | None
    )  # [L, D] GRIFFIN neuron scores (None: grown FFNs, unequal or experts)
    hidden_states: dict  # {hidden-state index: [1, T-1, hidden]} of the dense pass (the router's)


@contextmanager
def quiet_cache_warning():
    """transformers >= 5.x renames generate's ``past_key_values`` (still accepted) to ``cache``;
    the old name works on every 5.x release, so its deprecation warning is silenced here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*past_key_values.*", category=FutureWarning)
        yield


@dataclass(frozen=True)
class Decoding:
    """How an answer is generated: greedy by default, or sampled; chat template or raw text."""

    temperature: float = field(
        default=0.0, metadata={"help": "sampling temperature (0: greedy)", "minimum": 0.0}
    )
    top_p: float = field(
        default=1.0,
        metadata={
            "help": "nucleus sampling: keep the likeliest tokens up to this mass",
            "above": 0,
            "maximum": 1.0,
        },
    )
    repetition_penalty: float = field(
        default=1.0, metadata={"help": "penalty on repeated tokens (1: none)", "above": 0}
    )
    seed: int = field(default=0, metadata={"help": "seed of the sampling"})
    chat: bool = field(
        default=True,
        metadata={"help": "format the instruction with the chat template (--no-chat: raw text)"},
    )


@dataclass(frozen=True)
class Decoded:
    text: str
    new_tokens: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else float("inf")


def decode(
    model, tokenizer, prefill: Prefill, max_new_tokens: int, decoding: Decoding = Decoding()
) -> Decoded:
    """``model``'s answer continuing from ``prefill``'s cache: the new tokens, decoded and timed."""
    sampling = {"do_sample": False}
    if decoding.temperature > 0:
        sampling = {"do_sample": True, "temperature": decoding.temperature, "top_p": decoding.top_p}
    with torch.no_grad(), quiet_cache_warning(), seeded(decoding.seed):
        start = time.perf_counter()
        out = model.generate(
            input_ids=prefill.input_ids,
            attention_mask=torch.ones_like(prefill.input_ids),
            past_key_values=prefill.cache,
            max_new_tokens=max_new_tokens,
            repetition_penalty=decoding.repetition_penalty,
            pad_token_id=tokenizer.pad_token_id,
            **sampling,
        )
        seconds = time.perf_counter() - start
    new = out[0, prefill.input_ids.shape[1] :]
    return Decoded(tokenizer.decode(new, skip_special_tokens=True), len(new), seconds)


def greedy_decode(model, tokenizer, prefill: Prefill, max_new_tokens: int) -> str:
    """Greedy answer of ``model`` continuing from ``prefill``'s cache: the new tokens, decoded."""
    return decode(model, tokenizer, prefill, max_new_tokens).text


def dense_prefill(loaded: LoadedModel, input_ids: torch.Tensor) -> Prefill:
    """Run all but the last prompt token densely; keep the cache, scores and hidden states."""
    if input_ids.shape[1] < 2:
        input_ids = torch.cat([input_ids, input_ids], dim=1)  # a one-token prompt: repeat it
    recorded: dict[int, torch.Tensor] = {}
    every = list(range(len(loaded.family.layer_modules(loaded.model)) + 1))
    family = loaded.family
    plain = all(hasattr(family.ffn(m), family.down) for m in family.layer_modules(loaded.model))
    capture = capture_activations(loaded.model, family, recorded.__setitem__)
    with torch.no_grad(), capture if plain else nullcontext():
        states, out = forward_with_states(
            loaded, every, input_ids=input_ids[:, :-1], use_cache=True
        )
    activations = [recorded[i][0] for i in sorted(recorded)]
    # Scores need plain FFNs of one width; a grown (wider or upcycled) model runs dense only.
    one_width = plain and len({a.shape[-1] for a in activations}) == 1
    scores = prompt_scores(activations) if one_width else None
    return Prefill(input_ids, out.past_key_values, scores, states)


def prompt_compact(
    loaded: LoadedModel,
    prefill: Prefill,
    budget: float,
    prior: torch.Tensor | None = None,
    mix: float = 0.0,
    info: dict | None = None,
    allocation: str = "uniform",
) -> CompactModel:
    """The compact model for one prompt from its prefill scores."""
    kept = prompt_selection(prefill.scores, budget, prior, mix, allocation)
    return gather_ffn(loaded, kept, info=info)


def prompt_ids(loaded: LoadedModel, prompt: str, chat: bool = True) -> torch.Tensor:
    return torch.tensor(
        [prompt_tokens(loaded.tokenizer, prompt, chat=chat, max_tokens=MAX_PROMPT_TOKENS)]
    )


def prompted_losses(
    loaded: LoadedModel,
    samples: list[Sample],
    functionalities: list[str],
    budget: float,
    prior_for=None,
    mix: float = 0.0,
    allocation: str = "uniform",
) -> torch.Tensor:
    """Mean reference NLL per functionality [F] when every reference token is predicted by the
    compact model selected from that sample's prompt alone (the reference is never seen).

    ``prior_for(sample)`` may give a prior importance [L, D] to mix in (e.g. the routed one's).
    """
    losses = prompted_losses_at(
        loaded, samples, functionalities, [budget], prior_for, mix, allocation
    )
    return losses[budget]


def prompted_losses_at(
    loaded: LoadedModel,
    samples: list[Sample],
    functionalities: list[str],
    budgets: list[float],
    prior_for=None,
    mix: float = 0.0,
    allocation: str = "uniform",
    oracle: bool = False,
) -> dict[float, torch.Tensor]:
    """``prompted_losses`` for several budgets, sharing each sample's dense prefill.

    ``oracle=True`` scores the neurons on the prompt *and the reference* (which a deployed model
    cannot see): the ceiling of any selection that keeps one neuron set per sequence.
    """
    total = {b: torch.zeros(len(functionalities), dtype=torch.float64) for b in budgets}
    count = torch.zeros(len(functionalities), dtype=torch.float64)
    for sample in samples:
        ids = prompt_ids(loaded, sample.prompt)
        reference = loaded.tokenizer(sample.reference, add_special_tokens=False)["input_ids"]
        reference = torch.tensor([reference[:MAX_REFERENCE_TOKENS]])
        prefill = dense_prefill(loaded, ids)
        prior = prior_for(sample) if prior_for is not None else None
        tail = torch.cat([prefill.input_ids[:, -1:], reference[:, :-1]], dim=1)
        if oracle:
            whole = torch.cat([prefill.input_ids[:, :-1], tail], dim=1)
            prefill.scores = prompt_scores(
                [a[0] for a in record_activations(loaded.model, loaded.family, input_ids=whole)]
            )
        f = functionalities.index(sample.functionality)
        for budget in budgets:
            compact = prompt_compact(loaded, prefill, budget, prior, mix, allocation=allocation)
            with torch.no_grad(), quiet_cache_warning():
                logits = compact.loaded.model(
                    input_ids=tail, past_key_values=prefill.cache, use_cache=True
                ).logits[0]
            prefill.cache.crop(-tail.shape[1])  # back to the prompt's cache
            total[budget][f] += cross_entropy(logits.float(), reference[0], reduction="sum")
        count[f] += reference.shape[1]
    return {b: t / count.clamp_min(1) for b, t in total.items()}


def prompted_generate(
    loaded: LoadedModel,
    prompt: str,
    budget: float,
    max_new_tokens: int = 64,
    prior: torch.Tensor | None = None,
    mix: float = 0.0,
    info: dict | None = None,
) -> tuple[str, CompactModel]:
    """Greedy answer: dense prefill, then decode with the prompt-selected compact model."""
    ids = prompt_ids(loaded, prompt)
    prefill = dense_prefill(loaded, ids)
    compact = prompt_compact(loaded, prefill, budget, prior, mix, info)
    return greedy_decode(compact.loaded.model, loaded.tokenizer, prefill, max_new_tokens), compact
