"""Injecting knowledge as new customized bricks instead of editing weights.

- ``inject``: T-Patcher-style new FFN neurons (Huang et al. 2023), one per fact, in one layer.
  Neuron i reads the FFN input x (the normed residual stream) and adds a_i(x)·δ_i to the FFN
  output, with a_i(x) = relu((cos(x, k_i) - t_i) / (c_i - t_i)): k_i is the fact's FFN input at
  the subject's last token (averaged over prefixes), c_i its mean cosine there (so a_i ≈ 1 on
  the fact), and the threshold t_i sits above the highest cosine seen on the built-in corpus,
  so the neuron is silent elsewhere. δ_i is the same optimised value as ROME's (``fact_update``).
  Keys and thresholds are set in closed form, not trained; the base weights never change, and
  removing the brick (leaving ``attach_neurons``) restores the model exactly.
- ``plugin``: a small LoRA knowledge brick trained on the new statement behind the same
  prefixes (``brickwork.bricks.train.train_knowledge_brick``); attach it with ``bricks.attach``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.nn.functional import normalize, relu

from brickwork.bricks.brick import Brick
from brickwork.bricks.specs import DeltaSpec
from brickwork.data.edits import EditFact
from brickwork.errors import BrickworkError
from brickwork.models.hooks import hooks
from brickwork.models.load import LoadedModel
from brickwork.ops.update.common import (
    CONTEXTS,
    encode,
    ffn_module,
    subject_index,
    token_inputs,
)
from brickwork.ops.update.covariance import layer_statistics
from brickwork.ops.update.rome import EditSettings, covariance, covariances, fact_update, start_edit
from brickwork.ops.update.store import edit_provenance, facts_description

MARGIN = 0.05  # threshold = max(corpus cosine + MARGIN, MIN_THRESHOLD), below c_i
MIN_THRESHOLD = 0.5


def ffn_inputs(loaded: LoadedModel, layer: int, fact: EditFact) -> torch.Tensor:
    """The FFN input [len(CONTEXTS), d_model] at the subject's last token, behind each prefix."""
    texts = [c + fact.prompt for c in CONTEXTS]
    rows = [encode(loaded.tokenizer, t) for t in texts]
    cols = [subject_index(loaded.tokenizer, t, fact.subject) for t in texts]
    return token_inputs(loaded, ffn_module(loaded, layer), rows, cols).float()


def inject(
    loaded: LoadedModel,
    facts: list[EditFact],
    name: str,
    settings: EditSettings | None = None,
    values: torch.Tensor | None = None,
) -> Brick:
    """A brick of ``len(facts)`` new neurons for layer ``settings.layer``; ``values``
    [d_model, n] reuses δs already optimised for these facts at that layer (e.g. by ``edit``)."""
    settings = start_edit(settings, name, facts, "inject")
    started = time.perf_counter()
    statistics = layer_statistics(loaded, settings.layer, settings.covariance_tokens)
    corpus = normalize(statistics["inputs"].float(), dim=-1)
    cov = covariance(loaded, settings, statistics)
    given, keys, thresholds, scales, values = values, [], [], [], []
    covs = covariances(loaded, facts, settings, cov) if given is None else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        for i, fact in enumerate(facts):
            x = normalize(ffn_inputs(loaded, settings.layer, fact), dim=-1)
            key = normalize(x.mean(0), dim=0)
            on = float((x @ key).mean())
            off = float((corpus @ key).max())
            t = max(off + MARGIN, MIN_THRESHOLD)
            if on <= off:
                raise BrickworkError(
                    f"layer {settings.layer}: the key of {fact.prompt!r} is no more similar "
                    "to itself than to some corpus token, so a neuron cannot single it out; "
                    "try another layer"
                )
            if t >= on:
                t = (off + on) / 2  # the fact's own key is barely above the corpus: split
            keys.append(key)
            thresholds.append(t)
            scales.append(1.0 / (on - t))
            values.append(
                fact_update(loaded, fact, settings, covs)[0][0].delta.float()  # main part's δ
                if given is None
                else given[:, i].float()
            )
    tensors = {
        "keys": torch.stack(keys),
        "thresholds": torch.tensor(thresholds),
        "scales": torch.tensor(scales),
        "values": torch.stack(values, 1),
    }
    spec = DeltaSpec(
        update="inject",
        layer=settings.layer,
        neurons=len(facts),
        facts=[
            {"prompt": f.prompt, "subject": f.subject, "target_new": f.target_new} for f in facts
        ],
    )
    return Brick(
        name,
        "delta",
        "customized",
        "knowledge injection",
        loaded.fingerprint,
        tensors=tensors,
        spec=spec,
        provenance=edit_provenance(loaded, "inject-neurons", settings),
        metrics={"seconds": time.perf_counter() - started},
        description=facts_description(facts),
    )


@contextmanager
def attach_neurons(loaded: LoadedModel, brick: Brick) -> Iterator[torch.nn.Module]:
    """Run the model with the brick's neurons added to its layer's FFN; removed on exit."""
    if brick.kind != "delta" or brick.spec.update != "inject":
        raise BrickworkError(f"brick {brick.name!r} is not an injected-neurons brick")
    loaded.require_base(brick.base_model, f"brick {brick.name!r}")
    t = brick.tensors
    keys, values = t["keys"], t["values"]

    def hook(module, args, output):
        x = normalize(args[0].float(), dim=-1)
        act = relu((x @ keys.T - t["thresholds"]) * t["scales"])
        return output + (act @ values.T).to(output.dtype)

    with hooks([(ffn_module(loaded, brick.spec["layer"]), "forward", hook)]):
        yield loaded.model


def plugin(
    loaded: LoadedModel,
    facts: list[EditFact],
    name: str,
    *,
    steps: int = 30,
    rank: int = 4,
    lr: float = 3e-3,
    seed: int = 0,
    preserve: list | None = None,
) -> Brick:
    """A LoRA knowledge brick trained on each new statement behind the prefixes; ``preserve``
    (prompt/reference samples) adds a KL term towards the base model on them."""
    from brickwork.bricks.train import KnowledgeSettings, train_knowledge_brick

    documents = [f"{c}{f.prompt} {f.target_new}" for f in facts for c in CONTEXTS]
    return train_knowledge_brick(
        loaded,
        documents,
        name,
        "knowledge injection",
        settings=KnowledgeSettings(
            rank=rank, steps=steps, lr=lr, batch_size=len(CONTEXTS), seed=seed, eval_every=steps
        ),
        progress=False,
        preserve=preserve,
    )
