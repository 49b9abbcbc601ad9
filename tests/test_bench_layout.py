"""The HTML report renders in a real browser without overflowing the page.

Headless Chromium (Debian package ``chromium``; ``.ci/run`` installs it)
loads a copy of the report with a small script appended that opens every
``<details>`` and writes the bounding boxes of every chart, table, legend and
chart label into the DOM; ``--dump-dom`` hands that back.  At 1280 and
1920 px: no chart or table reaches past the page's right edge, the page
needs no horizontal scrolling, every legend lies inside its chart and no
chart label is cut off by its chart's edge.

Set ``KERNEL_BENCH_SCREENSHOTS=/some/dir`` to also save a full-page PNG per
width there (to look at).
"""

import html
import json
import os
import re
import shutil
import subprocess

import pytest

from kernel.bench.report import write_reports
from kernel.bench.runner import run_matrix

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed "
                                "(apt-get install chromium; .ci/run installs it)")

PROBE = """<script>
(function () {
  document.querySelectorAll('details').forEach(function (d) { d.open = true; });
  var box = function (el) { var r = el.getBoundingClientRect();
    return {left: r.left, right: r.right, top: r.top, bottom: r.bottom}; };
  var out = {viewport: document.documentElement.clientWidth, scrollWidth: document.documentElement.scrollWidth,
             charts: [], tables: []};
  document.querySelectorAll('svg.chart').forEach(function (svg) {
    var texts = [];
    svg.querySelectorAll('text').forEach(function (t) { texts.push(Object.assign(box(t), {text: t.textContent})); });
    var legends = [];
    svg.querySelectorAll('.legend').forEach(function (g) { legends.push(box(g)); });
    out.charts.push(Object.assign(box(svg), {label: svg.getAttribute('aria-label'), legends: legends,
                                             texts: texts}));
  });
  document.querySelectorAll('table').forEach(function (t) { out.tables.push(box(t)); });
  var pre = document.createElement('pre');
  pre.id = 'layout';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A report with every part: kernels, C loops, latency, and peer rows
    (copied from kernel rows when no server is installed: this test is about
    the layout, the peers have their own tests)."""
    run = run_matrix(["uniform", "flash-sale", "carts", "marketplace"], ["cython", "numba", "reference"],
                     ["concurrent", "ordered", "tracked"], [1, 2], scale=0.0005, rounds=1,
                     latency=dict(calls=2000, max_batches=20, open_fractions=(0.5,)))
    for m in list(run["measurements"]):
        if m["backend"] == "cython" and m["threads"] == 1 and m["workload"] in ("uniform", "carts"):
            for peer in ("Redis+Lua", "PostgreSQL"):
                run["measurements"].append({**m, "backend": peer, "kind": "peer", "threads_label": "1 client",
                                            "note": "layout test copy"})
    _, path = write_reports(run, tmp_path_factory.mktemp("layout"))
    return path


def _layout(page, width, tmp_path):
    probe = tmp_path / f"probe-{width}.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--window-size={width},1000", "--dump-dom", probe.as_uri()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'<pre id="layout">(.*?)</pre>', out, re.S)
    assert found, f"no layout in Chromium's DOM dump: {out[-500:]!r}"
    shots = os.environ.get("KERNEL_BENCH_SCREENSHOTS")
    if shots:
        os.makedirs(shots, exist_ok=True)
        subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--window-size={width},7000", f"--screenshot={os.path.join(shots, f'report-{width}.png')}",
                        page.as_uri()], capture_output=True, timeout=120)
    return json.loads(html.unescape(found.group(1)))


def _inside(inner, outer, slack=1.0):
    return (inner["left"] >= outer["left"] - slack and inner["right"] <= outer["right"] + slack
            and inner["top"] >= outer["top"] - slack and inner["bottom"] <= outer["bottom"] + slack)


@pytest.mark.parametrize("width", [1280, 1920])
def test_report_fits_the_page(report, width, tmp_path):
    layout = _layout(report, width, tmp_path)
    assert layout["viewport"] == width
    assert layout["scrollWidth"] <= width, "the page scrolls sideways"
    assert len(layout["charts"]) >= 1 + 4 + 1  # throughput, one scaling chart per workload, latency
    for chart in layout["charts"]:
        assert chart["right"] <= width and chart["left"] >= 0, f"{chart['label']} overflows the page"
        assert chart["legends"], f"{chart['label']} has no legend"
        for legend in chart["legends"]:
            assert _inside(legend, chart), f"{chart['label']}: legend outside its chart"
        cut = [t["text"] for t in chart["texts"] if not _inside(t, chart)]
        assert not cut, f"{chart['label']}: labels cut by the chart's edge: {cut}"
    for table in layout["tables"]:
        assert table["right"] <= width and table["left"] >= 0, f"a table overflows the page at {width} px"
