"""Key tables of `brickwork analyze` runs, side by side with the paper's reported numbers.

    .venv/bin/python benchmarks/analysis_tables.py runs/demo runs/gemma > tables.md

Each run's own controls are its baseline: the random-neuron ablation row, random activations for
FuncScore and random sets for the partition, all measured in the same run.
"""

from __future__ import annotations

import sys

from brickwork.analysis import AnalysisResults, load_results
from brickwork.report.paper import PAPER_DIAGONAL, PAPER_TEXT


def pct(value: float | None) -> str:
    return "not reached by 90%" if value is None else f"{100 * value:.0f}%"


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def name_of(results: AnalysisResults) -> str:
    return results.provenance.model


def ablation_table(runs: list[AnalysisResults]) -> list[str]:
    lines = [
        "| model | diagonal mean | off-diagonal mean | random-5% row mean | "
        "diagonal / random | diagonal-dominant columns | resident-excluded diagonal | "
        "resident-excluded off-diagonal | resident-excluded diagonal-dominant |",
        "|---" * 9 + "|",
    ]
    for r in runs:
        s, dom = r.ablation.summary, r.ablation.diagonal_dominant
        resident = r.ablation.resident.matrix
        resident_dom = [resident[f][f] >= max(row[f] for row in resident) for f in range(len(dom))]
        lines.append(
            f"| {name_of(r)} | {pct(s.diagonal_mean)} | {pct(s.off_diagonal_mean)} | "
            f"{pct(s.random_mean)} | {s.diagonal_mean / s.random_mean:.1f}x | "
            f"{sum(dom.values())}/{len(dom)} | {pct(s.resident_diagonal_mean)} | "
            f"{pct(s.resident_off_diagonal_mean)} | {sum(resident_dom)}/{len(dom)} |"
        )
    for label, diagonal in PAPER_DIAGONAL.items():
        lines.append(
            f"| {label} | {pct(mean(diagonal.values()))} | {PAPER_TEXT['off_diagonal']} "
            "| not measured | | | | | |"
        )
    return lines


def diagonal_table(runs: list[AnalysisResults]) -> list[str]:
    funcs = runs[0].functionalities
    lines = ["| model | " + " | ".join(funcs) + " |", "|---" * (len(funcs) + 1) + "|"]
    for r in runs:
        matrix = r.ablation.matrix
        cells = [
            pct(matrix[i][i]) + ("" if r.ablation.diagonal_dominant[f] else " *")
            for i, f in enumerate(funcs)
        ]
        lines.append(f"| {name_of(r)} | " + " | ".join(cells) + " |")
        nonresident = r.ablation.resident.matrix
        cells = [pct(nonresident[i][i]) for i in range(len(funcs))]
        lines.append(f"| {name_of(r)}, resident excluded | " + " | ".join(cells) + " |")
    for label, diagonal in PAPER_DIAGONAL.items():
        lines.append(f"| {label} | " + " | ".join(pct(diagonal[f]) for f in funcs) + " |")
    return lines


def sparsity_table(runs: list[AnalysisResults]) -> list[str]:
    lines = [
        "| model | below 0.2 (activation) | below 0.2 (output) | 5% loss rise, activation "
        "| 5% loss rise, output | activated at CETT 0.1 | activated at CETT 0.2 |",
        "|---" * 7 + "|",
    ]
    for r in runs:
        s = r.sparsity
        rise, cett = s.masked.rise_5pct_ratio, s.cett.mean_activated_ratio
        lines.append(
            f"| {name_of(r)} | {mean(s.below['activation']):.1%} | "
            f"{mean(s.below['output']):.1%} | {pct(rise['activation'])} | "
            f"{pct(rise['output'])} | {cett['0.1']:.1%} | {cett['0.2']:.1%} |"
        )
    lines.append(f"| paper | {PAPER_TEXT['below']} | | {PAPER_TEXT['masked']} | | | |")
    return lines


def funcscore_table(runs: list[AnalysisResults]) -> list[str]:
    funcs = runs[0].functionalities
    lines = ["| model | " + " | ".join(funcs) + " |", "|---" * (len(funcs) + 1) + "|"]
    for r in runs:
        per_layer, f_s = r.funcscore.per_layer, r.funcscore
        lines.append(
            f"| {name_of(r)}: best (train), layer mean | "
            + " | ".join(f"{mean(per_layer[f]['best']):.2f}" for f in funcs)
            + " |"
        )
        lines.append(
            "| random activations: best, layer mean | "
            + " | ".join(f"{mean(per_layer[f]['random_best']):.2f}" for f in funcs)
            + " |"
        )
        lines.append(
            "| selected neurons on **test** (held out) | "
            + " | ".join(f"{f_s.heldout_top[f]:.2f}" for f in funcs)
            + " |"
        )
        lines.append(
            "| random neurons on test | "
            + " | ".join(f"{f_s.heldout_random[f]:.2f}" for f in funcs)
            + " |"
        )
    return lines


def partition_table(runs: list[AnalysisResults]) -> list[str]:
    lines = [
        "| model | off-diagonal mean | largest pair | random sets (measured) | "
        "random (expected k/d_ff) |",
        "|---" * 5 + "|",
    ]
    for r in runs:
        p, funcs = r.partition, r.partition.rows
        pairs = [
            (p.matrix[i][j], f"{funcs[i]}-{funcs[j]}")
            for i in range(len(funcs))
            for j in range(i + 1, len(funcs))
        ]
        value, pair = max(pairs)
        lines.append(
            f"| {name_of(r)} | {p.off_diagonal_mean:.3f} | {pair} {value:.3f} | "
            f"{p.random_empirical:.3f} | {p.random_expected:.3f} |"
        )
    lines.append(f"| paper | {PAPER_TEXT['partition']} | | | |")
    return lines


def main() -> None:
    runs = [load_results(path) for path in sys.argv[1:]]
    for r in runs:
        p = r.provenance
        print(f"- `{p.command}`: {p.seconds:.0f} s, {p.model_fingerprint}, data {p.dataset_hash}")
    for title, table in (
        ("Ablation (paper Fig 9), PPL increase on the test split", ablation_table),
        ("Ablation diagonal per functionality (* = not the largest in its column)", diagonal_table),
        ("Sparsity (paper Figs 6-7) and CETT", sparsity_table),
        ("FuncScore (paper Fig 8): mean over layers", funcscore_table),
        ("Partition (paper Fig 10)", partition_table),
    ):
        print(f"\n### {title}\n")
        print("\n".join(table(runs)))


if __name__ == "__main__":
    main()
