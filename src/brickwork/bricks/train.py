"""Customized bricks (paper §2): task and knowledge LoRAs, and mean-difference steering vectors.

The base model stays frozen. A LoRA is injected into ``loaded.model`` with PEFT for the duration of
training and unloaded afterwards, so the model is left exactly as it was (same modules, same
weights, same ``requires_grad`` flags, same train/eval mode). Training is seeded (PEFT's LoRA
initialisation and the data order) inside ``torch.random.fork_rng``, so the caller's random state
is untouched. The loop is ``brickwork.training.fit``: held-out loss is measured before training,
every ``eval_every`` steps and at the end; the adapter state with the lowest one is kept.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace

import torch

from brickwork.bricks.augment import augment_statements
from brickwork.bricks.brick import Brick, check_name
from brickwork.bricks.plugins import check_steering_numbers, lora_brick_from_peft, steering_brick
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
from brickwork.models.layers import check_layers
from brickwork.models.load import LoadedModel
from brickwork.models.states import prompt_states
from brickwork.training import TrainSettings, fit, kl_to_reference, seeded
from brickwork.training.distributed import world


@dataclass(frozen=True)
class LoraSettings(TrainSettings):
    """A LoRA brick's settings: the training loop's (``TrainSettings``) and the adapter's."""

    rank: int = field(default=8, metadata={"help": "LoRA rank"})
    alpha: float | None = field(default=None, metadata={"help": "LoRA alpha (None: 2 x rank)"})
    dropout: float = field(default=0.0, metadata={"help": "LoRA dropout"})
    target_modules: str | list[str] = field(
        default="all-linear",  # PEFT: every linear layer but the LM head
        metadata={"help": "PEFT target modules: all-linear, or module names separated by commas"},
    )

    COUNTS = ("rank", "steps", "batch_size", "eval_every")


@dataclass(frozen=True)
class KnowledgeSettings(LoraSettings):
    """A knowledge brick's defaults: evaluated more often."""

    eval_every: int = 25


def train_task_brick(
    loaded: LoadedModel,
    train: list[Sample],
    heldout: list[Sample],
    name: str,
    purpose: str,
    *,
    settings: LoraSettings = LoraSettings(),
    progress: bool = True,
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
    settings: LoraSettings = KnowledgeSettings(),
    progress: bool = True,
    preserve: list[Sample] | None = None,
    preserve_weight: float = 1.0,
    context: str = "plain",
    preserve_plain: bool = True,
    augment: str = "rules",
) -> Brick:
    """A LoRA knowledge brick trained with the plain LM loss on fact statements or documents.

    ``augment="rules"`` (the default; "none" turns it off) adds, for every statement a rule
    parses (``bricks/augment.py``), its rewrites as documents and question -> answer pairs in both
    directions of the fact (trained as chat answers, loss on the answer); unparsed statements are
    kept as they are.
    Early stopping uses ``heldout`` documents when given, else the training documents themselves
    (the user's, not the augmented ones).
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
    augmented = augment_statements(documents, augment)
    rows = document_rows(loaded.tokenizer, augmented.documents, context)
    if augmented.pairs:
        rows += response_rows(loaded.tokenizer, augmented.samples())
    own = document_rows(loaded.tokenizer, heldout or documents, context)
    provenance = {
        "dataset_hash": _documents_hash(documents),
        "n_documents": len(documents),
        "context": context,
        "augment": augment,
        "n_parsed": augmented.parsed,
        "n_training_rows": len(rows),
        "early_stopping_on": "heldout" if heldout else "train",
    }
    if heldout:
        provenance["heldout_hash"] = _documents_hash(heldout)
    locality = None
    if preserve:
        provenance.update(
            preserve_hash=dataset_hash(preserve),
            preserve_weight=preserve_weight,
            preserve_plain=preserve_plain,
        )
        locality = (
            locality_rows(loaded.tokenizer, preserve, plain=preserve_plain),
            preserve_weight,
        )
    return _lora_brick(
        loaded,
        rows,
        lambda: rows_loss(loaded, own),
        name,
        purpose,
        "lora-knowledge",
        settings,
        provenance,
        progress,
        locality,
    )


def _kl_to_base(
    loaded: LoadedModel, peft_model, rows: list[Row], weight: float, settings: LoraSettings
) -> Callable[[int], torch.Tensor]:
    """weight x KL(base || adapted); the base is the same model with the adapter disabled."""

    def base(batch: list[Row]) -> torch.Tensor:
        with peft_model.disable_adapter():
            return target_logits(loaded, batch)[0]

    return kl_to_reference(rows, settings, weight, base, lambda b: target_logits(loaded, b)[0])


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
    locality: tuple[list[Row], float] | None = None,
) -> Brick:
    import brickwork

    if settings.alpha is None:
        settings = replace(settings, alpha=2.0 * settings.rank)
    settings.check()
    with _lora_session(loaded, settings) as peft_model:
        params = [p for p in peft_model.parameters() if p.requires_grad]
        kl = _kl_to_base(loaded, peft_model, *locality, settings) if locality else None
        result = fit(
            peft_model,
            params,
            rows,
            lambda batch: batch_loss(loaded, batch),
            evaluate,
            settings,
            regularizer=kl,
            desc="train brick",
            progress=progress,
            weight=lambda batch: sum(len(target) for _, target in batch),  # the loss's mean
        )
        parameters = {k: v for k, v in asdict(settings).items() if k != "seed"}
        provenance = {
            "method": method,
            "parameters": parameters,
            "seed": settings.seed,
            "processes": world()[1],
            **provenance,
            "base_model_source": loaded.source,
            "brickwork_version": brickwork.__version__,
        }
        return lora_brick_from_peft(
            peft_model,
            name,
            purpose,
            loaded.fingerprint,
            base_location=loaded.hf_location,
            provenance=provenance,
            metrics=result.metrics(),
        )


def _target_modules(targets: str | list[str]) -> str | list[str]:
    """PEFT's form of ``targets``: "all-linear" and a regex (a string PEFT full-matches against
    module names) as is, "q_proj,v_proj" as a list of names."""
    if isinstance(targets, str) and targets != "all-linear" and not _REGEX.search(targets):
        return [t.strip() for t in targets.split(",") if t.strip()]
    return targets


_REGEX = re.compile(r"[*+?()\[\]|^$\\]")  # a character that only a regex of module names has


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
        target_modules=_target_modules(settings.target_modules),
        task_type="CAUSAL_LM",
    )
    with seeded(settings.seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            try:
                peft_model = get_peft_model(model, config)
            except ValueError as exc:  # PEFT: no module matches the targets
                raise BrickworkError(f"LoRA target modules: {exc}") from None
        try:
            yield peft_model
        finally:
            peft_model.unload()  # puts the original modules back into loaded.model
            for name, param in model.named_parameters():
                param.requires_grad_(flags[name])
                param.grad = None
            model.train(was_training)


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
    check_steering_numbers(name, None, scale)
    if not positive or not negative:
        raise BrickworkError("steering needs at least one positive and one negative prompt")
    if any(not isinstance(t, str) or not t.strip() for t in positive + negative):
        raise BrickworkError("steering prompts must be non-empty strings")
    check_layers(layers, len(loaded.family.layer_modules(loaded.model)), "steering layer")
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
    """[len(layers), hidden]: the mean over ``texts`` of each layer's last-token output (one
    text at a time, summed in float64 in order)."""
    hidden = [i + 1 for i in layers]  # the output of decoder layer i is hidden state i + 1
    progress_name = "steering states" if progress else None
    states = prompt_states(
        loaded, texts, hidden, ("last",), final_norm=False, batch_size=1, progress=progress_name
    )
    total = None
    for row in torch.stack([states[(i, "last")] for i in hidden], dim=1).double():
        total = row if total is None else total + row
    return (total / len(texts)).float()
