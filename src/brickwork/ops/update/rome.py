"""ROME-style editing of one FFN output projection (Meng et al. 2022), and its batch form.

For a fact (prompt, subject, new target) at layer L:

- key k*: the down projection's input at the subject's last token, averaged over the prompt
  behind a few neutral prefixes (``CONTEXTS``);
- key side: w = C⁻¹k* / (k*ᵀC⁻¹k*), C = E[k kᵀ] from a small corpus (or the identity), so the
  update ΔW = δ wᵀ maps k* to δ with the least change under C;
- value δ: optimised *through that update* (every token's down output gains (w·k)·δ, as in
  the edited model, not only the subject's) so that the model produces the new target after
  every prefix, with ROME's KL term on "{subject} is a" (keep what the subject *is*), a KL term
  on the fact's optional ``keep`` texts (other facts that must not change) and a norm penalty.

Several facts at once (``mode="exact"``) solve min ‖ΔW C^½‖ s.t. ΔW K = R, i.e.
ΔW = R (KᵀC⁻¹K)⁻¹ (C⁻¹K)ᵀ, which is ROME's update for one fact; ``mode="memit"`` uses MEMIT's
soft form ΔW = R Kᵀ (λC + KKᵀ)⁻¹ instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch.nn.functional import kl_div, log_softmax

from brickwork.errors import BrickworkError
from brickwork.models.load import LoadedModel
from brickwork.ops.update.common import (
    CONTEXTS,
    down_module,
    encode,
    pad,
    read_inputs,
    subject_index,
    target_ids,
    through_update,
)
from brickwork.ops.update.covariance import inverse, layer_statistics

MODES = ("exact", "memit")


@dataclass(frozen=True)
class EditSettings:
    layer: int = 8  # chosen by a sweep on the default model (docs/results/update.md)
    steps: int = 20
    lr: float = 0.5
    kl_weight: float = 0.0625
    keep_weight: float = 100.0  # on the fact's ``keep`` texts; 1 had no effect on dev facts
    norm_weight: float = 0.5  # penalty on ‖δ‖² / ‖W k*‖²
    clamp: float = 4.0  # ‖δ‖ <= clamp·‖W k*‖
    # Also map the key of the subject as the text's first token (no prefix) to the same δ: a
    # model without a BOS token keys a text-initial subject very differently ("France's ...").
    first_token_key: bool = False
    stop_nll: float = 0.05  # stop optimising once the new target's NLL is below this (ROME)
    covariance: str = "corpus"  # or "identity"
    covariance_tokens: int = 20_000
    mode: str = "exact"
    memit_lambda: float = 1.0e4
    seed: int = 0

    def check(self) -> None:
        if self.covariance not in ("corpus", "identity"):
            raise BrickworkError(
                f"covariance must be 'corpus' or 'identity', not {self.covariance!r}"
            )
        if self.mode not in MODES:
            raise BrickworkError(f"mode must be one of {MODES}, not {self.mode!r}")
        if self.steps < 1 or self.lr <= 0:
            raise BrickworkError("steps must be >= 1 and lr positive")

    def to_json(self) -> dict:
        return asdict(self)


def _rows(tokenizer, prompt: str, subject: str, contexts=CONTEXTS):
    """Token ids of the prompt behind every prefix, and the subject's last-token positions."""
    texts = [c + prompt for c in contexts]
    return [encode(tokenizer, t) for t in texts], [
        subject_index(tokenizer, t, subject) for t in texts
    ]


def opens(text: str, subject: str) -> bool:
    return text.lower().startswith(subject.lower())


def fact_key(
    loaded: LoadedModel, layer: int, prompt: str, subject: str, contexts: tuple[str, ...] = CONTEXTS
) -> torch.Tensor:
    """k*: the mean down-projection input [d_ff] at the subject's last token over the prefixes.
    A subject that opens the text is left out of the mean unless it is all there is: without a
    BOS token it sits at position 0, the attention sink, whose key is unlike any other."""
    if len(contexts) > 1 and opens(prompt, subject):
        contexts = tuple(c for c in contexts if c)
    rows, cols = _rows(loaded.tokenizer, prompt, subject, contexts)
    ids, mask = pad(rows, loaded.tokenizer.pad_token_id)
    seen: list[torch.Tensor] = []
    with torch.no_grad(), read_inputs(down_module(loaded, layer), seen):
        loaded.model(input_ids=ids, attention_mask=mask)
    return seen[0][torch.arange(len(rows)), torch.tensor(cols)].double().mean(0)


def covariance(
    loaded: LoadedModel, s: EditSettings, statistics: dict | None = None
) -> torch.Tensor | None:
    """C for ``s``: E[k kᵀ] of the (cached) corpus statistics, or None for the identity."""
    if s.covariance != "corpus":
        return None
    return (statistics or layer_statistics(loaded, s.layer, s.covariance_tokens))["cov"]


def key_side(keys: torch.Tensor, cov: torch.Tensor | None, s: EditSettings) -> torch.Tensor:
    """w [d_ff]: ΔW = δ wᵀ is the update that maps every one of ``keys`` [d_ff, n] to δ
    (the solve below with every residual equal to δ)."""
    _, v = solve_update(keys, torch.ones(1, keys.shape[1]), cov, s.mode, s.memit_lambda)
    return v.sum(0)


def fact_value(
    loaded: LoadedModel, fact: dict, s: EditSettings, w: torch.Tensor
) -> tuple[torch.Tensor, dict]:
    """δ [d_model] for one fact whose update's key side is ``w`` (``key_side``), and the
    optimisation's record (losses, norms)."""
    tok, model = loaded.tokenizer, loaded.model
    new = target_ids(tok, fact["target_new"])
    rows, cols = _rows(tok, fact["prompt"], fact["subject"])
    n_fact = len(rows)
    rows = [r + new[:-1] for r in rows]
    essence = f"{fact['subject']} is a"
    rows.append(encode(tok, essence))
    keep = [encode(tok, text) for text in fact.get("keep", ())]
    rows += keep
    ids, mask = pad(rows, tok.pad_token_id)
    last = len(rows[n_fact]) - 1
    down = down_module(loaded, layer=s.layer)
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        with torch.no_grad():
            outputs: list[torch.Tensor] = []
            handle = down.register_forward_hook(lambda m, a, o: outputs.append(o.detach()))
            try:
                logits = model(input_ids=ids, attention_mask=mask).logits
            finally:
                handle.remove()
            base = log_softmax(logits[n_fact:].float(), -1)
            h0 = outputs[0][torch.arange(n_fact), torch.tensor(cols)].float().norm(dim=-1).mean()
        delta = torch.zeros(outputs[0].shape[-1], requires_grad=True)
        optimizer = torch.optim.Adam([delta], lr=s.lr)
        pos = torch.tensor([(b, len(r) - j) for b, r in enumerate(rows[:n_fact])
                            for j in range(len(new), 0, -1)])  # fmt: skip
        targets = torch.tensor(new * n_fact)
        history = []
        for _ in range(s.steps):
            with through_update(down, w, delta):
                logits = model(input_ids=ids, attention_mask=mask).logits
            nll = torch.nn.functional.cross_entropy(logits[pos[:, 0], pos[:, 1]].float(), targets)
            now = log_softmax(logits[n_fact:].float(), -1)
            kl = kl_div(now[0, last], base[0, last], log_target=True, reduction="sum")
            loss = nll + s.kl_weight * kl + s.norm_weight * delta.norm() ** 2 / h0**2
            if keep:
                loss = loss + s.keep_weight * _mean_kl(now[1:], base[1:], mask[n_fact + 1 :])
            history.append(round(float(nll.detach()), 4))
            if history[-1] < s.stop_nll:
                break
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():  # ROME's clamp on the value's change
                limit = s.clamp * h0
                if delta.norm() > limit:
                    delta.mul_(limit / delta.norm())
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
    record = {"nll": history, "delta_norm": float(delta.detach().norm()), "output_norm": float(h0)}
    return delta.detach().double(), record


def fact_update(
    loaded: LoadedModel, fact: dict, s: EditSettings, cov: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """One fact's keys [d_ff, 1 or 2], its value δ [d_model] and the optimisation's record. The
    second key is the subject as the text's first token: always when the prompt opens with the
    subject, and with ``first_token_key`` for the paraphrases that do."""
    keys = [fact_key(loaded, s.layer, fact["prompt"], fact["subject"])]
    if s.first_token_key or opens(fact["prompt"], fact["subject"]):
        keys.append(fact_key(loaded, s.layer, fact["subject"], fact["subject"], ("",)))
    keys = torch.stack(keys, 1)
    delta, record = fact_value(loaded, fact, s, key_side(keys, cov, s))
    return keys, delta, record


def _mean_kl(now: torch.Tensor, base: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(base || now) per position, summed over the vocabulary, averaged over real tokens."""
    per_position = kl_div(now, base, log_target=True, reduction="none").sum(-1)
    return (per_position * mask).sum() / mask.sum()


def solve_update(
    keys: torch.Tensor,
    residuals: torch.Tensor,
    cov: torch.Tensor | None,
    mode: str = "exact",
    lam: float = 1.0e4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ΔW = U @ V ([d_model, n] @ [n, d_ff]) for keys [d_ff, n] and residuals [d_model, n]."""
    k, r = keys.double(), residuals.double()
    if mode == "exact":
        ck = inverse(cov, k.shape[0]) @ k
        v = torch.linalg.solve(k.T @ ck, ck.T)
    else:
        c = torch.eye(k.shape[0], dtype=torch.float64) if cov is None else cov.double()
        v = torch.linalg.solve(lam * c + k @ k.T, k).T  # (λC + KKᵀ) symmetric
    return r, v
