"""Locating knowledge: knowledge neurons (Dai et al. 2022) and causal tracing (Meng et al. 2022).

- ``knowledge_neurons``: integrated gradients of P(first answer token) with respect to every FFN
  activation at the prompt's last token, layer by layer (the activation is scaled by α = 1/m..1,
  other layers untouched). Per prompt, neurons scoring above ``threshold`` × the prompt's best
  score are candidates; those found in at least ``share`` of the prompts (paraphrases) are kept.
  Returns a neuron-set brick whose ``scores`` tensor holds the mean attribution [layers, d_ff].
- ``causal_trace``: the subject's input embeddings get Gaussian noise (``noise`` × the embedding
  std); then, one layer at a time, the clean hidden state (the decoder layer's output) or the
  clean FFN output at the subject's last token is restored, and P(answer) is measured. A layer
  scores P_restored − P_corrupted. Returns a trace brick naming the best FFN layer, with scores.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from brickwork.bricks.brick import Brick, neuron_set_brick
from brickwork.bricks.specs import TraceSpec
from brickwork.errors import BrickworkError
from brickwork.models.hooks import hooks
from brickwork.models.load import LoadedModel
from brickwork.ops.update.common import (
    down_module,
    encode,
    read_inputs,
    subject_index,
    target_ids,
)


def _answer_token(loaded: LoadedModel, answer: str) -> int:
    return target_ids(loaded.tokenizer, answer)[0]


def integrated_gradients(
    loaded: LoadedModel, prompt: str, answer: str, steps: int = 16, layers: list[int] | None = None
) -> torch.Tensor:
    """Attribution [layers, d_ff] of every FFN neuron at the prompt's last token."""
    ids = torch.tensor([encode(loaded.tokenizer, prompt)]).repeat(steps, 1)
    token, n_layers = _answer_token(loaded, answer), len(loaded.family.layer_modules(loaded.model))
    alphas = torch.arange(1, steps + 1, dtype=torch.float32) / steps
    out = torch.zeros(n_layers, loaded.family.d_ff(loaded.model.config))
    flags = [p.requires_grad for p in loaded.model.parameters()]
    for p in loaded.model.parameters():
        p.requires_grad_(False)
    try:
        for layer in range(n_layers) if layers is None else layers:
            module, seen = down_module(loaded, layer), []
            with torch.no_grad(), read_inputs(module, seen):
                loaded.model(input_ids=ids[:1])
            base = seen[0][0, -1]
            scaled = (alphas[:, None] * base).requires_grad_()

            def replace(m, args, scaled=scaled):
                x = args[0].clone()
                x[:, -1] = scaled.to(x.dtype)
                return (x,)

            with hooks([(module, "forward_pre", replace)]):
                probs = loaded.model(input_ids=ids).logits[:, -1].float().softmax(-1)[:, token]
                probs.sum().backward()
            out[layer] = (base.float() * scaled.grad.mean(0)).detach()
    finally:
        for p, flag in zip(loaded.model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
    return out


def knowledge_neurons(
    loaded: LoadedModel,
    prompts: list[str],
    answer: str,
    name: str,
    steps: int = 16,
    threshold: float = 0.2,
    share: float = 0.5,
    layers: list[int] | None = None,
) -> Brick:
    """The neurons that carry ``answer`` for these prompts (paraphrases of one fact)."""
    if not prompts:
        raise BrickworkError("give at least one prompt")
    scores = torch.stack([integrated_gradients(loaded, p, answer, steps, layers) for p in prompts])
    best = scores.flatten(1).max(1).values.clamp_min(1e-12)
    chosen = scores > threshold * best[:, None, None]
    mask = chosen.float().mean(0) >= share
    mean = scores.mean(0)
    ranked = sorted(zip(*mask.nonzero(as_tuple=True), strict=True), key=lambda li: -float(mean[li]))
    top = [{"layer": int(a), "neuron": int(i), "score": float(mean[a, i])} for a, i in ranked]
    rule = f"IG > {threshold} x max in >= {share:.0%} of {len(prompts)} prompts ({steps} steps)"
    brick = neuron_set_brick(
        name,
        f"knowledge: {prompts[0]} {answer}",
        loaded.fingerprint,
        mask,
        rule,
        provenance={"method": "integrated-gradients", "prompts": prompts, "answer": answer},
    )
    brick.tensors["scores"] = mean
    brick.spec.ranking = top[:50]
    return brick


@contextmanager
def _noised(
    loaded: LoadedModel, cols: list[int], scale: float, generator: torch.Generator
) -> Iterator[None]:
    embed = loaded.model.get_input_embeddings()
    std = float(embed.weight.float().std())

    def hook(module, args, output):
        output = output.clone()
        noise = torch.randn(output.shape[0], len(cols), output.shape[-1], generator=generator)
        output[:, cols] = output[:, cols] + (scale * std * noise).to(output.dtype)
        return output

    with hooks([(embed, "forward", hook)]):
        yield


def _restore(col: int, clean: torch.Tensor):
    """A forward hook that puts ``clean`` back at position ``col`` of the module's output."""

    def hook(m, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        hidden = hidden.clone()
        hidden[:, col] = clean.to(hidden.dtype)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    return hook


def causal_trace(
    loaded: LoadedModel,
    prompt: str,
    subject: str,
    answer: str,
    name: str,
    noise: float = 3.0,
    samples: int = 8,
    seed: int = 0,
) -> Brick:
    """Layer scores for restoring the clean state at the subject's last token."""
    tok, family = loaded.tokenizer, loaded.family
    ids = torch.tensor([encode(tok, prompt)])
    last = subject_index(tok, prompt, subject)
    start = prompt.lower().rfind(subject.lower())
    offsets = tok(prompt, return_offsets_mapping=True)["offset_mapping"]
    cols = [i for i, (a, b) in enumerate(offsets) if b > a and b > start and i <= last]
    token = _answer_token(loaded, answer)
    layers = family.layer_modules(loaded.model)
    clean_h, clean_m = {}, {}
    specs = [
        (
            m,
            "forward",
            lambda m, a, o, i=i: clean_h.__setitem__(
                i, (o[0] if isinstance(o, tuple) else o)[0, last].detach()
            ),
        )
        for i, m in enumerate(layers)
    ]
    specs += [
        (family.ffn(m), "forward", lambda m, a, o, i=i: clean_m.__setitem__(i, o[0, last].detach()))
        for i, m in enumerate(layers)
    ]
    with hooks(specs), torch.no_grad():
        p_clean = float(loaded.model(input_ids=ids).logits[0, -1].softmax(-1)[token])
    batch = ids.repeat(samples, 1)

    def corrupted_p(module=None, clean=None) -> float:
        generator = torch.Generator().manual_seed(seed)  # the same noise for every restoration
        restore = [(module, "forward", _restore(last, clean))] if module is not None else []
        with hooks(restore), torch.no_grad(), _noised(loaded, cols, noise, generator):
            logits = loaded.model(input_ids=batch).logits[:, -1].float()
        return float(logits.softmax(-1)[:, token].mean())

    p_corrupt = corrupted_p()
    hidden = torch.tensor([corrupted_p(m, clean_h[i]) - p_corrupt for i, m in enumerate(layers)])
    mlp = torch.tensor(
        [corrupted_p(family.ffn(m), clean_m[i]) - p_corrupt for i, m in enumerate(layers)]
    )
    ranking = [int(i) for i in mlp.argsort(descending=True)]
    spec = TraceSpec(
        layer=ranking[0],
        ranking=ranking,
        p_clean=p_clean,
        p_corrupt=p_corrupt,
        restored="subject last token",
        noise=noise,
        samples=samples,
    )
    return Brick(
        name,
        "trace",
        "emergent",
        f"knowledge: {prompt} {answer}",
        loaded.fingerprint,
        tensors={"hidden_scores": hidden, "mlp_scores": mlp},
        spec=spec,
        provenance={
            "method": "causal-tracing",
            "prompt": prompt,
            "subject": subject,
            "answer": answer,
            "seed": seed,
        },
    )
