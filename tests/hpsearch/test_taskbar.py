"""progress_bar: a rich bar on a terminal, occasional plain lines otherwise."""

from __future__ import annotations

import io

import pytest

import hpsearch.run.taskbar as taskbar
from hpsearch.run.taskbar import progress_bar


def test_plain_lines_say_the_label_and_end_with_the_total() -> None:
    out = io.StringIO()  # not a terminal
    with progress_bar("decoding images", out) as on_progress:
        for done in range(0, 101, 10):
            on_progress(done, 100)
    lines = out.getvalue().splitlines()
    # Quick work: no line until the end, then exactly one.
    assert len(lines) == 1
    assert lines[0].startswith("decoding images: 100/100 (")


def test_plain_lines_come_every_few_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(taskbar, "PLAIN_EVERY_S", 0.0)
    out = io.StringIO()
    with progress_bar("images", out) as on_progress:
        for done in (1, 2, 2, 3):
            on_progress(done, 3)
    # One line a call once the interval has passed; a repeated state is not written twice.
    assert [line.split(" (")[0] for line in out.getvalue().splitlines()] == [
        "images: 1/3",
        "images: 2/3",
        "images: 3/3",
    ]


def test_nothing_is_shown_when_no_progress_is_reported() -> None:
    for live in (False, True):
        out = io.StringIO()
        with progress_bar("images", out, live=live):
            pass
        assert out.getvalue() == ""


def test_show_false_swallows_the_calls() -> None:
    out = io.StringIO()
    with progress_bar("images", out, show=False) as on_progress:
        on_progress(3, 3)
    assert out.getvalue() == ""


def test_live_bar_draws_the_label_and_the_count() -> None:
    out = io.StringIO()
    with progress_bar("synthetic demo images", out, live=True) as on_progress:
        on_progress(0, 8)
        on_progress(8, 8)
    text = out.getvalue()
    assert "synthetic demo images" in text
    assert "8/8" in text
