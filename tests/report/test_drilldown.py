"""report.html's per-neuron drill-down on the synthetic results."""

from __future__ import annotations

import re

from brickwork.analysis.drilldown import NEURONS, PROMPTS
from brickwork.report import render_report
from tests.report.synthetic import synthetic_drilldown, synthetic_results


def _section(html: str) -> str:
    start = html.index("<h2 id='drilldown'>")
    return html[start : html.index("<h2", start + 1)]


def test_drilldown_lists_the_highest_funcscore_neurons_and_their_top_prompts(tmp_path):
    results = synthetic_results()
    results["drilldown"], scores = synthetic_drilldown(results)
    html = render_report(results, tmp_path).read_text(encoding="utf-8")
    assert "<a href='#drilldown'>Per-neuron drill-down</a>" in html  # in the contents
    section = _section(html)
    d_ff = scores.shape[2]
    for f, name in enumerate(results["functionalities"]):
        part = section[section.index(f"<h3 id='drill-{name}'>") :]
        part = part[: part.index("</table>")]
        listed = re.findall(r"<td class='l'>L(\d+):(\d+)</td>", part)
        expected = [divmod(int(i), d_ff) for i in scores[f].flatten().argsort(descending=True)]
        assert [(int(a), int(b)) for a, b in listed] == expected[:NEURONS]
        assert listed[0] == ("0", str(f))  # the planted neuron leads
        # its top prompts: the highest-activating of its own functionality, escaped
        first_row = part[: part.index("</tr>", part.index("L0:"))]
        ids = re.findall(r"\[([a-z]+-\d+)\]", first_row)
        assert ids == [f"{name}-3", f"{name}-2", f"{name}-1"][:PROMPTS]
        assert "&lt;number 3&gt;" in first_row
    assert "Top prompts of the neuron's functionality" in section and "(chance: 33%)" in section


def test_drilldown_without_the_record_says_how_to_get_it(tmp_path):
    html = render_report(synthetic_results(), tmp_path).read_text(encoding="utf-8")
    assert "re-run <code>brickwork analyze</code>" in _section(html)
