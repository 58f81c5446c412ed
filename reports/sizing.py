"""Figure sizes and titles that fit the report page and the PNG copies.

Every figure gets a fixed width and height, so the HTML page and its PNG show the same
layout; no width exceeds the page's content width. Titles are wrapped at word breaks so
that no line is wider than the figure. Text widths are estimated, not measured: the
estimate is deliberately generous (it assumes a wide sans-serif such as Verdana or
DejaVu Sans, the widest fonts plotly's default family falls back to), so a title that
fits the estimate fits the real font.
"""

from __future__ import annotations

import re

import plotly.graph_objects as go

#: Content width of report.html (the CSS max-width of its body): no figure is wider.
PAGE_WIDTH_PX = 1200
#: Font size of figure titles, and of the smaller note line(s) under a title.
TITLE_FONT_PX = 16
NOTE_FONT_PX = 12
#: Left edge of the title, as a fraction of the figure's width (plotly_white's default).
TITLE_X = 0.05
#: Room kept free to the right of the longest title line.
TITLE_RIGHT_PAD_PX = 16
#: Space above the first title line (the HTML page shows plotly's toolbar there) and
#: between the title and the plot area.
TITLE_TOP_PAD_PX = 34
TITLE_GAP_PX = 30
LINE_HEIGHT = 1.35

# Advance widths in em, rounded up from DejaVu Sans (Verdana's metrics, the wider of the
# two); Arial/Liberation Sans are narrower everywhere.
_NARROW = set("fijlrtI.,:;'|!()[]{}/ -")
_WIDE = set("mwMW—%#=×@&")
_NARROW_EM, _WIDE_EM, _UPPER_EM, _OTHER_EM = 0.42, 1.0, 0.8, 0.66
_TAG = re.compile(r"<[^>]+>")
_NOTE_OPEN = f'<span style="font-size: {NOTE_FONT_PX}px">'


def text_width(text: str, font_px: float) -> float:
    """A generous estimate of the width of ``text`` (HTML tags ignored) in pixels."""
    plain = _TAG.sub("", text)
    em = 0.0
    for char in plain:
        if char in _NARROW:
            em += _NARROW_EM
        elif char in _WIDE:
            em += _WIDE_EM
        elif char.isupper():
            em += _UPPER_EM
        else:
            em += _OTHER_EM
    return em * font_px


def wrap_text(text: str, max_px: float, font_px: float) -> list[str]:
    """``text`` broken into lines no wider than ``max_px``, preferably at " — ".

    A single word wider than the line stays whole on its own line.
    """
    lines: list[str] = []
    for part in text.split(" — "):
        if lines and text_width(f"{lines[-1]} — {part}", font_px) <= max_px:
            lines[-1] = f"{lines[-1]} — {part}"
            continue
        current = ""
        for word in part.split(" "):
            candidate = f"{current} {word}" if current else word
            if current and text_width(candidate, font_px) > max_px:
                lines.append(current)
                current = word
            else:
                current = candidate
        lines.append(current)
    return lines


def title_room(width: int) -> float:
    """Pixels a title line may take in a figure ``width`` pixels wide."""
    return width * (1 - TITLE_X) - TITLE_RIGHT_PAD_PX


def fit_figure(
    fig: go.Figure, title: str, *, width: int, height: int, note: str | None = None
) -> go.Figure:
    """Size ``fig`` (width capped at the page's), wrap ``title`` and ``note`` to fit it.

    ``height`` is the figure's height with a one-line title; more lines make it taller.

    The note, in a smaller font under the title, says what the reader must know to read
    the figure (what is fixed, how many trials it rests on). Returns ``fig``.
    """
    width = min(width, PAGE_WIDTH_PX)
    room = title_room(width)
    main = wrap_text(title, room, TITLE_FONT_PX)
    notes = wrap_text(note, room, NOTE_FONT_PX) if note else []
    text = "<br>".join([*main, *(f"{_NOTE_OPEN}{line}</span>" for line in notes)])
    title_px = LINE_HEIGHT * (TITLE_FONT_PX * len(main) + NOTE_FONT_PX * len(notes))
    # ``height`` is for a one-line title; every further line adds its own height.
    extra = title_px - LINE_HEIGHT * TITLE_FONT_PX
    # plotly centres the lines after the first on the first one's place, so a title of
    # several lines starts higher by half of what they add; the padding makes up for it.
    fig.update_layout(
        template="plotly_white",
        width=width,
        height=round(height + extra),
        title={
            "text": text,
            "x": TITLE_X,
            "xanchor": "left",
            "xref": "container",
            "y": 1,
            "yanchor": "top",
            "yref": "container",
            "pad": {"t": round(TITLE_TOP_PAD_PX + extra / 2)},
            "font": {"size": TITLE_FONT_PX},
        },
        margin={"t": round(TITLE_TOP_PAD_PX + title_px + TITLE_GAP_PX)},
    )
    return fig


def title_lines(fig: go.Figure) -> list[tuple[str, int]]:
    """(text, font size in px) of each line of ``fig``'s title, as :func:`fit_figure` set it."""
    text = fig.layout.title.text or ""
    return [
        (_TAG.sub("", line), NOTE_FONT_PX if line.startswith(_NOTE_OPEN) else TITLE_FONT_PX)
        for line in text.split("<br>")
    ]
