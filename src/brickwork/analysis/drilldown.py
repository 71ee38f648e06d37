"""The per-neuron drill-down of results.json: for each functionality, its most specific neurons
(highest train-split FuncScore, over every layer) and the held-out prompts that activate each
most (the profile's per-sample mean absolute activation), as TransformerLens users look at a
neuron's top examples.

Only a few prompts per neuron are kept (id, functionality, activation and the start of the
text). Its control: the share of those prompts that belong to the neuron's own functionality,
beside that functionality's share of the split (what random prompts would give).
"""

from __future__ import annotations

import torch

from brickwork.data.sample import Sample

NEURONS = 5  # most specific neurons per functionality
PROMPTS = 3  # top-activating prompts per neuron
TEXT_CHARS = 160  # the start of each prompt kept in results.json


def drilldown(
    scores: torch.Tensor,
    acts: torch.Tensor,
    samples: list[Sample],
    rows: list[int],
    functionalities: list[str],
    split: str = "test",
    neurons: int = NEURONS,
    prompts: int = PROMPTS,
) -> dict:
    """The drill-down record from FuncScores [F, L, D], per-sample activations [N, L, D] and
    the ``rows`` of ``samples`` (of ``split``) the prompts are drawn from."""
    d_ff = scores.shape[2]
    chosen = acts[rows]  # [n, L, D]
    top_k = min(prompts, len(rows))
    table, on_target, chance = {}, {}, {}
    for f, name in enumerate(functionalities):
        ranked = scores[f].flatten().topk(min(neurons, scores[f].numel())).indices.tolist()
        entries, own = [], 0
        for flat in ranked:
            layer, neuron = divmod(flat, d_ff)
            column = chosen[:, layer, neuron]
            best = column.topk(top_k).indices.tolist()
            shown = [_prompt(samples[rows[i]], float(column[i])) for i in best]
            own += sum(p["functionality"] == name for p in shown)
            entries.append(
                {
                    "layer": layer,
                    "neuron": neuron,
                    "funcscore": float(scores[f, layer, neuron]),
                    "prompts": shown,
                }
            )
        table[name] = entries
        on_target[name] = own / (len(ranked) * top_k)
        chance[name] = sum(samples[i].functionality == name for i in rows) / len(rows)
    return {
        "split": split,
        "neurons": table,
        "on_target": on_target,
        "chance": chance,
    }


def _prompt(sample: Sample, activation: float) -> dict:
    text = " ".join(sample.prompt.split())
    if len(text) > TEXT_CHARS:
        text = text[: TEXT_CHARS - 1] + "\u2026"
    return {
        "id": sample.id,
        "functionality": sample.functionality,
        "activation": activation,
        "text": text,
    }
