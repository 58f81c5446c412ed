"""In a real browser: every figure and its title stay inside the page and the figure.

Renders report.html in headless Chromium (skipped without one) and measures what
plotly drew: each figure's SVG against the page's content box, each title against its
figure and plotly's toolbar.
"""

from __future__ import annotations

import json
import re
import subprocess

import plotly.graph_objects as go
import pytest

from reports.html import Section, render_page
from reports.png import find_browser
from reports.sizing import PAGE_WIDTH_PX
from tests.reports.test_sizing import report_figures

pytestmark = pytest.mark.slow

#: Runs once the page has loaded: what plotly drew, as JSON in <pre id="measure">.
MEASURE = """
<script>
window.addEventListener("load", () => setTimeout(() => {
  const body = document.body, style = getComputedStyle(body), box = body.getBoundingClientRect();
  const page = [box.left + parseFloat(style.paddingLeft),
                box.right - parseFloat(style.paddingRight)];
  const rect = (el) => { if (!el) return null; const r = el.getBoundingClientRect();
                         return [r.left, r.top, r.right, r.bottom]; };
  const out = [...document.querySelectorAll(".plotly-graph-div")].map((div) => ({
    page, svg: rect(div.querySelector("svg.main-svg")), title: rect(div.querySelector(".g-gtitle")),
    modebar: rect(div.querySelector(".modebar")), text: div.querySelector(".g-gtitle").textContent,
  }));
  const pre = document.createElement("pre"); pre.id = "measure";
  pre.textContent = JSON.stringify(out); body.appendChild(pre);
}, 300));
</script>
"""


def _measure(figures: dict[str, go.Figure], tmp_path, browser: str) -> list[dict]:
    page = render_page("layout", [Section("figures", list(figures.values()))])
    path = tmp_path / "page.html"
    path.write_text(page.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    width = PAGE_WIDTH_PX + 100  # room for the body's padding and a scroll bar
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=20000",
            f"--window-size={width},1000",
            "--dump-dom",
            path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    found = re.search(r'<pre id="measure">(.*?)</pre>', done.stdout, re.S)
    assert found, done.stderr[-2000:]
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


@pytest.fixture(scope="module")
def browser() -> str:
    found, _ = find_browser()
    if found is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    return found


@pytest.fixture(scope="module")
def figures(tmp_path_factory) -> dict[str, go.Figure]:
    return report_figures(tmp_path_factory)


# plotly's default fonts, and DejaVu Sans: as wide as Verdana, the widest it falls back to
@pytest.mark.parametrize("family", [None, "DejaVu Sans"])
def test_figures_and_titles_stay_inside(figures, tmp_path, browser: str, family) -> None:
    if family:
        figures = {k: go.Figure(v).update_layout(font_family=family) for k, v in figures.items()}
    measured = _measure(figures, tmp_path, browser)
    assert len(measured) == len(figures)
    for stem, m in zip(figures, measured, strict=True):
        left, right = m["page"]
        s_left, s_top, s_right, _ = m["svg"]
        t_left, t_top, t_right, _ = m["title"]
        assert left - 1 <= s_left and s_right <= right + 1, (stem, "figure wider than the page")
        assert s_left <= t_left and t_right <= s_right, (stem, m["text"], "title cut")
        assert s_top <= t_top, (stem, "title above the figure")
        b_left, _, _, b_bottom = m["modebar"]
        assert t_top >= b_bottom or t_right <= b_left, (stem, "title under plotly's toolbar")
