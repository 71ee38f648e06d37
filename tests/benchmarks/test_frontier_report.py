"""The frontier benchmark's table assembly and plot, on tiny hand-made pieces."""

import math

import pytest

from benchmarks.frontier_report import frontier_points, markdown, plot, ratio_rows


def piece(budget: float, compact_nll: float) -> dict:
    return {
        "budget": budget,
        "functionalities": ["math", "coding"],
        "groups": ["math", "coding", "gsm8k"],
        "rows": {
            "dense": {
                "nll": {"math": 1.0, "coding": 2.0, "gsm8k": 1.5},
                "chrf": 40.0,
                "decode": 10.0,
                "prefill": 100.0,
                "bytes": 1000,
            },
            "compact": {
                "nll": {"math": 1.0 + compact_nll, "coding": 2.0 + 2 * compact_nll},
                "chrf": 30.0,
                "decode": 15.0,
                "prefill": 150.0,
                "bytes": 600,
            },
            "token-level": {"nll": {"math": 1.1}},  # no coding: no mean
        },
    }


def test_ratio_rows_against_the_dense_model_of_the_same_piece():
    rows = {r["model"]: r for r in ratio_rows(piece(0.5, math.log(2)))}
    compact = rows["compact"]
    assert compact["ppl"]["math"] == pytest.approx(2.0)
    assert compact["ppl"]["coding"] == pytest.approx(4.0)
    assert "gsm8k" not in compact["ppl"]
    assert compact["mean_ppl"] == pytest.approx(3.0)
    assert compact["chrf_ratio"] == pytest.approx(0.75)
    assert compact["decode"] == pytest.approx(1.5)
    assert compact["bytes"] == pytest.approx(0.6)
    assert rows["dense"]["mean_ppl"] == pytest.approx(1.0)
    assert rows["token-level"]["mean_ppl"] is None
    assert "decode" not in rows["token-level"]


def test_markdown_one_dense_row_and_one_line_per_model_and_budget():
    table = markdown([piece(0.5, math.log(2)), piece(0.3, math.log(3))]).splitlines()
    assert table[0].startswith("| model | budget | math | coding | gsm8k | mean (routed)")
    body = table[2:]
    assert body[0] == (
        f"| dense |  | {math.e:.2f} | {math.e**2:.2f} | {math.e**1.5:.2f} | +0% | 40.0 (1.00) "
        "| 1.00 | 1.00 | 1.00 |"
    )
    assert sum(line.startswith("| dense |") for line in body) == 1
    assert len(body) == 5  # dense + 2 x (compact, token-level)
    assert "| compact | 50% | +100% | +300% |  | +200% | 30.0 (0.75) | 1.50 | 1.50 | 0.60 |" in body
    assert body[3].startswith("| compact | 30% | +200% | +800% |  | +500% |")
    assert body[2] == "| token-level | 50% | +11% |  |  |  |  |  |  |  |"


def test_frontier_points_and_plot(tmp_path):
    pieces = [piece(0.5, math.log(2)), piece(0.3, math.log(3))]
    points = frontier_points(pieces)
    assert sorted(points) == ["compact", "dense"]
    assert points["compact"] == [(1.5, pytest.approx(3.0), 0.5), (1.5, pytest.approx(6.0), 0.3)]
    out = plot(pieces, tmp_path / "frontier.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
