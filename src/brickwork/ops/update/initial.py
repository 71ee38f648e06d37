"""Keys of a subject at position 0, the first token of a text.

A tokenizer without a BOS token (SmolLM2's) puts a one-token subject that opens a text at
position 0. From layer 1 on, that position is the attention sink: its FFN key is nearly the
same whatever the token (mean cosine 0.90-1.00 between first tokens on SmolLM2), so an update
keyed there reaches the first position of every text. In layer 0 the key still depends on the
token, and only on it (position 0 attends to itself alone), so such a key is edited there
(``EditSettings.initial_layer``), under constraints that keep other first tokens as they are:

- C gains the covariance of every vocabulary token's position-0 key;
- the special tokens (a chat template's first token) and the ``PROTECTED_NEAREST`` tokens whose
  position-0 keys are closest to the subject's ("France" for "Germany") must map to no change.
"""

from __future__ import annotations

import torch

from brickwork.models.hooks import hooks
from brickwork.models.load import LoadedModel
from brickwork.ops.update.common import StopForward, down_module, forward_until_stop, opens
from brickwork.ops.update.covariance import inverse

PROTECTED_NEAREST = 32
_BATCH = 4096
_CACHE: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}


def at_position_zero(tokenizer, text: str, subject: str) -> bool:
    """Whether ``text`` opens with ``subject`` and the subject's last token is the text's first."""
    if not opens(text, subject):
        return False
    offsets = tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
    inside = [i for i, (a, b) in enumerate(offsets) if b > a and a < len(subject)]
    return bool(inside) and inside[-1] == 0


def vocabulary_keys(loaded: LoadedModel, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every token's down-projection input when it is a text's only token [vocab, d_ff], and
    their second moment E[k₀k₀ᵀ] [d_ff, d_ff] (kept in memory for one model and layer)."""
    cached = _CACHE.get((loaded.fingerprint, layer))
    if cached is not None:
        return cached
    keys: list[torch.Tensor] = []

    def grab(module, args):
        keys.append(args[0][:, 0].detach().float())
        raise StopForward

    vocab = loaded.model.get_input_embeddings().num_embeddings
    with hooks([(down_module(loaded, layer), "forward_pre", grab)]):
        for start in range(0, vocab, _BATCH):
            ids = torch.arange(start, min(vocab, start + _BATCH))[:, None]
            forward_until_stop(loaded, ids)
    k = torch.cat(keys)
    _CACHE.clear()  # one model's keys at a time: they take vocab x d_ff floats
    _CACHE[(loaded.fingerprint, layer)] = (k, (k.T @ k).double() / len(k))
    return _CACHE[(loaded.fingerprint, layer)]


def initial_covariance(loaded: LoadedModel, layer: int, cov: torch.Tensor | None) -> torch.Tensor:
    """C for position-0 keys: the corpus covariance (or the identity) plus E[k₀k₀ᵀ] over the
    vocabulary's position-0 keys."""
    moment = vocabulary_keys(loaded, layer)[1]
    base = torch.eye(len(moment), dtype=torch.float64) if cov is None else cov.double()
    return base + moment


def protected_keys(
    loaded: LoadedModel, layer: int, key: torch.Tensor, subject: str, cov: torch.Tensor
) -> torch.Tensor:
    """[d_ff, m]: position-0 keys an update of ``key`` must leave unchanged: the special tokens'
    and those of the ``PROTECTED_NEAREST`` tokens nearest to ``key`` under C⁻¹ (other than the
    subject's own spellings)."""
    tok, k = loaded.tokenizer, vocabulary_keys(loaded, layer)[0].double()
    c_inv = inverse(cov, k.shape[1])
    ck = k @ (c_inv @ key.double())
    norms = (k @ c_inv * k).sum(1).clamp_min(1e-12).sqrt()
    own = subject.strip().lower()
    nearest = [
        int(i)
        for i in (ck / norms).argsort(descending=True)[: 4 * PROTECTED_NEAREST + 8]
        if tok.decode([int(i)]).strip().lower() != own
    ][:PROTECTED_NEAREST]
    special = [i for i in sorted(set(tok.all_special_ids)) if i not in nearest]
    return k[nearest + special].T
