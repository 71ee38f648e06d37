"""The report's tables: key numbers beside their random controls (and the paper's, where it
reports them). Cells are plain strings, escaped when the table is built."""

from __future__ import annotations

from html import escape

import numpy as np
import torch

from brickwork.analysis.ablation import diagonal_dominance
from brickwork.analysis.results import AnalysisResults
from brickwork.report.paper import PAPER_DIAGONAL, PAPER_TEXT
from brickwork.report.stats import bootstrap_intervals, mean_median, off_diagonal

NO_CI = "per-sample losses absent from results.json: re-run analyze for confidence intervals"


def num(value, fmt: str = "{:.3f}") -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return fmt.format(value)


def pct(value) -> str:
    return num(None if value is None else 100 * value, "{:.1f}%")


def layer_mean(values) -> float | None:
    return mean_median(values if values is not None else [])[0]


def _row(cells: list[str], tag: str) -> str:
    inner = "".join(
        f"<{tag} class='l'>{escape(c)}</{tag}>" if i == 0 else f"<{tag}>{escape(c)}</{tag}>"
        for i, c in enumerate(cells)
    )
    return f"<tr>{inner}</tr>"


def table(header: list[str], rows: list[list[str]], caption: str = "") -> str:
    """An HTML table with an optional escaped caption paragraph above it."""
    body = _row(header, "th") + "".join(_row(r, "td") for r in rows)
    cap = f"<p class='note'>{escape(caption)}</p>" if caption else ""
    return f"{cap}<table>{body}</table>"


def _mm(values) -> list[str]:
    mean, median = mean_median(values)
    return [pct(mean), pct(median)]


# ---------------------------------------------------------------- key findings


def findings_table(r: AnalysisResults) -> str:
    """Key findings: ours, our random control, the paper's."""
    abl, fs, part, sp = r.ablation, r.funcscore, r.partition, r.sparsity
    funcs = [f for f in r.functionalities if f in fs.per_layer]
    best = np.mean([layer_mean(fs.per_layer[f]["best"]) for f in funcs])
    rand_best = np.mean([layer_mean(fs.per_layer[f]["random_best"]) for f in funcs])
    held = mean_median(fs.heldout_top.values())[0]
    held_rand = mean_median((fs.heldout_random or {}).values())[0]
    m = np.asarray(abl.matrix[: len(abl.columns)], dtype=float)
    res = np.asarray(abl.resident.matrix, dtype=float)
    diag, rdiag = np.diag(m), np.diag(res)
    dom = sum(bool(v) for v in abl.diagonal_dominant.values())
    rdom = sum(diagonal_dominance(torch.tensor(res)))
    papers = {k: list(v.values()) for k, v in PAPER_DIAGONAL.items()}
    paper_diag = "; ".join(
        f"{k.split(' ')[0]} mean {pct(np.mean(v))}, median {pct(np.median(v))}"
        for k, v in papers.items()
    )
    rise = sp.masked.rise_5pct_ratio
    rows = [
        [
            "normalized activation below 0.2 (layer mean)",
            pct(layer_mean(sp.below["activation"])),
            "none measured",
            PAPER_TEXT["below"],
        ],
        [
            "masked share where loss rises 5% (activation / output)",
            f"{pct(rise.get('activation'))} / {pct(rise.get('output'))}",
            "none measured",
            PAPER_TEXT["masked"],
        ],
        [
            "FuncScore of the best neuron per layer (train, mean)",
            num(best),
            f"random activations {num(rand_best)}",
            PAPER_TEXT["funcscore"],
        ],
        [
            "FuncScore of train-selected neurons on test (mean)",
            num(held),
            f"random neurons {num(held_rand)}",
            PAPER_TEXT["heldout"],
        ],
        [
            "ablation diagonal: mean / median PPL increase",
            f"{pct(diag.mean())} / {pct(np.median(diag))}",
            "random row " + " / ".join(_mm(abl.matrix[-1])),
            paper_diag,
        ],
        [
            "ablation off-diagonal: mean / median",
            " / ".join(_mm(off_diagonal(m))),
            "",
            PAPER_TEXT["off_diagonal"],
        ],
        [
            "diagonal-dominant columns (plain / resident excluded)",
            f"{dom}/{len(diag)} / {rdom}/{len(rdiag)}",
            "",
            "not counted; exceptions blamed on resident neurons",
        ],
        [
            "top-set overlap off-diagonal (mean)",
            num(part.off_diagonal_mean),
            f"random sets {num(part.random_empirical)}",
            PAPER_TEXT["partition"],
        ],
    ]
    return table(
        ["finding", "this run", "random control (this run)", "paper (Llama-3-8B, Mistral-7B)"],
        rows,
        "Medians beside means: one large cell can drive a mean.",
    )


# ---------------------------------------------------------------- sections


def sparsity_tables(r: AnalysisResults) -> str:
    sp = r.sparsity
    masked, cett = sp.masked, sp.cett
    top = max(masked.ratios) if masked.ratios else 0.0
    rows = []
    for key, label in (("activation", "activation"), ("output", "output magnitude")):
        rise = masked.rise_5pct_ratio.get(key)
        rise_text = f"not reached up to {100 * top:.0f}%" if rise is None else pct(rise)
        rows.append([label, *_mm(sp.below[key]), rise_text])
    first = table(
        ["indicator", "share below 0.2 (layer mean)", "(layer median)", "masked ratio at +5% loss"],
        rows,
        "Sparsity key numbers (no random control applies to these; the paper: "
        f"{PAPER_TEXT['below']}, {PAPER_TEXT['masked']}).",
    )
    cett_rows = [
        [str(k), pct(v), num(layer_mean(cett.epsilon.get(k)), "{:.4g}")]
        for k, v in cett.mean_activated_ratio.items()
    ]
    return first + table(["CETT target", "mean activated ratio", "mean threshold ε"], cett_rows)


def heldout_table(r: AnalysisResults) -> str:
    fs = r.funcscore
    held, rand = fs.heldout_top, fs.heldout_random or {}
    if not held:
        return ""
    rows = []
    for f in r.functionalities:
        scores = fs.per_layer.get(f, {})
        rows.append(
            [
                f,
                num(layer_mean(scores.get("best"))),
                num(layer_mean(scores.get("random_best"))),
                num(held.get(f)),
                num(rand.get(f)) if rand else "not in results.json",
            ]
        )
    return table(
        [
            "functionality",
            f"best neuron ({fs.split}, layer mean)",
            "random activations",
            "selected neurons on test",
            "random neurons on test",
        ],
        rows,
        "FuncScore with its random controls; the test columns are the held-out check.",
    )


def _cell(value: float, ci: tuple[float, float] | None) -> str:
    if ci is None:
        return pct(value)
    return f"{pct(value)} [{pct(ci[0])}, {pct(ci[1])}]"


def _matrix_rows(names, matrix, cis: dict, prefix: str = "") -> list[list[str]]:
    out = []
    for name, row in zip(names, matrix, strict=True):
        ci = cis.get(prefix + name)
        cells = [_cell(v, ci[i] if ci else None) for i, v in enumerate(row)]
        out.append([name, *cells, *_mm(row)])
    return out


def ablation_tables(r: AnalysisResults) -> str:
    abl = r.ablation
    cols = list(abl.columns)
    cis = bootstrap_intervals(abl)
    note = (
        f"Cells: PPL increase [95% bootstrap interval over the {abl.eval_samples or '?'} test "
        "samples, resampled per column]."
        if cis
        else f"Cells: PPL increase ({NO_CI})."
    )
    header = ["ablated \\ evaluated", *cols, "row mean", "row median"]
    rows = [["baseline PPL", *(num(abl.baseline_ppl.get(c), "{:.2f}") for c in cols), "", ""]]
    rows += _matrix_rows(list(abl.rows), abl.matrix, cis)
    seeds = abl.random_seeds
    if seeds is not None and len(seeds.seeds) > 1:
        spread = np.asarray(seeds.matrix, dtype=float)
        rows.append(
            [
                f"random, {len(seeds.seeds)} seeds: mean [min, max]",
                *(f"{pct(c.mean())} [{pct(c.min())}, {pct(c.max())}]" for c in spread.T),
                *_mm(spread.mean(axis=0)),
            ]
        )
        seed_note = ""
    else:
        seed_note = " The random row is one seed (re-run analyze for several)."
    plain = table(header, rows, note + seed_note)
    res = abl.resident
    resident = table(
        header,
        _matrix_rows(list(res.rows), res.matrix, cis, "resident-excluded/")
        + [_matrix_rows(["random (not resident-excluded)"], [abl.matrix[-1]], {})[0]],
        f"Resident neurons excluded ({res.count}; rule: {res.rule}).",
    )
    return plain + resident + _summary_table(r) + dominance_tables(r, cis)


def _summary_table(r: AnalysisResults) -> str:
    abl = r.ablation
    n = len(abl.columns)
    m = np.asarray(abl.matrix[:n], dtype=float)
    res = np.asarray(abl.resident.matrix, dtype=float)
    rows = [
        ["diagonal", *_mm(np.diag(m))],
        ["off-diagonal", *_mm(off_diagonal(m))],
        ["random row", *_mm(abl.matrix[-1])],
        ["resident-excluded diagonal", *_mm(np.diag(res))],
        ["resident-excluded off-diagonal", *_mm(off_diagonal(res))],
    ]
    return table(["PPL increase", "mean", "median"], rows)


def dominance_tables(r: AnalysisResults, cis: dict) -> str:
    abl = r.ablation
    cols, n = list(abl.columns), len(abl.columns)
    random_row = abl.matrix[-1]
    variants = (
        (
            "",
            "Diagonal dominance: does ablating a functionality's own neurons hurt it most?",
            list(abl.rows[:n]),
            abl.matrix[:n],
        ),
        (
            "resident-excluded/",
            "Diagonal dominance with resident neurons excluded.",
            list(abl.resident.rows),
            abl.resident.matrix,
        ),
    )
    out = []
    for prefix, caption, names, matrix in variants:
        m = np.asarray(matrix, dtype=float)
        flags = diagonal_dominance(torch.tensor(m))
        rows = []
        for c, func in enumerate(cols):
            if func not in names:
                continue
            i = names.index(func)
            others = [j for j in range(len(names)) if j != i]
            row = [func, pct(m[i, c]), "yes" if flags[c] else "no", pct(random_row[c])]
            if cis:
                lo = cis[prefix + func][c][0]
                highs = [cis[prefix + names[j]][c][1] for j in others]
                row.append("yes" if others and lo > max(highs) else "no")
            row += [pct(p.get(func)) for p in PAPER_DIAGONAL.values()]
            rows.append(row)
        header = ["functionality", "diagonal", "largest in its column", "random row"]
        if cis:
            header.append("interval above every other row's")
        header += list(PAPER_DIAGONAL)
        out.append(table(header, rows, caption))
    return "".join(out)


def partition_table(r: AnalysisResults) -> str:
    part = r.partition
    off = off_diagonal(part.matrix)
    mean, median = mean_median(off)
    return table(
        ["top-set overlap", "value"],
        [
            ["off-diagonal mean", num(mean)],
            ["off-diagonal median", num(median)],
            ["largest off-diagonal", num(float(off.max()) if off.size else None)],
            ["random sets (measured)", num(part.random_empirical)],
            ["random expected (k / d_ff)", num(part.random_expected)],
            ["paper", PAPER_TEXT["partition"]],
        ],
        "The matrix itself is the figure above (its numbers are printed in the cells).",
    )
