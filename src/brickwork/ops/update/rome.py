"""ROME-style editing of one FFN output projection (Meng et al. 2022), and its batch form.

For a fact (prompt, subject, new target) at layer L:

- key k*: the down projection's input at the subject's last token, averaged over the prompt
  behind a few neutral prefixes (``CONTEXTS``);
- key side: w = C⁻¹k* / (k*ᵀC⁻¹k*), C = E[k kᵀ] from a small corpus (or the identity), so the
  update ΔW = δ wᵀ maps k* to δ with the least change under C;
- value δ: optimised *through that update* (every token's down output gains (w·k)·δ, as in
  the edited model, not only the subject's) so that the model produces the new target after
  every prefix, with ROME's KL term on "{subject} is a" (keep what the subject *is*), a KL term
  on the fact's optional ``keep`` texts (other facts that must not change) and a norm penalty;
- a subject at position 0 of its prompt (one token, no BOS) is keyed in ``initial_layer``
  instead, with its own δ₀ optimised together with δ (``initial.py`` says why).

Several facts at once (``mode="exact"``) solve min ‖ΔW C^½‖ s.t. ΔW K = R, i.e.
ΔW = R (KᵀC⁻¹K)⁻¹ (C⁻¹K)ᵀ, which is ROME's update for one fact; ``mode="memit"`` uses MEMIT's
soft form ΔW = R Kᵀ (λC + KKᵀ)⁻¹ instead.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import asdict, dataclass, field

import torch
from torch.nn.functional import kl_div, log_softmax

from brickwork.bricks.brick import check_name
from brickwork.data.edits import EditFact
from brickwork.errors import BrickworkError, check_choice
from brickwork.models.hooks import hooks
from brickwork.models.load import LoadedModel
from brickwork.models.tokens import pad
from brickwork.ops.update.alphaedit import DEFAULT_ENERGY, DEFAULT_L2
from brickwork.ops.update.common import (
    CONTEXTS,
    down_module,
    encode,
    opens,
    subject_index,
    target_ids,
    through_update,
    token_inputs,
)
from brickwork.ops.update.covariance import inverse, layer_statistics
from brickwork.ops.update.initial import at_position_zero, initial_covariance, protected_keys
from brickwork.training.settings import check_at_least_one, check_positive

MODES = ("exact", "memit")


@dataclass(frozen=True)
class EditSettings:
    # layer: chosen by a sweep on the default model (docs/results/update.md)
    layer: int = field(default=8, metadata={"help": "FFN layer to edit"})
    steps: int = field(default=20, metadata={"help": "value optimisation steps"})
    lr: float = field(default=0.5, metadata={"help": "value optimisation learning rate"})
    kl_weight: float = field(
        default=0.0625, metadata={"help": "weight of the KL on '{subject} is a'"}
    )
    # keep_weight: on the fact's ``keep`` texts; 1 had no effect on dev facts
    keep_weight: float = field(default=100.0, metadata={"help": "weight of the keep KL"})
    norm_weight: float = field(default=0.5, metadata={"help": "penalty on |δ|² / |W k*|²"})
    clamp: float = field(default=4.0, metadata={"help": "|δ| <= clamp · |W k*|"})
    # Also map the key of the subject as the text's first token (no prefix) to the same δ: a
    # model without a BOS token keys a text-initial subject very differently ("France's ...").
    # Not for a one-token subject: that key is the attention sink's (``initial.py``).
    first_token_key: bool = field(
        default=False, metadata={"help": "also edit the subject's key as a text's first token"}
    )
    # Where a prompt's subject sits at position 0 (one token, no BOS), its key is edited in this
    # layer instead, with its own value δ₀, penalised and clamped as if the layer's output there
    # were ``initial_scale`` times its size (1 cost 0.7% suite PPL on a test fact, 0.1 did not
    # take), optimised for ``initial_steps`` (20 left 2 of 3 such test facts unedited;
    # docs/results/update.md).
    initial_layer: int = field(
        default=0, metadata={"help": "layer that edits a subject at position 0"}
    )
    initial_scale: float = field(
        default=0.25, metadata={"help": "size of that layer's output, for penalty and clamp"}
    )
    initial_steps: int = field(
        default=40, metadata={"help": "optimisation steps of a position-0 subject's value"}
    )
    stop_nll: float = field(
        default=0.05, metadata={"help": "stop once the new target's NLL is below this (ROME)"}
    )
    covariance: str = field(
        default="corpus",
        metadata={"help": "key covariance C", "choices": ("corpus", "identity")},
    )
    covariance_tokens: int = field(
        default=20_000, metadata={"help": "corpus tokens for the covariance"}
    )
    mode: str = field(
        default="exact",
        metadata={"help": "batch update: exact constraints or MEMIT's soft form", "choices": MODES},
    )
    memit_lambda: float = field(default=1.0e4, metadata={"help": "MEMIT: weight of C"})
    null_energy: float = field(
        default=DEFAULT_ENERGY,
        metadata={"help": "AlphaEdit: share of C's trace its null space may carry"},
    )
    null_l2: float = field(default=DEFAULT_L2, metadata={"help": "AlphaEdit: ridge on the update"})
    preserve_weight: float = field(
        default=1.0, metadata={"help": "AlphaEdit: weight of each preserved prompt's key"}
    )
    seed: int = field(default=0, metadata={"help": "random seed"})

    def check(self) -> None:
        if self.covariance not in ("corpus", "identity"):
            raise BrickworkError(
                f"covariance must be 'corpus' or 'identity', not {self.covariance!r}"
            )
        check_choice(self.mode, MODES, "mode")
        check_at_least_one(self, "steps", "initial_steps")
        check_positive(self, "lr", "initial_scale", "null_energy", "null_l2", "preserve_weight")

    def to_json(self) -> dict:
        return asdict(self)


def start_edit(
    settings: EditSettings | None, name: str, facts: list[EditFact], action: str
) -> EditSettings:
    """The checked settings (default ones for None) of an edit that makes brick ``name``."""
    settings = settings or EditSettings()
    settings.check()
    check_name(name)
    if not facts:
        raise BrickworkError(f"no facts to {action}")
    return settings


def _rows(tokenizer, prompt: str, subject: str, contexts=CONTEXTS):
    """Token ids of the prompt behind every prefix, and the subject's last-token positions."""
    texts = [c + prompt for c in contexts]
    return [encode(tokenizer, t) for t in texts], [
        subject_index(tokenizer, t, subject) for t in texts
    ]


def fact_key(
    loaded: LoadedModel, layer: int, prompt: str, subject: str, contexts: tuple[str, ...] = CONTEXTS
) -> torch.Tensor:
    """k*: the mean down-projection input [d_ff] at the subject's last token over the prefixes.
    A subject that opens the text is left out of the mean unless it is all there is: without a
    BOS token it sits at position 0, the attention sink, whose key is unlike any other."""
    if len(contexts) > 1 and opens(prompt, subject):
        contexts = tuple(c for c in contexts if c)
    rows, cols = _rows(loaded.tokenizer, prompt, subject, contexts)
    return token_inputs(loaded, down_module(loaded, layer), rows, cols).double().mean(0)


def covariance(
    loaded: LoadedModel, s: EditSettings, statistics: dict | None = None, layer: int | None = None
) -> torch.Tensor | None:
    """C for ``s`` at ``layer`` (default ``s.layer``): E[k kᵀ] of the (cached) corpus
    statistics, or None for the identity."""
    if s.covariance != "corpus":
        return None
    layer = s.layer if layer is None else layer
    return (statistics or layer_statistics(loaded, layer, s.covariance_tokens))["cov"]


def covariances(
    loaded: LoadedModel, facts: list[EditFact], s: EditSettings, cov: torch.Tensor | None = None
) -> dict[int, torch.Tensor | None]:
    """{layer: C} for ``facts``' update parts: ``s.layer``'s (``cov`` if given), and the initial
    layer's (``initial_covariance``) when a fact's subject sits at position 0 of its prompt."""
    covs = {s.layer: covariance(loaded, s) if cov is None else cov}
    if any(_needs_initial_part(loaded.tokenizer, f, s) for f in facts):
        own = covariance(loaded, s, layer=s.initial_layer)
        covs[s.initial_layer] = initial_covariance(loaded, s.initial_layer, own)
    return covs


def key_side(
    keys: torch.Tensor, cov: torch.Tensor | None, s: EditSettings, weights=None, solver=None
) -> torch.Tensor:
    """w [d_ff]: ΔW = δ wᵀ is the update that maps key i of ``keys`` [d_ff, n] to weights[i]·δ
    (every weight 1 unless given); ``solver`` (keys, residuals) -> (u, v) replaces ROME's."""
    weights = torch.ones(keys.shape[1]) if weights is None else torch.as_tensor(weights)
    if solver is not None:
        r, v = solver(keys, weights[None])
        return (r.double() @ v)[0]
    r, v = solve_update(keys, weights[None], cov, s.mode, s.memit_lambda)
    return (r @ v)[0]


@dataclass
class Part:
    """One layer's share of a fact's update: keys [d_ff, n] that map to ``weights``·δ, and δ."""

    layer: int
    keys: torch.Tensor
    weights: torch.Tensor
    w: torch.Tensor  # the key side (``key_side``)
    initial: bool = False  # keys a subject at position 0 (``initial.py``)
    delta: torch.Tensor | None = None

    def residuals(self) -> torch.Tensor:
        return self.delta[:, None] * self.weights.double()[None]


def fact_value(loaded: LoadedModel, fact: EditFact, s: EditSettings, parts: list[Part]) -> dict:
    """Optimise every part's δ [d_model] together (set in place) for one fact, and return the
    optimisation's record (losses, norms)."""
    tok, model = loaded.tokenizer, loaded.model
    new = target_ids(tok, fact.target_new)
    rows, cols = _rows(tok, fact.prompt, fact.subject)
    n_fact = len(rows)
    rows = [r + new[:-1] for r in rows]
    essence = f"{fact.subject} is a"
    rows.append(encode(tok, essence))
    keep = [encode(tok, text) for text in fact.keep]
    rows += keep
    ids, mask = pad(rows, tok.pad_token_id)
    last = len(rows[n_fact]) - 1
    downs = [down_module(loaded, part.layer) for part in parts]
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        with torch.no_grad():
            at: dict[int, torch.Tensor] = {}  # layer -> its down projection's output
            specs = [
                (d, "forward", lambda m, a, o, layer=p.layer: at.update({layer: o}))
                for d, p in zip(downs, parts, strict=True)
            ]
            with hooks(specs):
                logits = model(input_ids=ids, attention_mask=mask).logits
            base = log_softmax(logits[n_fact:].float(), -1)
            sizes = [_output_norm(at[p.layer], cols, p.initial, s) for p in parts]
        deltas = [torch.zeros(at[p.layer].shape[-1], requires_grad=True) for p in parts]
        optimizer = torch.optim.Adam(deltas, lr=s.lr)
        pos = torch.tensor(
            [(b, len(r) - j) for b, r in enumerate(rows[:n_fact]) for j in range(len(new), 0, -1)]
        )
        targets = torch.tensor(new * n_fact)
        history = []
        for _ in range(s.initial_steps if len(parts) > 1 else s.steps):
            with ExitStack() as stack:
                for down, part, delta in zip(downs, parts, deltas, strict=True):
                    stack.enter_context(through_update(down, part.w, delta))
                logits = model(input_ids=ids, attention_mask=mask).logits
            nll = torch.nn.functional.cross_entropy(logits[pos[:, 0], pos[:, 1]].float(), targets)
            now = log_softmax(logits[n_fact:].float(), -1)
            kl = kl_div(now[0, last], base[0, last], log_target=True, reduction="sum")
            norms = sum(d.norm() ** 2 / h**2 for d, h in zip(deltas, sizes, strict=True))
            loss = nll + s.kl_weight * kl + s.norm_weight * norms
            if keep:
                loss = loss + s.keep_weight * _mean_kl(now[1:], base[1:], mask[n_fact + 1 :])
            history.append(round(float(nll.detach()), 4))
            if history[-1] < s.stop_nll:
                break
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():  # ROME's clamp on the value's change
                for delta, h in zip(deltas, sizes, strict=True):
                    if delta.norm() > s.clamp * h:
                        delta.mul_(s.clamp * h / delta.norm())
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
    for part, delta in zip(parts, deltas, strict=True):
        part.delta = delta.detach().double()
    return {
        "nll": history,
        "delta_norm": [float(d.detach().norm()) for d in deltas],
        "output_norm": [float(h) for h in sizes],
    }


def _output_norm(
    outputs: torch.Tensor, cols: list[int], initial: bool, s: EditSettings
) -> torch.Tensor:
    """The size δ's penalty and clamp are relative to: ‖W k‖ at the subject, the mean over every
    row, or for an ``initial`` part ``s.initial_scale`` times that over the rows whose subject
    sits at position 0."""
    rows = [r for r, c in enumerate(cols) if not initial or c == 0]
    at = outputs[torch.tensor(rows), torch.tensor([cols[r] for r in rows])]
    return at.float().norm(dim=-1).mean() * (s.initial_scale if initial else 1.0)


def fact_update(
    loaded: LoadedModel,
    fact: EditFact,
    s: EditSettings,
    covs: dict[int, torch.Tensor | None],
    solver=None,
) -> tuple[list[Part], dict]:
    """One fact's update parts, with their values optimised, and the optimisation's record.
    ``covs`` maps a layer to its C (``covariance``; ``initial_covariance`` for the initial
    layer); ``solver`` replaces ROME's solve at ``s.layer`` (``methods.py``).

    The main part keys the subject's last token at ``s.layer``; a second key there is the
    subject as the text's first tokens, when the prompt opens with the subject (or with
    ``first_token_key``) and the subject is longer than one token. A one-token subject that
    opens the prompt sits at position 0: it gets a part at ``s.initial_layer`` instead (if that
    is below ``s.layer``), whose protected keys (other first tokens) map to no change."""
    tok, prompt, subject = loaded.tokenizer, fact.prompt, fact.subject
    keys = [fact_key(loaded, s.layer, prompt, subject)]
    sink = at_position_zero(tok, subject, subject) and s.initial_layer < s.layer
    if (s.first_token_key or opens(prompt, subject)) and not sink:
        keys.append(fact_key(loaded, s.layer, subject, subject, ("",)))
    main = torch.stack(keys, 1)
    ones = torch.ones(main.shape[1])
    parts = [Part(s.layer, main, ones, key_side(main, covs[s.layer], s, solver=solver))]
    if _needs_initial_part(tok, fact, s):
        c0 = covs[s.initial_layer]
        key = fact_key(loaded, s.initial_layer, subject, subject, ("",))
        k0 = torch.cat([key[:, None], protected_keys(loaded, s.initial_layer, key, subject, c0)], 1)
        weights = torch.zeros(k0.shape[1])
        weights[0] = 1.0
        parts.append(Part(s.initial_layer, k0, weights, key_side(k0, c0, s, weights), True))
    return parts, fact_value(loaded, fact, s, parts)


def _needs_initial_part(tokenizer, fact: EditFact, s: EditSettings) -> bool:
    """Whether the fact's subject sits at position 0 of its prompt, past the layer where first
    positions stop differing (``initial.py``)."""
    return s.initial_layer < s.layer and at_position_zero(tokenizer, fact.prompt, fact.subject)


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
    """ΔW = U @ V ([d_model, m] @ [m, d_ff]) for keys [d_ff, n] and residuals [d_model, n]; the
    m <= n factors are those of the keys with a non-zero residual."""
    k, r = keys.double(), residuals.double()
    if mode == "exact":
        ck = inverse(cov, k.shape[0]) @ k
        v = torch.linalg.pinv(k.T @ ck, hermitian=True) @ ck.T  # pinv: a batch may repeat keys
    else:
        c = torch.eye(k.shape[0], dtype=torch.float64) if cov is None else cov.double()
        v = torch.linalg.solve(lam * c + k @ k.T, k).T  # (λC + KKᵀ) symmetric
    used = r.abs().sum(0) > 0  # keys held in place add nothing to R V
    return r[:, used], v[used]
