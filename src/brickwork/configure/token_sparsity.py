"""Per-token FFN sparsity at a budget (the share of FFN neurons each token keeps), one registry.

Methods, all applied through forward hooks (``models/hooks.py``) and removed on exit:

- ``top-abs`` (oracle): every token keeps its top ``budget`` share of neurons by |a|, a the input
  of the output projection. Needs the whole of a, so it saves nothing; the per-token ceiling.
- ``teal`` (Liu et al. 2024, TEAL): magnitude thresholds on the FFN input x (gate/up read only
  the kept input dimensions) and on the intermediate a (down reads only the kept neurons), each
  calibrated per layer so that a ``budget`` share of the TRAIN tokens' entries survive.
- ``cats`` (Lee et al. 2024, CATS): a threshold on |act(gate(x))| calibrated per layer to keep a
  ``budget`` share; up and down then need only the kept neurons (the gate stays dense).
  For an ungated FFN (GPT-2) the threshold is on act(fc(x)), i.e. on a itself.

Thresholds come from calibration tokens (prompt + reference of TRAIN samples), never from the
data that evaluates them. Budget 1.0 adds no hooks: the model is exactly the dense one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from transformers.activations import ACT2FN

from brickwork.analysis.masking import mask_lowest
from brickwork.configure.compact import check_budget
from brickwork.data.sample import Sample
from brickwork.errors import BrickworkError
from brickwork.models.hooks import hooks
from brickwork.models.load import LoadedModel
from brickwork.models.tokens import prompt_tokens

METHODS = ("top-abs", "teal", "cats")
# Which activations each calibrated method thresholds: the FFN input x, the intermediate a
# (the input of down) and the gate's activation act(gate(x)).
SITES = {"top-abs": (), "teal": ("input", "inter"), "cats": ("gate",)}


@dataclass
class TokenSparsity:
    """One method at one budget: per-layer thresholds {site: [L]} (none for ``top-abs``)."""

    method: str
    budget: float
    thresholds: dict[str, torch.Tensor]
    base_model: str


def gate_projection(loaded: LoadedModel, layer: torch.nn.Module) -> torch.nn.Module:
    """The projection whose activated output CATS thresholds: the gate, or (ungated) the input."""
    family = loaded.family
    return getattr(family.ffn(layer), family.gate or family.up)


def activation(loaded: LoadedModel):
    return ACT2FN[loaded.family.activation_name(loaded.model.config)]


def calibration_ids(loaded: LoadedModel, samples: list[Sample], max_tokens: int = 256):
    """Prompt (chat-formatted) + reference token ids of each sample, as [1, T] tensors."""
    tok = loaded.tokenizer
    rows = []
    for s in samples:
        ids = prompt_tokens(tok, s.prompt, chat=True, max_tokens=192)
        ids += tok(s.reference or "", add_special_tokens=False)["input_ids"]
        rows.append(torch.tensor([ids[:max_tokens]]))
    return rows


@contextmanager
def _recording(loaded: LoadedModel, sites: tuple[str, ...], store: dict) -> Iterator[None]:
    """Append |values| [T, width] of each site and layer to ``store[(site, layer)]``."""
    family, act = loaded.family, activation(loaded)

    def keep(site, i, value):
        store.setdefault((site, i), []).append(value.detach().abs().reshape(-1, value.shape[-1]))

    specs = []
    for i, layer in enumerate(family.layer_modules(loaded.model)):
        if "input" in sites:
            specs.append(
                (family.ffn(layer), "forward_pre", lambda m, a, i=i: keep("input", i, a[0]))
            )
        if "inter" in sites:
            specs.append(
                (family.down_proj(layer), "forward_pre", lambda m, a, i=i: keep("inter", i, a[0]))
            )
        if "gate" in sites:
            hook = lambda m, a, out, i=i: keep("gate", i, act(out))  # noqa: E731
            specs.append((gate_projection(loaded, layer), "forward", hook))
    with hooks(specs):
        yield


def calibrate(
    loaded: LoadedModel,
    method: str,
    budgets: list[float],
    samples: list[Sample],
    max_values: int = 500_000,
    seed: int = 0,
) -> dict[float, TokenSparsity]:
    """Thresholds for each budget from the calibration samples' tokens (pass TRAIN samples).

    Sites are calibrated in order, each with the earlier ones applied (TEAL's intermediate is
    what the sparsified input produces), so every site keeps its ``budget`` share.
    """
    if method not in METHODS:
        raise BrickworkError(f"unknown token-sparsity method {method!r}; methods: {METHODS}")
    for b in budgets:
        check_budget(b)
    ids = calibration_ids(loaded, samples)
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for b in budgets:
        sparsity = TokenSparsity(method, b, {}, loaded.fingerprint)
        for site in SITES[method]:
            store: dict = {}
            applied = hooks(sparsity_hooks(loaded, sparsity))
            with torch.no_grad(), applied, _recording(loaded, (site,), store):
                for row in ids:
                    loaded.model(input_ids=row, use_cache=False)
            values = [torch.cat(store[site, i]) for i in range(len(store))]
            sparsity.thresholds[site] = torch.stack(
                [_threshold(_subsample(v, max_values, generator), b) for v in values]
            )
        out[b] = sparsity
    return out


def _subsample(values: torch.Tensor, limit: int, generator: torch.Generator) -> torch.Tensor:
    flat = values.float().reshape(-1)
    if flat.numel() <= limit:
        return flat
    return flat[torch.randint(0, flat.numel(), (limit,), generator=generator)]


def _threshold(values: torch.Tensor, budget: float) -> torch.Tensor:
    """The value that a ``budget`` share of ``values`` reach (>=); -inf keeps everything."""
    drop = int(round((1 - budget) * values.numel()))
    if drop == 0:
        return torch.tensor(float("-inf"))
    return values.kthvalue(drop).values.nextafter(torch.tensor(float("inf")))


def _mask(value: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    return torch.where(value.abs() >= threshold, value, torch.zeros((), dtype=value.dtype))


def sparsity_hooks(loaded: LoadedModel, sparsity: TokenSparsity) -> list:
    """The hook specs that apply ``sparsity`` (calibrated methods only)."""
    family, act = loaded.family, activation(loaded)
    t = sparsity.thresholds
    masked_inputs = {"input": family.ffn, "inter": family.down_proj}  # site: the module it enters
    specs = []
    for i, layer in enumerate(family.layer_modules(loaded.model)):
        for site, module in masked_inputs.items():
            if site in t:

                def mask_input(m, a, i=i, site=site):
                    return (_mask(a[0], t[site][i]), *a[1:])

                specs.append((module(layer), "forward_pre", mask_input))
        if "gate" in t:
            # act(0) = 0 for SiLU/GELU, so zeroing the gate output zeroes those neurons' a.
            def gate(m, a, out, i=i):
                return torch.where(
                    act(out).abs() >= t["gate"][i], out, torch.zeros((), dtype=out.dtype)
                )

            specs.append((gate_projection(loaded, layer), "forward", gate))
    return specs


def apply_sparsity(loaded: LoadedModel, sparsity: TokenSparsity):
    """A context in which ``loaded.model`` runs with ``sparsity``; exactly dense at budget 1."""
    loaded.require_base(sparsity.base_model, f"the {sparsity.method} thresholds")
    if sparsity.budget >= 1.0:
        return nullcontext()
    if sparsity.method == "top-abs":
        return mask_lowest(loaded, 1 - sparsity.budget)
    return hooks(sparsity_hooks(loaded, sparsity))


def kept_share(loaded: LoadedModel, sparsity: TokenSparsity, samples: list[Sample]) -> float:
    """The measured share of FFN neurons (inputs of down) that are non-zero, under ``sparsity``."""
    store: dict = {}
    with torch.no_grad(), apply_sparsity(loaded, sparsity), _recording(loaded, ("inter",), store):
        for ids in calibration_ids(loaded, samples):
            loaded.model(input_ids=ids, use_cache=False)
    kept = sum(float((torch.cat(v) != 0).sum()) for v in store.values())
    total = sum(torch.cat(v).numel() for v in store.values())
    return kept / total


def ffn_read_share(method: str, budget: float, gated: bool = True) -> float:
    """The share of FFN weights a decode step must read at ``budget`` (the kernel's best case)."""
    if method == "top-abs":
        return (2 + budget) / 3 if gated else (1 + budget) / 2  # a needs gate and up in full
    if method == "cats" and gated:
        return (1 + 2 * budget) / 3  # the gate stays dense
    return budget
