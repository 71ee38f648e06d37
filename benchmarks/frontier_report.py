"""Tables and the plot of the quality-speed frontier (benchmarks/frontier.py's JSON pieces).

Pure functions on the pieces' JSON: every ratio is against the dense model measured in the same
piece (same process), so pieces measured at different times never mix their baselines.

    python benchmarks/frontier_report.py runs/frontier/*.json \
        --plot docs/results/configure_frontier.png
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

SPEED = ("decode", "prefill", "bytes")


def ratio_rows(piece: dict) -> list[dict]:
    """One row per model of a piece: perplexity ratio per group (exp of the NLL difference to
    dense), their mean over the routed functionalities, chrF and speed ratios to dense."""
    dense = piece["rows"]["dense"]
    out = []
    for name, row in piece["rows"].items():
        ppl = {
            g: math.exp(row["nll"][g] - dense["nll"][g])
            for g in piece["groups"]
            if g in row.get("nll", {}) and g in dense["nll"]
        }
        suite = [ppl[f] for f in piece["functionalities"] if f in ppl]
        entry = {
            "model": name,
            "budget": piece["budget"],
            "ppl": ppl,
            "perplexity": {g: math.exp(v) for g, v in row.get("nll", {}).items()},
            "mean_ppl": sum(suite) / len(suite)
            if len(suite) == len(piece["functionalities"])
            else None,
        }
        if "chrf" in row and "chrf" in dense:
            entry["chrf"] = row["chrf"]
            entry["chrf_ratio"] = row["chrf"] / dense["chrf"] if dense["chrf"] else None
        for key in SPEED:
            if key in row and key in dense:
                entry[key] = row[key] / dense[key]
        out.append(entry)
    return out


def _cell(value: float | None, fmt: str) -> str:
    return "" if value is None else fmt.format(value)


def _less_one(ratio: float | None) -> float | None:
    return None if ratio is None else ratio - 1


def markdown(pieces: list[dict]) -> str:
    """The frontier table: ppl increase per group, mean, chrF, decode/prefill/memory ratios."""
    groups = list(dict.fromkeys(g for p in pieces for g in p["groups"]))
    head = ["model", "budget", *groups, "mean (routed)", "chrF (x dense)"]
    head += ["decode x", "prefill x", "memory x"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    seen_dense = False
    for piece in pieces:
        for row in ratio_rows(piece):
            if row["model"] == "dense":
                if seen_dense:
                    continue
                seen_dense = True
            budget = "" if row["model"] == "dense" else f"{row['budget']:.0%}"
            cells = [row["model"].replace("|", "\\|"), budget]
            if row["model"] == "dense":  # absolute perplexities: the anchor of the ratios
                cells += [_cell(row["perplexity"].get(g), "{:.2f}") for g in groups]
            else:
                cells += [_cell(_less_one(row["ppl"].get(g)), "{:+.0%}") for g in groups]
            mean = row["mean_ppl"]
            cells.append(_cell(_less_one(mean), "{:+.0%}"))
            chrf = row.get("chrf")
            ratio = row.get("chrf_ratio")
            cells.append("" if chrf is None else f"{chrf:.1f} ({_cell(ratio, '{:.2f}')})")
            cells += [_cell(row.get(k), "{:.2f}") for k in SPEED]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def frontier_points(pieces: list[dict]) -> dict[str, list[tuple[float, float, float]]]:
    """{method: [(decode ratio, mean perplexity ratio, budget)]} of the rows with both."""
    points: dict[str, list] = {}
    for piece in pieces:
        for row in ratio_rows(piece):
            if row.get("decode") is not None and row["mean_ppl"] is not None:
                points.setdefault(row["model"], []).append(
                    (row["decode"], row["mean_ppl"], row["budget"])
                )
    return points


def plot(pieces: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for method, points in sorted(frontier_points(pieces).items()):
        points = sorted(points, key=lambda p: -p[2])
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        ax.plot(xs, ys, marker="o", label=method)
        for x, y, budget in points:
            if method != "dense":
                ax.annotate(
                    f"{budget:.0%}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points"
                )
    ax.set_xscale("linear")
    ax.set_yscale("log")
    ax.set_xlabel("decode speed (x dense, same process)")
    ax.set_ylabel("held-out reference perplexity (x dense, mean of routed functionalities)")
    ax.axhline(1.05, color="grey", lw=0.8, ls="--")
    ax.legend(fontsize=7)
    ax.set_title("Quality vs decode speed, SmolLM2-135M-Instruct, 2 CPU threads", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pieces", type=Path, nargs="+", help="JSON files of benchmarks/frontier.py")
    parser.add_argument("--plot", type=Path, help="write the frontier PNG here")
    args = parser.parse_args()
    pieces = [json.loads(p.read_text(encoding="utf-8")) for p in args.pieces]
    pieces.sort(key=lambda p: -p["budget"])
    print(markdown(pieces))
    if args.plot:
        print(f"\nwrote {plot(pieces, args.plot)}")


if __name__ == "__main__":
    main()
