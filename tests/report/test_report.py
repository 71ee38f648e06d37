"""The report: PNG figures, a self-contained report.html, and load_results' errors."""

from __future__ import annotations

import base64
import copy
import json
import re

import numpy as np
import pytest
from matplotlib.figure import Figure

from brickwork.analysis import AnalysisResults, load_results
from brickwork.errors import BrickworkError
from brickwork.report import render_report, summary_lines
from brickwork.report.figures import FIGURES
from tests.report.synthetic import synthetic_results

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NASTY_COMMAND = 'brickwork analyze --note "<script>alert(1)</script>" & done'


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """One rendered report (3 functionalities, 3 layers) with HTML-special provenance."""
    results = synthetic_results()
    results["provenance"]["command"] = NASTY_COMMAND
    out = tmp_path_factory.mktemp("report")
    path = render_report(results, out)
    return results, out, path, path.read_text(encoding="utf-8")


def test_render_writes_six_valid_pngs_and_the_html(rendered):
    _, out, path, _ = rendered
    assert path == out / "report.html"
    assert path.is_file()
    for name in FIGURES:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC), name
        assert len(data) > 10_000, f"{name} is suspiciously small ({len(data)} bytes)"
    assert sorted(p.name for p in out.iterdir()) == sorted([*FIGURES, "report.html"])


def test_html_embeds_every_figure_and_names_every_functionality(rendered):
    results, out, _, html = rendered
    assert html.count('<img src="data:image/png;base64,') == len(FIGURES)
    for name in FIGURES:
        assert base64.b64encode((out / name).read_bytes()).decode() in html, name
    for func in results["functionalities"]:
        assert func in html
    assert results["provenance"]["model_fingerprint"] in html
    assert results["provenance"]["dataset_hash"] in html


def test_html_is_self_contained(rendered):
    _, _, _, html = rendered
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    text = re.sub(r"href='#[a-z0-9]+'", "", text)  # the table of contents links within the page
    assert 'src="http' not in text
    for pattern in ("http://", "https://", "<link", "href=", "@import", "url("):
        assert pattern not in text, pattern


def test_html_escapes_provenance(rendered):
    _, _, _, html = rendered
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&amp; done" in html


def test_html_reports_key_numbers(rendered):
    results, _, _, html = rendered
    summary = results["ablation"]["summary"]
    assert f"{100 * summary['diagonal_mean']:.1f}%" in html
    assert f"{100 * summary['random_mean']:.1f}%" in html
    assert "largest in its column" in html
    assert "Diagonal dominance with resident neurons excluded." in html
    assert "re-run analyze for confidence intervals" in html  # no per-sample losses here
    assert "Key findings" in html and "Contents" in html and "median" in html
    assert "Llama-3-8B (paper)" in html and "112.0%" in html  # the paper's coding diagonal
    assert f"{results['partition']['random_expected']:.3f}" in html
    assert results["sparsity"]["normalization"].rstrip(".") in html
    for target in results["sparsity"]["cett"]["mean_activated_ratio"].values():
        assert f"{100 * target:.1f}%" in html


def test_render_with_null_rise_ratios(tmp_path):
    results = synthetic_results(n_layers=2)
    results["sparsity"]["masked"]["rise_5pct_ratio"] = {"activation": None, "output": None}
    html = render_report(results, tmp_path / "nested" / "out").read_text(encoding="utf-8")
    assert html.count("not reached up to 90%") == 2
    assert (tmp_path / "nested" / "out" / "fig7_masked_ratio.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("make", list(FIGURES.values()), ids=list(FIGURES))
def test_each_figure_builds_for_seven_functionalities_and_one_layer(make):
    funcs = ("coding", "ethics", "knowledge", "linguistic", "math", "translation", "writing")
    fig = make(
        AnalysisResults.from_dict(synthetic_results(n_layers=1, functionalities=funcs, seed=3))
    )
    assert isinstance(fig, Figure)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert visible
    assert fig.get_suptitle() or any(ax.get_title() for ax in visible)


def test_load_results_round_trips(tmp_path):
    results = synthetic_results(seed=7)
    (tmp_path / "results.json").write_text(json.dumps(results), encoding="utf-8")
    assert load_results(tmp_path) == AnalysisResults.from_dict(results)
    assert load_results(tmp_path / "results.json").to_dict() == results


def _assert_one_line_error(path, *fragments: str) -> None:
    with pytest.raises(BrickworkError) as info:
        load_results(path)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_load_results_missing_file(tmp_path):
    _assert_one_line_error(tmp_path, "results.json")
    _assert_one_line_error(tmp_path / "nope.json", "nope.json")


def test_load_results_invalid_json(tmp_path):
    (tmp_path / "results.json").write_text('{"provenance": ', encoding="utf-8")
    _assert_one_line_error(tmp_path, "not valid JSON")


@pytest.mark.parametrize("payload", ["missing", "list"])
def test_load_results_missing_keys(tmp_path, payload):
    results = copy.deepcopy(synthetic_results())
    del results["partition"], results["funcscore"]
    data = results if payload == "missing" else [results]
    (tmp_path / "results.json").write_text(json.dumps(data), encoding="utf-8")
    expected = ("funcscore", "partition") if payload == "missing" else ("JSON object",)
    _assert_one_line_error(tmp_path, *expected)


def test_render_rejects_incomplete_results(tmp_path):
    results = synthetic_results()
    del results["ablation"]
    with pytest.raises(BrickworkError, match="ablation"):
        render_report(results, tmp_path)


def test_report_reads_records_and_dicts_alike(tmp_path):
    results = synthetic_results(seed=5)
    from_dict = render_report(results, tmp_path / "dict").read_text(encoding="utf-8")
    records = AnalysisResults.from_dict(results)
    from_records = render_report(records, tmp_path / "records").read_text(encoding="utf-8")
    assert from_dict == from_records
    assert summary_lines(results) == summary_lines(records)
    diagonal = results["ablation"]["summary"]["diagonal_mean"]
    assert f"diagonal {diagonal:+.1%}" in summary_lines(records)[5]


def test_heldout_table_keeps_its_random_control(tmp_path):
    results = synthetic_results()
    results["funcscore"]["heldout_random"] = {
        f: 0.123 + i / 1000 for i, f in enumerate(results["functionalities"])
    }
    html = render_report(results, tmp_path).read_text(encoding="utf-8")
    assert "random neurons on test" in html
    for value in results["funcscore"]["heldout_random"].values():
        assert f"{value:.3f}" in html


def test_ablation_cells_get_bootstrap_intervals_when_per_sample_losses_exist(tmp_path):
    results = synthetic_results(seed=2)
    abl = results["ablation"]
    funcs, per_func = abl["columns"], 4
    rng = np.random.default_rng(0)
    labels = [f for f in funcs for _ in range(per_func)]
    rows = [*abl["rows"], *(f"resident-excluded/{f}" for f in funcs)]
    abl["per_sample"] = {
        "functionality": labels,
        "tokens": [10] * len(labels),
        "baseline_nll": [20.0] * len(labels),
        "nll": {r: list(rng.uniform(20, 40, len(labels))) for r in rows},
    }
    abl["random_seeds"] = {"seeds": [0, 1, 2], "matrix": [abl["matrix"][-1]] * 3}
    html = render_report(results, tmp_path).read_text(encoding="utf-8")
    assert "95% bootstrap interval" in html and "re-run analyze" not in html
    assert "random, 3 seeds" in html
    assert re.search(r"\d+\.\d%\s\[\d+\.\d%, \d+\.\d%\]", html)
