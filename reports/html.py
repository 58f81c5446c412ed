"""One self-contained HTML file: plotly.js embedded once, every user string escaped.

A page is a title, an optional banner and sections; a section holds blocks, each a
plotly figure, a :class:`Markup` (HTML built here from escaped parts) or a plain
string (escaped and shown as a paragraph).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from reports.sizing import PAGE_WIDTH_PX


def escape(value: Any) -> str:
    """HTML-escape ``str(value)``, quotes included; use on every user-given string."""
    return html.escape(str(value), quote=True)


@dataclass(frozen=True)
class Markup:
    """HTML that was assembled from escaped parts and is inserted as it is."""

    html: str


@dataclass
class Section:
    """A heading and its blocks, in order."""

    title: str
    blocks: list[go.Figure | Markup | str] = field(default_factory=list)


def format_value(value: Any, digits: int = 4) -> str:
    """A cell as text: floats to ``digits`` significant digits, None/NaN as an en dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def table(frame: pd.DataFrame, caption: str | None = None, digits: int = 4) -> Markup:
    """An HTML table of ``frame`` (no index); headers, cells and caption escaped."""
    head = "".join(f"<th>{escape(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(format_value(v, digits))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False, name=None)
    )
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return Markup(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def definition_list(items: Sequence[tuple[str, Any]]) -> Markup:
    """Key/value pairs as a two-column table; both sides escaped."""
    rows = "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(format_value(v))}</td></tr>" for k, v in items
    )
    return Markup(f'<table class="kv"><tbody>{rows}</tbody></table>')


# The body's content box is PAGE_WIDTH_PX wide at most; every figure fits in it.
_STYLE = f"""
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: {PAGE_WIDTH_PX}px; padding: 0 1rem; color: #222; }}
h1 {{ font-size: 1.7rem; }} h2 {{ border-bottom: 1px solid #ccc; padding-bottom: .2rem; }}
.banner {{ background: #b00020; color: white; font-weight: bold; font-size: 1.3rem;
          padding: .8rem 1rem; border-radius: 4px; margin: 1rem 0; }}
.note {{ background: #fff4ce; border-left: 4px solid #e0a800; padding: .5rem .8rem; }}
table {{ border-collapse: collapse; margin: .8rem 0; font-size: .9rem; }}
th, td {{ border: 1px solid #ddd; padding: .25rem .5rem; text-align: right; }}
th {{ background: #f4f4f4; }} table.kv th, table.kv td {{ text-align: left; }}
caption {{ caption-side: top; text-align: left; font-weight: bold; padding: .3rem 0; }}
.skipped {{ color: #666; font-style: italic; }}
.figure {{ margin: 1rem 0; overflow-x: auto; }}
"""


def render_page(title: str, sections: Sequence[Section], banner: str | None = None) -> str:
    """The whole report as one HTML string that opens offline.

    ``title`` and ``banner`` are escaped; the first figure carries plotly.js, the
    others reuse it.
    """
    parts: list[str] = []
    first_figure = True
    for section in sections:
        parts.append(f"<section><h2>{escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, go.Figure):
                div = block.to_html(
                    include_plotlyjs=first_figure,
                    full_html=False,
                    config={"displaylogo": False},
                )
                first_figure = False
                parts.append(f'<div class="figure">{div}</div>')
            elif isinstance(block, Markup):
                parts.append(block.html)
            else:
                parts.append(f"<p>{escape(block)}</p>")
        parts.append("</section>")
    banner_html = f'<div class="banner">{escape(banner)}</div>' if banner else ""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n{banner_html}\n" + "\n".join(parts) + "\n</body>\n</html>\n"
    )
