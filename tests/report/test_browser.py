"""report.html in a real browser (headless Chromium): every image decodes, the console is clean.

The test renders the synthetic results, adds a probe script to a copy of the page (the report
itself has no script; the probe goes first in <head> to see every error) and reads the
probe's verdict from the DOM Chromium dumps after load.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from brickwork.report import render_report
from tests.report.synthetic import synthetic_drilldown, synthetic_results

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message || e.type)), true);
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = `images=${imgs.length} broken=${JSON.stringify(bad)} ` +
    `errors=${JSON.stringify(window.__errors)}`;
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_report_loads_in_headless_chromium(tmp_path):
    results = synthetic_results()
    results["drilldown"] = synthetic_drilldown(results)[0]  # every section rendered
    report = render_report(results, tmp_path / "run")
    page = tmp_path / "probed.html"
    html = report.read_text(encoding="utf-8")
    page.write_text(html.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    run = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    probe = re.search(r'<pre id="probe">(.*?)</pre>', run.stdout)
    assert probe, run.stdout[-2000:]
    assert probe.group(1) == f"images={html.count('<img ')} broken=[] errors=[]"
    assert '<h3 id="drill-math">' in run.stdout  # the drill-down as the browser parsed it
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
