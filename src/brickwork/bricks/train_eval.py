"""Evaluation helpers for customized bricks: token losses, perplexity, greedy answers, accuracy,
chrF.

All of them run on whatever is attached to the model at the time (call them inside
``brickwork.bricks.attach`` to measure a brick), and none of them changes the model.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import replace
from typing import TypedDict

import torch
from sacrebleu.metrics import CHRF
from torch.nn.functional import cross_entropy
from tqdm import tqdm
from typing_extensions import Unpack

from brickwork.analysis.loss import (
    _batch,
    functionality_losses,
    prompt_reference,
    reference_batches,
    scored_logits,
)
from brickwork.data.sample import Sample
from brickwork.errors import BrickworkError, check_choice
from brickwork.models.load import LoadedModel
from brickwork.models.tokens import batches, greedy_generate, pad, prompt_prefix

# The caps analysis/loss.py uses for prompts and references; training rows use the same ones.
MAX_PROMPT_TOKENS = 192
MAX_TARGET_TOKENS = 64
MAX_DOCUMENT_TOKENS = 256
CHAT_CONTEXT_TOKENS = 16
LOCALITY_TOKENS = (16, 24)  # prompt and reference tokens of a locality row: few, to keep it cheap
CONTEXTS = ("plain", "chat")

Row = tuple[list[int], list[int]]  # (context tokens, target tokens whose NLL counts)


class GenerationOptions(TypedDict, total=False):
    """How ``generate_answers`` generates (its defaults apply): ``max_new_tokens`` per answer,
    prompts per ``batch_size``, ``progress`` bar."""

    max_new_tokens: int
    batch_size: int
    progress: bool


def response_rows(tokenizer, samples: list[Sample]) -> list[Row]:
    """Training rows: the prompt prefix (chat template if any), then reference + end-of-sequence."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    rows = [prompt_reference(tokenizer, s, MAX_PROMPT_TOKENS, MAX_TARGET_TOKENS) for s in samples]
    return [(prefix, target + eos) for prefix, target in rows]


def document_rows(tokenizer, documents: list[str], context: str = "plain") -> list[Row]:
    """LM rows: each document cut into windows whose tokens are all targets but the first.

    ``context="chat"`` puts each window after the end of a chat-formatted empty user turn (the
    last CHAT_CONTEXT_TOKENS tokens of ``prompt_prefix(tokenizer, "")``), so every document token
    is a target and is learnt in the position where an assistant answer starts. No end-of-sequence
    token is appended: a document is text, not a finished answer, and teaching the model to stop
    after every short statement would hurt unrelated text.
    """
    check_choice(context, CONTEXTS, "context")
    chat = prompt_prefix(tokenizer, "")[-CHAT_CONTEXT_TOKENS:] if context == "chat" else None
    rows = []
    for document in documents:
        if not isinstance(document, str) or not document.strip():
            raise BrickworkError("documents must be non-empty strings")
        ids = tokenizer(document, add_special_tokens=chat is None)["input_ids"]
        for start in range(0, len(ids), MAX_DOCUMENT_TOKENS):
            window = ids[start : start + MAX_DOCUMENT_TOKENS + 1]
            if chat is not None:
                rows.append((chat, window[:MAX_DOCUMENT_TOKENS]))
            elif len(window) > 1:
                rows.append((window[:1], window[1:]))
    if not rows:
        raise BrickworkError("the documents are too short: each needs at least two tokens")
    return rows


def locality_rows(tokenizer, samples: list[Sample], plain: bool = True) -> list[Row]:
    """Short rows for a locality constraint: the end of the chat-formatted prompt then the first
    reference tokens, and with ``plain`` also the prompt and reference as plain text (few tokens
    of each, to keep the extra compute per training step small)."""
    rows = []
    for sample in samples:
        rows.append(prompt_reference(tokenizer, sample, *LOCALITY_TOKENS))
        if plain:
            ids = tokenizer(f"{sample.prompt}\n{sample.reference}")["input_ids"]
            rows.append((ids[:1], ids[1 : 1 + sum(LOCALITY_TOKENS)]))
    return rows


def target_logits(loaded: LoadedModel, rows: list[Row]) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits [K, vocab] that predict the rows' target tokens, and those tokens [K]."""
    batch = _batch([(c, t, 0, 0) for c, t in rows], loaded.tokenizer.pad_token_id)
    return scored_logits(loaded, batch)


def batch_loss(loaded: LoadedModel, rows: list[Row]) -> torch.Tensor:
    """Mean target-token NLL of one batch of rows, with gradients if enabled."""
    logits, targets = target_logits(loaded, rows)
    return cross_entropy(logits.float(), targets)


def rows_loss(loaded: LoadedModel, rows: list[Row], batch_size: int = 8) -> float:
    """Mean target-token NLL over all rows (token-weighted)."""
    total, count = 0.0, 0
    ordered = sorted(rows, key=lambda r: len(r[0]) + len(r[1]))
    with torch.no_grad():
        for i in range(0, len(ordered), batch_size):
            chunk = ordered[i : i + batch_size]
            tokens = sum(len(t) for _, t in chunk)
            total += float(batch_loss(loaded, chunk)) * tokens
            count += tokens
    if not count:
        raise BrickworkError("nothing to evaluate: no target tokens")
    return total / count


def text_perplexity(loaded: LoadedModel, texts: list[str], batch_size: int = 8) -> float:
    """Perplexity of plain texts under the model as attached now (every token after the first)."""
    return math.exp(rows_loss(loaded, document_rows(loaded.tokenizer, texts), batch_size))


def response_loss(loaded: LoadedModel, samples: list[Sample], batch_size: int = 8) -> float:
    """Mean NLL of the samples' reference tokens given their prompts (analysis/loss.py's loss)."""
    if not samples:
        raise BrickworkError("no samples to evaluate")
    relabelled = [replace(s, functionality="all") for s in samples]
    batches = reference_batches(loaded.tokenizer, relabelled, ["all"], batch_size=batch_size)
    return float(functionality_losses(loaded, batches, 1)[0])


def generate_answers(
    loaded_or_model,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int = 24,
    batch_size: int = 8,
    progress: bool = False,
) -> list[str]:
    """Greedy answers to ``prompts`` (chat template when the tokenizer has one), left-padded."""
    model = loaded_or_model.model if isinstance(loaded_or_model, LoadedModel) else loaded_or_model
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    answers = []
    for chunk in tqdm(
        batches(prompts, batch_size), desc="generate", disable=not progress, leave=False
    ):
        input_ids, attention = pad([prompt_prefix(tokenizer, p) for p in chunk], pad_id, "left")
        width = input_ids.shape[1]
        device = next(model.parameters()).device
        input_ids, attention = input_ids.to(device), attention.to(device)
        out = greedy_generate(model, input_ids, max_new_tokens, pad_id, attention_mask=attention)
        answers += tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
    return answers


def normalize(text: str) -> str:
    """Lower case, accents and punctuation removed, single spaces."""
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def answer_matches(expected: str, generated: str) -> bool:
    """The normalised expected answer occurs in the normalised text, as whole words."""
    if not normalize(expected):
        return False
    return f" {normalize(expected)} " in f" {normalize(generated)} "


def answer_accuracy(
    loaded_or_model,
    tokenizer,
    questions: list[tuple[str, str]],
    **options: Unpack[GenerationOptions],
) -> float:
    """Fraction of (question, answer) pairs whose greedy answer (``generate_answers`` with the
    ``options``) contains the expected answer."""
    if not questions:
        raise BrickworkError("no questions to evaluate")
    answers = generate_answers(loaded_or_model, tokenizer, [q for q, _ in questions], **options)
    hits = [answer_matches(a, g) for (_, a), g in zip(questions, answers, strict=True)]
    return sum(hits) / len(hits)


def chrf(hypotheses: list[str], references: list[str]) -> float:
    """Corpus chrF (0-100) of one reference per hypothesis, computed by sacrebleu (the standard
    implementation: character 6-grams, beta 2, whitespace ignored), so it compares with the
    literature."""
    if len(hypotheses) != len(references):
        raise BrickworkError(f"chrF needs one reference per hypothesis, got {len(references)}")
    return float(CHRF().corpus_score(hypotheses, [references]).score)
