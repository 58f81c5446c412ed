"""One-file HTML: plotly.js once, nothing fetched, every user string escaped."""

from __future__ import annotations

import re

import plotly.graph_objects as go
import pytest

from reports.html import Section, escape, render_page, table
from reports.report import report_title, study_sections, write_report
from tests.reports.factory import data_attrs, make_study

EVIL = "<script>alert(1)</script>"


def _evil_study(tmp_path, synthetic: bool = True):
    return make_study(
        f"sqlite:///{tmp_path / 's.db'}",
        EVIL,
        data_attrs(tmp_path / f"data{EVIL}", 0.2, synthetic=synthetic),
        tmp_path / "work",
        None,
        {},
        {"val_accuracy": 0.6},
    )


@pytest.mark.slow
def test_study_name_is_escaped_everywhere(tmp_path) -> None:
    study = _evil_study(tmp_path)
    sections, figures = study_sections(study, study.user_attrs.get("hpsearch"))
    write_report(
        tmp_path / "out",
        report_title(EVIL, True, "Search report"),
        sections,
        figures,
        synthetic=True,
        pngs=False,
    )
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert EVIL not in page
    assert "alert(1)" in page  # it is there, but only as inert text
    assert escape(EVIL) in page
    assert "<title>SYNTHETIC demo data — Search report: study &lt;script&gt;" in page


def test_plotly_js_is_embedded_once_and_nothing_is_fetched(tmp_path) -> None:
    figs = [go.Figure(go.Scatter(x=[1, 2], y=[i, 0])) for i in range(3)]
    page = render_page("t", [Section("s", [*figs, "text"])])
    # the plotly.js bundle announces itself once per copy
    assert page.count("plotly.js v") == 1
    assert page.count('class="plotly-graph-div"') == 3
    assert not re.search(r"<script[^>]+src=", page)
    assert "cdn.plot.ly" not in page.split("</head>")[0]


@pytest.mark.slow
def test_synthetic_banner_only_for_synthetic_data(tmp_path) -> None:
    for synthetic in (True, False):
        (tmp_path / str(synthetic)).mkdir()
        study = _evil_study(tmp_path / str(synthetic), synthetic=synthetic)
        sections, figures = study_sections(study, study.user_attrs.get("hpsearch"))
        out = tmp_path / f"out{synthetic}"
        write_report(out, "t", sections, figures, synthetic=synthetic, pngs=False)
        page = (out / "report.html").read_text(encoding="utf-8")
        assert ('class="banner"' in page) is synthetic
        assert ("YES — SYNTHETIC demo data" in page) is synthetic


def test_table_cells_and_text_blocks_are_escaped() -> None:
    import pandas as pd

    frame = pd.DataFrame({"param <b>": ["<img src=x onerror=alert(2)>"], "value": [0.123456789]})
    page = render_page("t", [Section("<i>s</i>", [table(frame, caption="<u>c</u>"), "<b>x</b>"])])
    for raw in ("<img src=x", "<b>", "<i>s</i>", "<u>c</u>"):
        assert raw not in page
    assert "0.1235" in page
