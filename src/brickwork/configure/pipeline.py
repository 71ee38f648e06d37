"""Per-instruction configuration: route, select bricks, gather a compact model, answer, trace.

``configured_generate`` is what ``brickwork generate --configure ...`` calls. The trace records
the routed functionality (with the router's probabilities), the selection rule, the neurons kept
per layer and the plugins attached, so every answer says which bricks produced it.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

from brickwork.bricks.attach import attach
from brickwork.configure.build import prebuilt_for
from brickwork.configure.compact import CompactModel, attach_plugins, check_budget, gather_ffn
from brickwork.configure.prompted import (
    Decoded,
    Decoding,
    decode,
    dense_prefill,
    prompt_compact,
    prompt_ids,
)
from brickwork.configure.router import Router, check_router, pool_hidden
from brickwork.configure.select import SelectionStats, check_stats, functionality_selection
from brickwork.data.sample import FUNCTIONALITIES
from brickwork.errors import BrickworkError, check_choice
from brickwork.models.load import LoadedModel

SELECTIONS = ("prompt", "static")
PRIOR_MIX = 0.5  # weight of the routed functionality's importance in the prompt selection


@dataclass
class Trace:
    """Which bricks answered an instruction."""

    instruction: str
    configure: str  # "auto", "none" or a functionality name
    functionality: str | None  # the routed or given functionality
    probabilities: dict[str, float] = field(default_factory=dict)  # the router's, if it ran
    selection: str = "none"  # "prompt" (GRIFFIN), "static" or "none" (dense)
    rule: str = ""
    budget: float | None = None
    neurons_per_layer: list[int] = field(default_factory=list)
    d_ff: int = 0
    plugins: list[str] = field(default_factory=list)
    base_model: str = ""
    compact_model: str | None = None  # fingerprint of the gathered model
    new_tokens: int = 0
    tokens_per_second: float | None = None
    dense_tokens_per_second: float | None = None  # with compare_dense: the dense model's decode
    dense_answer: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        """A short human-readable summary."""
        out = [f"configure: {self.configure}; functionality: {self.functionality or '-'}"]
        if self.probabilities:
            top = sorted(self.probabilities.items(), key=lambda kv: -kv[1])[:3]
            out.append("router: " + ", ".join(f"{k} {v:.2f}" for k, v in top))
        if self.neurons_per_layer:
            kept = sum(self.neurons_per_layer)
            total = self.d_ff * len(self.neurons_per_layer)
            out.append(
                f"selection: {self.selection} ({self.rule}); budget {self.budget:.0%}; "
                f"kept {kept}/{total} FFN neurons ({kept / total:.1%})"
            )
            out.append("neurons per layer: " + " ".join(map(str, self.neurons_per_layer)))
            out.append(f"compact model: {self.compact_model} (base {self.base_model})")
        else:
            out.append(f"selection: none (dense model {self.base_model})")
        out.append("plugins: " + (", ".join(self.plugins) if self.plugins else "none"))
        if self.tokens_per_second is not None:
            speed = f"decode: {self.new_tokens} tokens, {self.tokens_per_second:.1f} tokens/s"
            if self.dense_tokens_per_second:
                ratio = self.tokens_per_second / self.dense_tokens_per_second
                speed += f"; dense {self.dense_tokens_per_second:.1f} tokens/s ({ratio:.2f}x)"
            out.append(speed)
        return out


def check_configure(configure: str, stats: SelectionStats | None, router: Router | None) -> None:
    """Refuse a functionality name that the analysis (else the router, else the paper's seven
    functionalities) does not know."""
    if configure in ("auto", "none"):
        return
    known = stats.functionalities if stats is not None else router and router.functionalities
    known = known or FUNCTIONALITIES
    if configure not in known:
        raise BrickworkError(f"unknown functionality {configure!r}; known: {', '.join(known)}")


def _routed(router: Router | None, configure: str, hidden_states, stats, loaded) -> tuple:
    """(functionality, probabilities) for the configure mode."""
    if configure == "none":
        return None, {}
    if configure != "auto":
        check_configure(configure, stats, router)
        return configure, {}
    if router is None:
        raise BrickworkError(
            "--configure auto needs a router (train_router; default_router trains and caches one)"
        )
    check_router(router, loaded)
    probs = router.probabilities(pool_hidden(hidden_states, router.layers))[0]
    named = dict(zip(router.functionalities, probs.tolist(), strict=True))
    return max(named, key=named.get), named


def configured_generate(
    loaded: LoadedModel,
    instruction: str,
    *,
    configure: str = "auto",
    budget: float = 0.3,
    selection: str = "prompt",
    router: Router | None = None,
    stats: SelectionStats | None = None,
    plugins: list | tuple = (),
    max_new_tokens: int = 64,
    mix: float = PRIOR_MIX,
    prebuilt: dict | None = None,
    decoding: Decoding | None = None,
    compare_dense: bool = False,
) -> tuple[str, Trace]:
    """Answer ``instruction`` with a model configured for it; returns (answer, trace).
    ``prebuilt`` (configure/build.py ``configured_dirs``): use the saved recovered model of the
    routed functionality and budget when there is one. ``compare_dense``: also answer with the
    dense model and record its answer and decode speed in the trace."""
    check_choice(selection, SELECTIONS, "selection")
    check_budget(budget)
    if stats is not None:
        check_stats(stats, loaded)
    if selection == "static" and configure != "none" and stats is None:
        raise BrickworkError("the static selection needs the analysis statistics (--analysis)")
    decoding = decoding or Decoding()
    ids = prompt_ids(loaded, instruction, decoding.chat)
    context = attach(loaded, list(plugins)) if plugins else nullcontext()
    with context:
        prefill = dense_prefill(loaded, ids)
        fresh = dense_prefill(loaded, ids) if compare_dense and configure != "none" else None
    functionality, probs = _routed(router, configure, prefill.hidden_states, stats, loaded)
    trace = Trace(
        instruction,
        configure,
        functionality,
        probs,
        plugins=[p.name for p in plugins],
        base_model=loaded.fingerprint,
    )
    compact = None
    if configure != "none" and prefill.scores is None:
        raise BrickworkError(
            "this grown model's FFNs differ between layers (wider or upcycled into experts): "
            "configured selection needs plain FFNs of one width; use --configure none"
        )
    if configure != "none":
        compact = prebuilt_for(prebuilt, functionality, budget, loaded) if prebuilt else None
        if compact is not None:
            selection = "prebuilt"
        else:
            compact = _compact_for(loaded, prefill, functionality, budget, selection, stats, mix)
        trace.selection, trace.rule, trace.budget = selection, compact.info["rule"], budget
        trace.neurons_per_layer, trace.d_ff = compact.widths, compact.base_d_ff
        trace.compact_model = compact.loaded.fingerprint
    answer = _decode(loaded, compact, prefill, plugins, max_new_tokens, decoding)
    trace.new_tokens, trace.tokens_per_second = answer.new_tokens, answer.tokens_per_second
    if fresh is not None:
        dense = _decode(loaded, None, fresh, plugins, max_new_tokens, decoding)
        trace.dense_answer, trace.dense_tokens_per_second = dense.text, dense.tokens_per_second
    return answer.text, trace


def _compact_for(loaded, prefill, functionality, budget, selection, stats, mix) -> CompactModel:
    if selection == "static":
        kept = functionality_selection(stats, {functionality: 1.0}, budget)
        rule = f"{functionality} neuron set + resident neurons, then train-split importance"
        return gather_ffn(loaded, kept, info={"rule": rule, "functionality": functionality})
    prior = stats.importance[stats.index(functionality)] if stats is not None else None
    rule = "GRIFFIN: prompt activation norms" + (
        f" + {mix} x {functionality} importance" if prior is not None and mix > 0 else ""
    )
    return prompt_compact(
        loaded, prefill, budget, prior, mix, info={"rule": rule, "functionality": functionality}
    )


def _decode(loaded, compact, prefill, plugins, max_new_tokens, decoding) -> Decoded:
    tokenizer = loaded.tokenizer
    if compact is None:
        context = attach(loaded, list(plugins)) if plugins else nullcontext(loaded.model)
    else:
        context = (
            attach_plugins(compact, list(plugins)) if plugins else nullcontext(compact.loaded.model)
        )
    with context as model:
        return decode(model, tokenizer, prefill, max_new_tokens, decoding)
