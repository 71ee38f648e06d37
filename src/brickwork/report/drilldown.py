"""The report's per-neuron drill-down: each functionality's most specific neurons and the
held-out prompts that activate them most (results.json ``drilldown``)."""

from __future__ import annotations

from html import escape

from brickwork.analysis.results import AnalysisResults

MISSING = (
    "<p class='note'>Not shown: this results.json has no drill-down (written before analyze "
    "recorded one); re-run <code>brickwork analyze</code> for it.</p>"
)


def drilldown_section(r: AnalysisResults) -> str:
    """The section's HTML: a note, then per functionality a table of its neurons."""
    d = r.drilldown
    if d is None:
        return MISSING
    parts = [
        "<p class='note'>Per functionality, the neurons with the highest FuncScore (selected on "
        f"the {escape(r.funcscore.split)} split, over all layers), and for each the "
        f"{escape(d.split)}-split prompts with the highest mean absolute activation. Control: "
        "the share of those prompts that are of the neuron's own functionality, beside that "
        f"functionality's share of the {escape(d.split)} split (what random prompts give).</p>"
    ]
    for name, neurons in d.neurons.items():
        on, chance = d.on_target.get(name), d.chance.get(name)
        parts.append(
            f"<h3 id='drill-{escape(name)}'>{escape(name)}</h3><p class='note'>Top prompts of "
            f"the neuron's functionality: {_share(on)} (chance: {_share(chance)}).</p>"
        )
        rows = "".join(_neuron_row(n) for n in neurons)
        parts.append(
            "<table class='drill'><tr><th class='l'>neuron</th><th>FuncScore</th>"
            f"<th class='l'>top-activating prompts</th></tr>{rows}</table>"
        )
    return "".join(parts)


def _neuron_row(neuron: dict) -> str:
    items = "".join(
        f"<li><b>{escape(p['functionality'])}</b> ({p['activation']:.3g}): "
        f"{escape(p['text'])} <span class='note'>[{escape(p['id'])}]</span></li>"
        for p in neuron["prompts"]
    )
    return (
        f"<tr><td class='l'>L{neuron['layer']}:{neuron['neuron']}</td>"
        f"<td>{neuron['funcscore']:.3f}</td><td class='l'><ol>{items}</ol></td></tr>"
    )


def _share(value) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"
