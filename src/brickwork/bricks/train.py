"""Customized bricks (paper §2): task and knowledge LoRAs, and mean-difference steering vectors.

The base model stays frozen. A LoRA is injected into ``loaded.model`` with PEFT for the duration of
training and unloaded afterwards, so the model is left exactly as it was (same modules, same
weights, same ``requires_grad`` flags, same train/eval mode). Training is seeded (PEFT's LoRA
initialisation and the data order) inside ``torch.random.fork_rng``, so the caller's random state
is untouched. Held-out loss is measured before training, every ``eval_every`` steps and at the
end; the adapter state with the lowest held-out loss is kept (early stopping).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import torch
from torch.nn.functional import kl_div, log_softmax
from tqdm import tqdm

from brickwork.bricks.brick import Brick, check_name
from brickwork.bricks.plugins import lora_brick_from_peft, steering_brick
from brickwork.bricks.train_eval import (
    Row,
    batch_loss,
    document_rows,
    locality_rows,
    response_loss,
    response_rows,
    rows_loss,
    target_logits,
)
from brickwork.data.sample import Sample, dataset_hash
from brickwork.errors import BrickworkError
from brickwork.models.load import LoadedModel


@dataclass(frozen=True)
class LoraSettings:
    rank: int = field(default=8, metadata={"help": "LoRA rank"})
    alpha: float = field(default=16.0, metadata={"help": "LoRA alpha (scale alpha / rank)"})
    dropout: float = field(default=0.0, metadata={"help": "LoRA dropout"})
    target_modules: str | list[str] = field(
        default="all-linear",  # PEFT: every linear layer but the LM head
        metadata={"help": "PEFT target modules"},
    )
    steps: int = field(default=200, metadata={"help": "training steps"})
    lr: float = field(default=5e-4, metadata={"help": "AdamW learning rate"})
    batch_size: int = field(default=8, metadata={"help": "samples per step"})
    seed: int = field(default=0, metadata={"help": "seed of the LoRA init and the data order"})
    eval_every: int = field(
        default=50, metadata={"help": "steps between held-out evaluations (best state kept)"}
    )
    max_seconds: float | None = field(
        default=None, metadata={"help": "stop training after this many seconds"}
    )

    def check(self) -> None:
        for name in ("rank", "steps", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise BrickworkError(f"{name} must be at least 1, not {getattr(self, name)}")
        if not self.lr > 0:
            raise BrickworkError(f"lr must be positive, not {self.lr}")


@dataclass
class TrainResult:
    loss_before: float
    loss_after: float
    best_step: int
    steps_run: int
    seconds: float
    train_loss_first: float
    train_loss_last: float


def train_task_brick(
    loaded: LoadedModel,
    train: list[Sample],
    heldout: list[Sample],
    name: str,
    purpose: str,
    *,
    rank: int = 8,
    steps: int = 200,
    lr: float = 5e-4,
    batch_size: int = 8,
    seed: int = 0,
    eval_every: int = 50,
    max_seconds: float | None = None,
    progress: bool = True,
    target_modules: str | list[str] = "all-linear",
) -> Brick:
    """A LoRA task brick trained on prompt -> reference pairs, loss on the response tokens only.

    The prompt is formatted as in analysis/loss.py (chat template when the tokenizer has one).
    ``brick.metrics`` holds the held-out response loss and perplexity before and after.
    """
    check_name(name)
    if not train:
        raise BrickworkError("no training samples: a task brick needs prompt/reference pairs")
    if not heldout:
        raise BrickworkError("no held-out samples: a task brick needs some to evaluate on")
    settings = LoraSettings(
        rank=rank,
        alpha=2.0 * rank,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        eval_every=eval_every,
        max_seconds=max_seconds,
        target_modules=target_modules,
    )
    rows = response_rows(loaded.tokenizer, train)
    response_rows(loaded.tokenizer, heldout)  # every held-out sample needs a reference too
    provenance = {
        "dataset_hash": dataset_hash(train),
        "heldout_hash": dataset_hash(heldout),
        "n_train": len(train),
        "n_heldout": len(heldout),
    }
    return _lora_brick(
        loaded,
        rows,
        lambda: response_loss(loaded, heldout),
        name,
        purpose,
        "lora-task",
        settings,
        provenance,
        progress,
    )


def train_knowledge_brick(
    loaded: LoadedModel,
    documents: list[str],
    name: str,
    purpose: str,
    *,
    heldout: list[str] | None = None,
    rank: int = 8,
    steps: int = 200,
    lr: float = 5e-4,
    batch_size: int = 8,
    seed: int = 0,
    eval_every: int = 25,
    max_seconds: float | None = None,
    progress: bool = True,
    target_modules: str | list[str] = "all-linear",
    preserve: list[Sample] | None = None,
    preserve_weight: float = 1.0,
    context: str = "plain",
    preserve_plain: bool = True,
) -> Brick:
    """A LoRA knowledge brick trained with the plain LM loss on fact statements or documents.

    Early stopping uses ``heldout`` documents when given, else the training documents themselves.
    ``context`` is "plain" (documents as raw text) or "chat" (each document where an assistant
    answer starts, see ``document_rows``), which helps questions asked in chat find the facts.
    With ``preserve`` (unrelated prompt/reference samples), each step also adds
    ``preserve_weight`` x KL(base || brick) on a batch of their reference tokens, a locality
    constraint that keeps the model's other behaviour (as in model editing's KL on unrelated
    prompts). Do not evaluate locality on the same samples. ``preserve_plain`` also keeps them as
    plain text (see ``locality_rows``), which keeps plain-text behaviour too.
    """
    check_name(name)
    if not documents:
        raise BrickworkError("no documents: a knowledge brick needs texts to learn")
    settings = LoraSettings(
        rank=rank,
        alpha=2.0 * rank,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        eval_every=eval_every,
        max_seconds=max_seconds,
        target_modules=target_modules,
    )
    rows = document_rows(loaded.tokenizer, documents, context)
    eval_rows = document_rows(loaded.tokenizer, heldout, context) if heldout else rows
    provenance = {
        "dataset_hash": _documents_hash(documents),
        "n_documents": len(documents),
        "context": context,
        "early_stopping_on": "heldout" if heldout else "train",
    }
    if heldout:
        provenance["heldout_hash"] = _documents_hash(heldout)
    regularizer = None
    if preserve:
        provenance.update(
            preserve_hash=dataset_hash(preserve),
            preserve_weight=preserve_weight,
            preserve_plain=preserve_plain,
        )
        locality = locality_rows(loaded.tokenizer, preserve, plain=preserve_plain)
        regularizer = _kl_regularizer(loaded, locality, settings, preserve_weight)
    return _lora_brick(
        loaded,
        rows,
        lambda: rows_loss(loaded, eval_rows),
        name,
        purpose,
        "lora-knowledge",
        settings,
        provenance,
        progress,
        regularizer,
    )


def _kl_regularizer(
    loaded: LoadedModel, rows: list[Row], s: LoraSettings, weight: float
) -> Callable[[torch.nn.Module, int], torch.Tensor]:
    """weight x KL(base || adapted) on the next (half-size) batch of ``rows``' target tokens."""
    order = batch_order(len(rows), max(1, s.batch_size // 2), s.steps, s.seed + 1)

    def regularize(peft_model: torch.nn.Module, step: int) -> torch.Tensor:
        batch = [rows[i] for i in order[step - 1]]
        with torch.no_grad(), peft_model.disable_adapter():
            base = log_softmax(target_logits(loaded, batch)[0].float(), dim=-1)
        adapted = log_softmax(target_logits(loaded, batch)[0].float(), dim=-1)
        return weight * kl_div(adapted, base, log_target=True, reduction="batchmean")

    return regularize


def _documents_hash(documents: list[str]) -> str:
    return dataset_hash([Sample(str(i), d, "knowledge") for i, d in enumerate(documents)])


def _lora_brick(
    loaded: LoadedModel,
    rows: list[Row],
    evaluate: Callable[[], float],
    name: str,
    purpose: str,
    method: str,
    settings: LoraSettings,
    provenance: dict,
    progress: bool,
    regularizer: Callable[[torch.nn.Module, int], torch.Tensor] | None = None,
) -> Brick:
    import brickwork

    settings.check()
    with _lora_session(loaded, settings) as peft_model:
        result = _train_loop(loaded, peft_model, rows, evaluate, settings, progress, regularizer)
        metrics = {
            "heldout_loss_before": result.loss_before,
            "heldout_loss_after": result.loss_after,
            "heldout_ppl_before": math.exp(result.loss_before),
            "heldout_ppl_after": math.exp(result.loss_after),
            "best_step": result.best_step,
            "steps_run": result.steps_run,
            "train_seconds": result.seconds,
            "train_loss_first": result.train_loss_first,
            "train_loss_last": result.train_loss_last,
        }
        parameters = {k: v for k, v in asdict(settings).items() if k != "seed"}
        provenance = {
            "method": method,
            "parameters": parameters,
            "seed": settings.seed,
            **provenance,
            "base_model_source": loaded.source,
            "brickwork_version": brickwork.__version__,
        }
        return lora_brick_from_peft(
            peft_model, name, purpose, loaded.fingerprint, provenance=provenance, metrics=metrics
        )


@contextmanager
def _lora_session(loaded: LoadedModel, settings: LoraSettings) -> Iterator[torch.nn.Module]:
    """Inject a fresh, seeded LoRA into ``loaded.model``; on exit remove it and restore the rest."""
    from peft import LoraConfig, get_peft_model

    model = loaded.model
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    was_training = model.training
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        task_type="CAUSAL_LM",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            peft_model = get_peft_model(model, config)
        try:
            yield peft_model
        finally:
            peft_model.unload()  # puts the original modules back into loaded.model
            for name, param in model.named_parameters():
                param.requires_grad_(flags[name])
                param.grad = None
            model.train(was_training)


def _train_loop(
    loaded: LoadedModel,
    peft_model: torch.nn.Module,
    rows: list[Row],
    evaluate: Callable[[], float],
    s: LoraSettings,
    progress: bool,
    regularizer: Callable[[torch.nn.Module, int], torch.Tensor] | None = None,
) -> TrainResult:
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=s.lr, weight_decay=0.0)
    warmup = max(1, s.steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: min((i + 1) / warmup, max(0.0, (s.steps - i) / (s.steps - warmup + 1)))
    )
    batches = batch_order(len(rows), s.batch_size, s.steps, s.seed)
    best = BestState(_evaluate(peft_model, evaluate), 0, params)
    before, losses, started, step = best.loss, [], time.perf_counter(), 0
    bar = tqdm(batches, desc="train brick", disable=not progress)
    for step, indices in enumerate(bar, start=1):
        peft_model.train()
        loss = batch_loss(loaded, [rows[i] for i in indices])
        optimizer.zero_grad(set_to_none=True)
        total = loss + regularizer(peft_model, step) if regularizer else loss
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        timed_out = s.max_seconds is not None and time.perf_counter() - started > s.max_seconds
        if step % s.eval_every == 0 or step == s.steps or timed_out:
            best.offer(_evaluate(peft_model, evaluate), step, params)
            bar.set_postfix(train=f"{losses[-1]:.3f}", heldout=f"{best.loss:.3f}")
        if timed_out:
            break
    bar.close()
    best.restore(params)
    first, last = (losses[0], losses[-1]) if losses else (math.nan, math.nan)
    seconds = time.perf_counter() - started
    return TrainResult(before, best.loss, best.step, step, seconds, first, last)


def _evaluate(peft_model: torch.nn.Module, evaluate: Callable[[], float]) -> float:
    peft_model.eval()
    return evaluate()


def batch_order(n: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """Indices for each step: seeded reshuffled epochs, cut into batches of ``batch_size``."""
    generator = torch.Generator().manual_seed(seed)
    stream: list[int] = []
    while len(stream) < steps * batch_size:
        stream += torch.randperm(n, generator=generator).tolist()
    return [stream[i * batch_size : (i + 1) * batch_size] for i in range(steps)]


class BestState:
    """The lowest held-out loss so far, its step and a copy of the adapter weights then."""

    def __init__(self, loss: float, step: int, params: list[torch.Tensor]) -> None:
        self.loss, self.step = loss, step
        self.state = [p.detach().clone() for p in params]

    def offer(self, loss: float, step: int, params: list[torch.Tensor]) -> None:
        if loss < self.loss:
            self.loss, self.step = loss, step
            self.state = [p.detach().clone() for p in params]

    def restore(self, params: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for param, saved in zip(params, self.state, strict=True):
                param.copy_(saved)


def build_steering_brick(
    loaded: LoadedModel,
    positive: list[str],
    negative: list[str],
    layers: list[int],
    name: str,
    purpose: str,
    scale: float = 1.0,
    *,
    progress: bool = True,
) -> Brick:
    """Mean-difference steering (Rimsky et al.'s CAA, Turner et al.'s ActAdd).

    For each chosen decoder layer the vector is mean(h_pos) - mean(h_neg), where h is the layer's
    output hidden state at the **last token** of each prompt (the plain text, no chat template),
    the position that summarises the prompt in a causal model. The hidden states are read with
    forward hooks on the decoder layers, i.e. exactly where ``attach`` adds the vector (the last
    entry of ``output_hidden_states`` is after the final norm, so it is not used).
    """
    check_name(name)
    if not positive or not negative:
        raise BrickworkError("steering needs at least one positive and one negative prompt")
    if any(not isinstance(t, str) or not t.strip() for t in positive + negative):
        raise BrickworkError("steering prompts must be non-empty strings")
    n_layers = len(loaded.family.layer_modules(loaded.model))
    bad = [i for i in layers if not 0 <= i < n_layers]
    if not layers or bad:
        raise BrickworkError(f"layers must be a non-empty list of 0..{n_layers - 1}, not {layers}")
    pos = _mean_last_token_states(loaded, positive, layers, progress)
    neg = _mean_last_token_states(loaded, negative, layers, progress)
    provenance = {
        "method": "mean-difference steering",
        "position": "last prompt token",
        "n_positive": len(positive),
        "n_negative": len(negative),
        "dataset_hash": _documents_hash(positive + ["\0"] + negative),
    }
    metrics = {"vector_norms": (pos - neg).norm(dim=1).tolist()}
    return steering_brick(
        name,
        purpose,
        loaded.fingerprint,
        pos - neg,
        layers,
        scale=scale,
        provenance=provenance,
        metrics=metrics,
    )


def _mean_last_token_states(
    loaded: LoadedModel, texts: list[str], layers: list[int], progress: bool
) -> torch.Tensor:
    """[len(layers), hidden]: the mean over ``texts`` of each layer's last-token output."""
    modules = loaded.family.layer_modules(loaded.model)
    captured: dict[int, torch.Tensor] = {}

    def hook_for(row: int):
        def hook(module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            captured[row] = hidden[0, -1].detach().double()

        return hook

    handles = [modules[i].register_forward_hook(hook_for(r)) for r, i in enumerate(layers)]
    device, total = next(loaded.model.parameters()).device, None
    try:
        for text in tqdm(texts, desc="steering states", disable=not progress, leave=False):
            ids = loaded.tokenizer(text, return_tensors="pt")["input_ids"].to(device)
            with torch.no_grad():
                loaded.model(input_ids=ids, use_cache=False)
            states = torch.stack([captured[r] for r in range(len(layers))])
            total = states if total is None else total + states
    finally:
        for handle in handles:
            handle.remove()
    return (total / len(texts)).float()
