"""The self-contained HTML report: figure PNGs (embedded as data URIs) and key-number tables."""

from __future__ import annotations

import base64
import io
import os
from html import escape
from pathlib import Path

from matplotlib.figure import Figure

from brickwork.analysis.results import AnalysisResults, as_results
from brickwork.io import replace_atomically, write_text_atomically
from brickwork.report import tables
from brickwork.report.drilldown import drilldown_section
from brickwork.report.figures import FIGURES

PROVENANCE_FIELDS = (
    ("model", "model"),
    ("model_fingerprint", "fingerprint"),
    ("dataset", "dataset"),
    ("dataset_hash", "dataset hash"),
    ("seed", "seed"),
    ("brickwork_version", "version"),
    ("command", "command"),
    ("seconds", "seconds"),
    ("created", "created"),
)
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1150px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}
table.prov td{text-align:left}code{background:#f3f3f3;padding:0 .2em;word-break:break-all}
figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}
figcaption{color:#444;font-size:.92em;max-width:900px}.note{color:#555;font-size:.9em}
nav ol{columns:2;font-size:.95em}
table.drill td ol{margin:0;padding-left:1.2em}
"""


def render_report(results: AnalysisResults | dict, out_dir: str | os.PathLike) -> Path:
    """Write the six figure PNGs and a self-contained ``report.html`` into out_dir (from the
    records, or from ``Analysis.results``, which is read as records first)."""
    results = as_results(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = {}
    for name, make in FIGURES.items():
        fig = make(results)
        try:
            data = _png(fig)
        finally:
            fig.clear()  # built without pyplot: clearing frees it, nothing is registered
        replace_atomically(out / name, lambda tmp, data=data: tmp.write_bytes(data))
        images[name] = base64.b64encode(data).decode("ascii")
    report = out / "report.html"
    page = _page(results, images)
    write_text_atomically(report, page)
    return report


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


# ---------------------------------------------------------------- page


def _page(results: AnalysisResults, images: dict[str, str]) -> str:
    captions = _captions(results)
    titles = {
        "fig6_sparsity_cdf.png": "Sparsity: CDF of normalized indicators (paper Fig 6)",
        "fig7_masked_ratio.png": "Sparsity: loss against masked ratio (paper Fig 7)",
        "cett.png": "Sparsity: activated ratio at CETT targets",
        "fig8_funcscore.png": "Specialization: FuncScore per layer (paper Fig 8)",
        "fig9_ablation.png": "Ablation of functional neurons (paper Fig 9)",
        "fig10_partition.png": "Partition: overlap of functional neurons (paper Fig 10)",
    }
    extra = {
        "cett.png": tables.sparsity_tables(results),
        "fig8_funcscore.png": tables.heldout_table(results),
        "fig9_ablation.png": tables.ablation_tables(results),
        "fig10_partition.png": tables.partition_table(results),
    }
    sections = [("findings", "Key findings", tables.findings_table(results))]
    for i, name in enumerate(FIGURES):
        body = _figure(name, images[name], captions[name]) + extra.get(name, "")
        sections.append((f"s{i}", titles[name], body))
    sections.append(("drilldown", "Per-neuron drill-down", drilldown_section(results)))
    sections.append(("provenance", "Provenance and settings", _provenance(results)))
    toc = "".join(f"<li><a href='#{a}'>{escape(t)}</a></li>" for a, t, _ in sections)
    parts = [_intro(results), f"<nav><h2>Contents</h2><ol>{toc}</ol></nav>"]
    parts += [f"<h2 id='{a}'>{escape(t)}</h2>{body}" for a, t, body in sections]
    title = escape(f"brickwork report: {results.provenance.model}")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


def _figure(name: str, b64: str, caption: str) -> str:
    return (
        f'<figure><img src="data:image/png;base64,{b64}" alt="{escape(name)}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def _intro(results: AnalysisResults) -> str:
    funcs = ", ".join(results.functionalities)
    return (
        "<h1>brickwork neuron analysis</h1>"
        f"<p class='note'>Model <code>{escape(results.provenance.model)}</code>. "
        f"Functionalities: {escape(funcs)}. Layers: {results.n_layers}, d_ff: {results.d_ff}. "
        "Neurons are selected on the train split and evaluated on the held-out test split.</p>"
    )


def _provenance(results: AnalysisResults) -> str:
    rows = []
    for key, label in PROVENANCE_FIELDS:
        value = getattr(results.provenance, key)
        if value is not None:
            value = f"{value:.1f}" if key == "seconds" else str(value)
            rows.append(
                f"<tr><th class='l'>{escape(label)}</th><td><code>{escape(value)}</code></td></tr>"
            )
    setting_text = ", ".join(f"{k}={v}" for k, v in results.settings.items())
    return (
        f"<p class='note'>Settings: {escape(setting_text)}</p>"
        f"<table class='prov'>{''.join(rows)}</table>"
    )


def _captions(results: AnalysisResults) -> dict[str, str]:
    norm = results.sparsity.normalization.rstrip(".")
    split = results.funcscore.split
    pct = f"{100 * results.ablation.fraction:g}%"
    return {
        "fig6_sparsity_cdf.png": (
            "Share of neurons whose normalized indicator is below x, one line per layer "
            f"(colour = depth). Normalization: {norm}. A curve that rises steeply left of the "
            "dashed 0.2 line means most neurons are nearly silent."
        ),
        "fig7_masked_ratio.png": (
            "Mean test-split loss when, per token and layer, the given share of neurons with the "
            f"lowest indicator is masked (normalization: {norm}). A flat curve means those neurons "
            "can be dropped; the dotted line marks where mean loss first rises 5%."
        ),
        "cett.png": (
            "Share of neurons that stay active per layer when the threshold is chosen so that the "
            "cumulative error of tail truncation (CETT) equals each target. Lower is sparser."
        ),
        "fig8_funcscore.png": (
            f"FuncScore (average precision of a neuron's activation at ranking instances of the "
            f"functionality) per layer on the {split} split: best neuron, best 5\u2030 and mean. "
            "Dashed lines score random activations; solid lines far above them mean specialized "
            "neurons exist."
        ),
        "fig9_ablation.png": (
            f"Relative perplexity increase on the test split (columns) after zeroing the top {pct} "
            f"FuncScore neurons of each functionality (rows), selected on the {split} split; the "
            "'random' row ablates random neurons of the same count. A dominant diagonal means "
            "separable functional neurons; colours are clipped, the numbers are exact."
        ),
        "fig10_partition.png": (
            f"Overlap |A \u2229 B| / k of two functionalities' top {pct} neuron sets (selected on "
            f"the {split} split), per layer and averaged. Off-diagonal values at the random "
            "baseline in the title mean two functionalities share no more neurons than chance."
        ),
    }
