"""PNG export: with a Chromium when there is one, a clear skip when there is none."""

from __future__ import annotations

import plotly.graph_objects as go
import pytest

from reports.png import find_browser, write_pngs


def _figures() -> dict[str, go.Figure]:
    return {
        "line": go.Figure(go.Scatter(x=[0, 1], y=[0, 1])),
        "heat": go.Figure(go.Heatmap(z=[[1, 2], [3, 4]])),
    }


def test_missing_browser_skips_with_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-chromium"))
    result = write_pngs(_figures(), tmp_path / "out")
    assert result.written == []
    message = result.message()
    assert message is not None and "\n" not in message
    assert "no-such-chromium" in message and "apt-get install chromium" in message
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.png"))


@pytest.mark.slow
def test_pngs_with_a_browser(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    browser, _ = find_browser()
    if browser is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    result = write_pngs(_figures(), tmp_path)
    assert result.message() is None
    assert sorted(p.name for p in result.written) == ["heat.png", "line.png"]
    for path in result.written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 5000


@pytest.mark.slow
def test_figures_that_fail_to_render_are_rendered_again(tmp_path, monkeypatch) -> None:
    """kaleido on a busy machine may render before the page's scripts have loaded; the
    figures that failed are tried again."""
    import kaleido

    browser, _ = find_browser()
    if browser is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    real = kaleido.write_fig_from_object_sync
    calls: list[int] = []

    def flaky(jobs, **kwargs):
        calls.append(len(jobs))
        if len(calls) == 1:  # the first try fails one figure, as the race does
            real(jobs[1:], **kwargs)
            return [RuntimeError("ReferenceError: kaleido_scopes is not defined")]
        return real(jobs, **kwargs)

    monkeypatch.setattr(kaleido, "write_fig_from_object_sync", flaky)
    result = write_pngs(_figures(), tmp_path)
    assert result.message() is None
    assert sorted(p.name for p in result.written) == ["heat.png", "line.png"]
    assert calls == [2, 1]  # the second try renders only the figure that failed
