"""The self-contained HTML report: figure PNGs (embedded as data URIs) and key-number tables."""

from __future__ import annotations

import base64
import io
import os
from html import escape
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from brickwork.analysis.results import AnalysisResults, as_results
from brickwork.io import replace_atomically
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
    replace_atomically(report, lambda tmp: tmp.write_text(page, encoding="utf-8"))
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
    tables = {
        "cett.png": _sparsity_tables(results),
        "fig8_funcscore.png": _heldout_table(results),
        "fig9_ablation.png": _ablation_tables(results),
        "fig10_partition.png": _partition_table(results),
    }
    parts = [_header(results)]
    for name in FIGURES:
        parts.append(f"<h2>{escape(titles[name])}</h2>")
        parts.append(_figure(name, images[name], captions[name]))
        parts.append(tables.get(name, ""))
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


def _header(results: AnalysisResults) -> str:
    rows = []
    for key, label in PROVENANCE_FIELDS:
        value = getattr(results.provenance, key)
        if value is not None:
            value = f"{value:.1f}" if key == "seconds" else str(value)
            rows.append(
                f"<tr><th class='l'>{escape(label)}</th><td><code>{escape(value)}</code></td></tr>"
            )
    funcs = ", ".join(results.functionalities)
    setting_text = ", ".join(f"{k}={v}" for k, v in results.settings.items())
    return (
        "<h1>brickwork neuron analysis</h1>"
        f"<p class='note'>Functionalities: {escape(funcs)}. "
        f"Layers: {results.n_layers}, d_ff: {results.d_ff}. "
        "Neurons are selected on the train split and evaluated on the held-out test split.</p>"
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


# ---------------------------------------------------------------- tables


def _num(value, fmt: str = "{:.3f}") -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return fmt.format(value)


def _mean(values) -> float | None:
    """Mean over layers ignoring nulls; None when nothing is finite."""
    arr = np.asarray(values if values is not None else [], dtype=float)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else None


def _pct(value) -> str:
    return _num(None if value is None else 100 * value, "{:.1f}%")


def _row(cells: list[str], tag: str) -> str:
    """One table row; the first cell is the left-aligned label. Cells are escaped here."""
    inner = "".join(
        f"<{tag} class='l'>{escape(c)}</{tag}>" if i == 0 else f"<{tag}>{escape(c)}</{tag}>"
        for i, c in enumerate(cells)
    )
    return f"<tr>{inner}</tr>"


def _table(header: list[str], rows: list[list[str]], caption: str = "") -> str:
    """An HTML table with an optional escaped caption paragraph above it."""
    body = _row(header, "th") + "".join(_row(r, "td") for r in rows)
    cap = f"<p class='note'>{escape(caption)}</p>" if caption else ""
    return f"{cap}<table>{body}</table>"


def _sparsity_tables(results: AnalysisResults) -> str:
    sp = results.sparsity
    masked, cett = sp.masked, sp.cett
    top = max(masked.ratios) if masked.ratios else 0.0
    rise = masked.rise_5pct_ratio
    rows = []
    for key, label in (("activation", "activation"), ("output", "output magnitude")):
        share = _mean(sp.below[key])
        r = rise.get(key)
        rise_text = f"not reached up to {100 * top:.0f}%" if r is None else _pct(r)
        rows.append([label, _pct(share), rise_text])
    first = _table(
        ["indicator", "share below 0.2 (mean over layers)", "masked ratio at +5% loss"],
        rows,
        "Sparsity key numbers.",
    )
    cett_rows = [
        [str(k), _pct(v), _num(_mean(cett.epsilon.get(k)), "{:.4g}")]
        for k, v in cett.mean_activated_ratio.items()
    ]
    second = _table(["CETT target", "mean activated ratio", "mean threshold ε"], cett_rows)
    return first + second


def _heldout_table(results: AnalysisResults) -> str:
    held = results.funcscore.heldout_top
    if not held:
        return ""
    rows = [[f, _num(held.get(f))] for f in results.functionalities if f in held]
    return _table(
        ["functionality", "test-split FuncScore of train-selected top neurons"],
        rows,
        "Held-out check: the neurons chosen on the train split, scored on the test split.",
    )


def _matrix_rows(names: list[str], matrix: list[list[float]], fmt) -> list[list[str]]:
    return [[name, *(fmt(v) for v in row)] for name, row in zip(names, matrix, strict=True)]


def _ablation_tables(results: AnalysisResults) -> str:
    abl = results.ablation
    cols = list(abl.columns)
    rows = [["baseline PPL", *(_num(abl.baseline_ppl.get(c), "{:.2f}") for c in cols)]]
    rows += _matrix_rows(list(abl.rows), abl.matrix, _pct)
    matrix = _table(["ablated \\ evaluated", *cols], rows, "PPL increase (test split).")
    res = abl.resident
    resident = _table(
        ["ablated \\ evaluated", *cols],
        _matrix_rows(list(res.rows), res.matrix, _pct),
        f"Resident neurons excluded ({res.count}; rule: {res.rule}).",
    )
    s = abl.summary
    summary = _table(
        ["summary", "value"],
        [
            ["diagonal mean", _pct(s.diagonal_mean)],
            ["off-diagonal mean", _pct(s.off_diagonal_mean)],
            ["random mean", _pct(s.random_mean)],
            ["resident-excluded diagonal mean", _pct(s.resident_diagonal_mean)],
            ["resident-excluded off-diagonal mean", _pct(s.resident_off_diagonal_mean)],
        ],
    )
    return matrix + summary + resident + _dominance_table(results)


def _dominance_table(results: AnalysisResults) -> str:
    abl = results.ablation
    dom = abl.diagonal_dominant
    cols, rows = list(abl.columns), list(abl.rows)
    out = []
    for func in results.functionalities:
        diag = (
            abl.matrix[rows.index(func)][cols.index(func)]
            if func in rows and func in cols
            else None
        )
        flag = dom.get(func)
        out.append([func, _pct(diag), "n/a" if flag is None else ("yes" if flag else "no")])
    return _table(
        ["functionality", "diagonal", "diagonal largest in its column"],
        out,
        "Diagonal dominance: does ablating a functionality's own neurons hurt it most?",
    )


def _partition_table(results: AnalysisResults) -> str:
    part = results.partition
    names = list(part.rows)
    matrix = _table([""] + names, _matrix_rows(names, part.matrix, lambda v: _num(v, "{:.2f}")))
    baselines = _table(
        ["baseline", "value"],
        [
            ["random expected (k / d_ff)", _num(part.random_expected)],
            ["random empirical", _num(part.random_empirical)],
            ["off-diagonal mean", _num(part.off_diagonal_mean)],
        ],
    )
    return matrix + baselines
