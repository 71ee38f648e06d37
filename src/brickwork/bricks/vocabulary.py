"""Output-vocabulary bricks: a per-functionality slice of the LM head, with a safe screen.

Attached, the model's output embedding becomes a ``SlicedHead``. For final hidden states h it
computes the slice's logits exactly (float32) and screens every other token with a low-precision
copy q_v of its row (``screen="bf16"``, or ``"int8"``: per-row int8 with a bfloat16 scale, half
the bytes, through torch's ``_weight_int8pack_mm`` CPU kernel), c_v ~ w_v·h computed from
bf16(h) with float32 accumulation and a bfloat16 result (the tests check the bound against
float64), whose error is bounded per row:

    |w_v·h - c_v| <= ||w_v - q_v||·||h|| + ||q_v||·||h - bf16(h)||
                     + 2^-7·|c_v| + d·2^-23·||q_v||·||bf16(h)||

Every outside token whose upper bound reaches the best slice logit (a token that could win) is
recomputed exactly, so the argmax, and greedy decoding, equals the full head's. The other logits
are the screened values (within the bound), so perplexity stays measurable. ``stats`` counts how
often an outside token had to be recomputed ("fallback") and how often the simpler bound
||h||·max_v ||w_v|| (no screen) would have had to fall back to the full head.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from brickwork.bricks.brick import Brick
from brickwork.bricks.specs import VocabularySpec
from brickwork.errors import BrickworkError
from brickwork.models.load import LoadedModel
from brickwork.models.tokens import greedy_generate, prompt_tokens

SCREENS = ("bf16", "int8")


def _int8_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row int8 codes and bfloat16 scales; q_v = codes_v · scale_v."""
    scale = (weight.abs().amax(dim=1) / 127).clamp_min(1e-30).bfloat16()
    codes = (weight / scale.float()[:, None]).round().clamp(-127, 127).to(torch.int8)
    return codes, scale


class SlicedHead(nn.Module):
    def __init__(self, head: nn.Module, tokens: torch.Tensor, screen: str = "bf16"):
        super().__init__()
        if screen not in SCREENS:
            raise BrickworkError(f"unknown screen {screen!r}; known: {', '.join(SCREENS)}")
        weight = head.weight.detach()
        self.vocab, self.dim = weight.shape
        inside = torch.zeros(self.vocab, dtype=torch.bool)
        inside[tokens] = True
        self.inside, self.outside = inside.nonzero().squeeze(1), (~inside).nonzero().squeeze(1)
        self.weight_ref, self.bias = weight, getattr(head, "bias", None)
        self.rows = weight[self.inside].contiguous()
        if screen == "int8":  # every row, so the logits need no scatter of the outside
            self.screen, self.scale = _int8_rows(weight)
            copy = self.screen.float() * self.scale.float()[:, None]
        else:
            self.screen, self.scale = weight.bfloat16(), None
            copy = self.screen.float()
        self.screen_norm = copy.norm(dim=1)
        self.round_norm = (weight - copy).norm(dim=1)
        del copy
        out_norms = weight[self.outside].norm(dim=1)
        self.out_max_norm = float(out_norms.max()) if len(out_norms) else 0.0
        self.stats = {"positions": 0, "fallback": 0, "recomputed": 0, "norm_bound_fallback": 0}

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        shape = hidden.shape[:-1]
        h = hidden.reshape(-1, self.dim)
        exact = h @ self.rows.T  # [N, |S|]
        hb = h.bfloat16()
        if self.scale is None:
            c = (hb @ self.screen.T).float()  # [N, V]
        else:
            c = torch.ops.aten._weight_int8pack_mm(hb, self.screen, self.scale).float()
        h_norm, hb_f = h.norm(dim=1, keepdim=True), hb.float()
        h_round = (h - hb_f).norm(dim=1, keepdim=True)
        h_round += self.dim * 2**-23 * hb_f.norm(dim=1, keepdim=True)
        upper = c.abs().mul_(2**-7).add_(c)  # c + margin (the bound above), in place
        upper.addcmul_(self.round_norm, h_norm).addcmul_(self.screen_norm, h_round)
        upper[:, self.inside] = -torch.inf
        best = exact.max(dim=1, keepdim=True).values
        hit = upper >= best  # [N, V]: outside tokens that could beat the slice
        could_win = hit.any(dim=0).nonzero().squeeze(1)
        if len(could_win):  # recompute those outside tokens exactly
            c[:, could_win] = h @ self.weight_ref[could_win].T
        self._count(h_norm, best, hit, len(could_win))
        c[:, self.inside] = exact
        if self.bias is not None:
            c = c + self.bias
        return c.reshape(*shape, self.vocab)

    def _count(self, h_norm, best, hit, recomputed: int) -> None:
        self.stats["positions"] += best.shape[0]
        self.stats["fallback"] += int(hit.any(dim=1).sum())
        self.stats["recomputed"] += recomputed
        self.stats["norm_bound_fallback"] += int((h_norm * self.out_max_norm >= best).sum())


@contextmanager
def sliced_head(
    model: nn.Module, tokens: torch.Tensor, screen: str = "bf16"
) -> Iterator[SlicedHead]:
    """Swap ``model``'s output embedding for a ``SlicedHead`` over ``tokens`` while inside."""
    original = model.get_output_embeddings()
    head = SlicedHead(original, tokens, screen)
    model.set_output_embeddings(head)
    try:
        yield head
    finally:
        model.set_output_embeddings(original)


@contextmanager
def attach_vocabulary(loaded: LoadedModel, bricks: list[Brick], mode: str) -> Iterator[None]:
    """The union of the bricks' token slices as the model's head while inside."""
    tokens = torch.cat([b.tensors["tokens"] for b in bricks]).unique()
    with sliced_head(loaded.model, tokens):
        yield None


def vocabulary_brick(
    name: str, purpose: str, base_model: str, tokens: torch.Tensor, vocab_size: int, rule: str
) -> Brick:
    tokens = tokens.long().unique()
    spec = VocabularySpec(vocab_size=vocab_size, n_tokens=len(tokens), rule=rule)
    return Brick(name, "vocabulary", "emergent", purpose, base_model, {"tokens": tokens}, spec)


def collect_vocabulary(
    loaded: LoadedModel, prompts: list[str], references: list[str], new_tokens: int = 48
) -> torch.Tensor:
    """Token ids of the prompts, references and the dense model's greedy continuations."""
    tok, seen = loaded.tokenizer, set()
    for prompt, reference in zip(prompts, references, strict=True):
        ids = prompt_tokens(tok, prompt, chat=True)
        seen.update(ids)
        seen.update(tok(reference, add_special_tokens=False)["input_ids"])
        if new_tokens:
            out = greedy_generate(loaded.model, torch.tensor([ids]), new_tokens, tok.pad_token_id)
            seen.update(out[0, len(ids) :].tolist())
    seen.update(i for i in (tok.eos_token_id, tok.pad_token_id, tok.bos_token_id) if i is not None)
    return torch.tensor(sorted(seen))


def frequent_tokens(loaded: LoadedModel, texts: list[str], top: int) -> torch.Tensor:
    """The ``top`` most frequent token ids over ``texts``."""
    counts: dict[int, int] = {}
    for text in texts:
        for i in loaded.tokenizer(text, add_special_tokens=False)["input_ids"]:
            counts[i] = counts.get(i, 0) + 1
    ranked = sorted(counts, key=lambda i: -counts[i])[:top]
    return torch.tensor(sorted(ranked), dtype=torch.long)
