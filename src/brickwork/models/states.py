"""The one reader of prompt hidden states: ``prompt_states`` (layers, pooling, format as options).

Layer indices are those of transformers' ``output_hidden_states``: 0 is the input of the first
decoder layer, i the output of decoder layer i-1, and L (the number of layers, or -1) the final
state after the model's last norm. With ``final_norm=False``, L is instead the last decoder
layer's own output, where a steering vector is added.

The states are read with forward hooks added and removed through ``models.hooks``, so the model
is left exactly as it was. Asking transformers (5.x) for ``output_hidden_states=True`` instead
gives the same tensors, but its first such call installs capture hooks on every decoder layer
that stay on the model for good; they are inert outside such calls (outputs do not change), yet
the modules' hook dictionaries are no longer empty.
"""

from __future__ import annotations

import torch
from tqdm import tqdm

from brickwork.errors import BrickworkError
from brickwork.models.hooks import hooks
from brickwork.models.layers import check_layers
from brickwork.models.load import LoadedModel
from brickwork.models.tokens import batches, pad, prompt_tokens

POOLINGS = ("mean", "last")


def layer_states(
    loaded: LoadedModel,
    input_ids: torch.Tensor,
    mask: torch.Tensor,
    layers: list[int],
    final_norm: bool = True,
) -> dict[int, torch.Tensor]:
    """{layer index: [B, T, hidden]} from one forward pass of the base model (no gradients)."""
    with torch.no_grad():
        return forward_with_states(
            loaded, layers, final_norm, input_ids=input_ids, attention_mask=mask, use_cache=False
        )[0]


def forward_with_states(
    loaded: LoadedModel, layers: list[int], final_norm: bool = True, **inputs
) -> tuple[dict[int, torch.Tensor], object]:
    """Call the base model on ``inputs``; return {layer index: [B, T, hidden]} and its output
    (its KV cache, when asked for with ``use_cache``)."""
    modules = loaded.family.layer_modules(loaded.model)
    n = len(modules)
    check_layers(layers, n, hidden_states=True)
    wanted = {i: i % (n + 1) for i in layers}
    captured: dict[int, torch.Tensor] = {}

    def keep(index: int, value) -> None:
        captured[index] = (value[0] if isinstance(value, tuple) else value).detach()

    specs = []
    if 0 in wanted.values():
        first = lambda m, args, kwargs: keep(0, args[0] if args else kwargs["hidden_states"])  # noqa: E731
        specs.append((modules[0], "forward_pre_kwargs", first))
    hooked = {v for v in wanted.values() if 0 < v < n or (v == n and not final_norm)}
    for index in hooked:
        specs.append((modules[index - 1], "forward", lambda m, a, out, i=index: keep(i, out)))
    with hooks(specs):
        output = loaded.model.base_model(**inputs)
    if final_norm:
        captured[n] = output.last_hidden_state.detach()
    return {i: captured[v] for i, v in wanted.items()}, output


def pool(
    hidden: torch.Tensor, mask: torch.Tensor, pooling: str, skip_first: bool = False
) -> torch.Tensor:
    """[B, hidden] from states [B, T, hidden] and their attention mask [B, T].

    ``last``: the state at each row's last token. ``mean``: the mean over the row's tokens, as a
    float32 sum divided by the count; with ``skip_first``, over all tokens but the first (an
    outlier, the attention sink) unless it is the only one, as a float64 sum weighted by 1/count.
    """
    lengths = mask.sum(dim=1)
    if pooling == "last":
        return hidden[torch.arange(len(hidden), device=hidden.device), lengths - 1]
    if pooling != "mean":
        raise BrickworkError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
    if skip_first:
        kept = mask.clone()
        kept[lengths > 1, 0] = 0
        weights = (kept / kept.sum(dim=1, keepdim=True)).double()
        return torch.einsum("bt,bth->bh", weights, hidden.double())
    w = mask[..., None].float()
    return (hidden.float() * w).sum(dim=1) / w.sum(dim=1).clamp_min(1)


def prompt_states(
    loaded: LoadedModel,
    prompts: list[str],
    layers: list[int],
    poolings: tuple[str, ...] = ("mean",),
    *,
    chat: bool = False,
    max_tokens: int | None = None,
    drop_last: bool = False,
    skip_first: bool = False,
    final_norm: bool = True,
    batch_size: int = 8,
    progress: str | None = None,
) -> dict[tuple[int, str], torch.Tensor]:
    """Per-prompt base-model states, float32 [n, hidden], for each (layer index, pooling).

    Each prompt is tokenised by ``models.tokens.prompt_tokens`` (``chat`` and ``max_tokens``);
    ``drop_last`` leaves out its last token (what a generation's dense prefill sees). Prompts run
    in right-padded batches of ``batch_size``; ``pool`` explains ``poolings`` and ``skip_first``.
    ``progress`` names a progress bar over the batches (none when None).
    """
    if not prompts:
        raise BrickworkError("no prompts to read states of")
    bad = [p for p in poolings if p not in POOLINGS]
    if bad:
        raise BrickworkError(f"pooling must be one of {POOLINGS}, not {bad[0]!r}")
    tokenizer, device = loaded.tokenizer, loaded.device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows = [prompt_tokens(tokenizer, p, chat=chat, max_tokens=max_tokens) for p in prompts]
    if drop_last:
        rows = [r[:-1] if len(r) > 1 else r for r in rows]
    out: dict[tuple[int, str], list[torch.Tensor]] = {(i, p): [] for i in layers for p in poolings}
    chunks = batches(rows, batch_size)
    for chunk in tqdm(chunks, desc=progress, disable=progress is None, leave=False):
        ids, mask = pad(chunk, pad_id)
        mask = mask.to(device)
        states = layer_states(loaded, ids.to(device), mask, layers, final_norm)
        for layer in layers:  # pooled where the model runs; only [B, hidden] comes back
            hidden = states[layer].to(device)
            for pooling in poolings:
                out[(layer, pooling)].append(pool(hidden, mask, pooling, skip_first).cpu())
    return {key: torch.cat(parts).float() for key, parts in out.items()}
