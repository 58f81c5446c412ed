"""Every figure fits the page and its PNG: widths capped, titles wrapped and whole."""

from __future__ import annotations

import re

import plotly.graph_objects as go
import pytest

from reports.final import compute_metrics, final_figures
from reports.sizing import (
    NOTE_FONT_PX,
    PAGE_WIDTH_PX,
    TITLE_FONT_PX,
    fit_figure,
    text_width,
    title_lines,
    title_room,
    wrap_text,
)
from reports.study_figures import MIN_IMPORTANCE_TRIALS, study_figures
from tests.reports.factory import make_grid_study
from tests.reports.test_final import random_frame

#: The widest sans-serif fonts a report is likely drawn in (plotly's default family is
#: "Open Sans", Verdana, Arial; DejaVu Sans has Verdana's widths, Liberation Sans Arial's).
REAL_FONTS = ("DejaVuSans.ttf", "LiberationSans-Regular.ttf")  # titles are regular weight


def report_figures(tmp_path_factory) -> dict[str, go.Figure]:
    """Every figure an export's report draws, for a study with every figure drawn."""
    frame = random_frame(80, 8)
    figures = final_figures(frame, compute_metrics(frame))
    path = tmp_path_factory.mktemp("layout") / "g.db"
    study = make_grid_study(f"sqlite:///{path}", n_complete=MIN_IMPORTANCE_TRIALS + 1)
    drawn = study_figures(study, {"metric": "val_accuracy"})
    assert not drawn.skipped
    return {**figures, **{f"study_{k}": v for k, v in drawn.figures.items()}}


@pytest.fixture(scope="module")
def figures(tmp_path_factory) -> dict[str, go.Figure]:
    return report_figures(tmp_path_factory)


def test_every_figure_has_a_size_within_the_page(figures) -> None:
    assert len(figures) == 9  # 3 of the final model, 6 of the study
    for stem, fig in figures.items():
        # a fixed size: the HTML and the PNG show the same layout
        assert fig.layout.width and fig.layout.height, stem
        assert fig.layout.width <= PAGE_WIDTH_PX, stem


def test_every_title_line_fits_its_figure(figures) -> None:
    for stem, fig in figures.items():
        assert fig.layout.title.font.size == TITLE_FONT_PX, stem
        for text, size in title_lines(fig):
            assert text_width(text, size) <= title_room(fig.layout.width), (stem, text)


def test_long_titles_are_wrapped_not_cut(figures) -> None:
    # the titles the issue saw cut: "… — test split, r" and "study gri"
    normalized = [t for t, _ in title_lines(figures["confusion_normalized"])]
    assert normalized == [
        "Confusion matrix, row-normalized (recall per true class)",
        "test split, n = 80",
    ]
    epochs = " ".join(t for t, _ in title_lines(figures["study_intermediate_values"]))
    assert epochs.endswith("— study grid")


def test_slice_plot_keeps_every_panel_within_the_page(figures) -> None:
    fig = figures["study_slice"]
    assert fig.layout.width == PAGE_WIDTH_PX
    domains = [fig.layout[k].domain for k in fig.layout if k.startswith("xaxis")]
    assert len(domains) == 4 and max(d[1] for d in domains) <= 1.0


@pytest.mark.parametrize("font_file", REAL_FONTS)
def test_width_estimate_is_generous_for_real_fonts(figures, font_file: str) -> None:
    image_font = pytest.importorskip("PIL.ImageFont")
    lines = [line for fig in figures.values() for line in title_lines(fig)]
    lines.append(("WWW mmm ——— %%% 000 lung_opacity MAXIMIZE", TITLE_FONT_PX))
    for text, size in lines:
        try:
            font = image_font.truetype(font_file, size)
        except OSError:
            pytest.skip(f"{font_file} is not installed")
        assert font.getlength(text) <= text_width(text, size), text


def test_wrap_prefers_the_dash_and_keeps_every_word() -> None:
    title = "Validation metric per epoch (complete, pruned and running trials) — study grid"
    lines = wrap_text(title, 600, TITLE_FONT_PX)
    assert lines == [
        "Validation metric per epoch (complete, pruned and running trials)",
        "study grid",
    ]
    long = "x" * 80
    # a word wider than the line is kept whole, on its own line
    assert wrap_text(f"a {long} b", 100, TITLE_FONT_PX) == ["a", long, "b"]
    sentence = "one two three four five six seven eight nine ten eleven twelve"
    lines = wrap_text(sentence, 120, NOTE_FONT_PX)
    assert " ".join(lines) == sentence
    assert all(text_width(line, NOTE_FONT_PX) <= 120 for line in lines)


def test_fit_figure_caps_width_and_grows_with_title_lines() -> None:
    one = fit_figure(go.Figure(), "short", width=5000, height=400)
    assert one.layout.width == PAGE_WIDTH_PX and one.layout.height == 400
    three = fit_figure(go.Figure(), "word " * 60, width=500, height=400, note="fixed: a=1")
    lines = title_lines(three)
    assert len(lines) >= 3 and lines[-1] == ("fixed: a=1", NOTE_FONT_PX)
    assert three.layout.height > 400 and three.layout.margin.t > one.layout.margin.t
    assert not re.search(r"<(?!br>|span|/span)", three.layout.title.text)
