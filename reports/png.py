"""PNG copies of the figures through kaleido 1.x, which drives a Chromium it does not ship.

The browser is looked for as kaleido's own search does ($BROWSER_PATH, then the usual
executable names and paths); without one the PNGs are skipped with one line saying
how to get them, and the HTML report stays complete.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kaleido
import plotly.graph_objects as go

BROWSER_ENV = "BROWSER_PATH"
BROWSER_NAMES = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "chrome",
)
TYPICAL_PATHS = (
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
    "/usr/bin/google-chrome-stable",
    "/snap/bin/chromium",
)
HOW_TO_GET_PNGS = (
    "install a Chromium (Debian/Ubuntu: apt-get install chromium) "
    f"or point ${BROWSER_ENV} at a Chrome/Chromium executable"
)
#: Seconds kaleido may spend on one figure before it gives up.
RENDER_TIMEOUT_S = 120
#: Tries of the figures that failed to render (each in a fresh browser).
RENDER_ATTEMPTS = 3


@dataclass
class PngResult:
    """PNG files written, or why none were."""

    written: list[Path] = field(default_factory=list)
    skipped: str | None = None

    def message(self) -> str | None:
        """The one line to print when PNGs were skipped, else None."""
        if self.skipped is None:
            return None
        return f"PNG figures skipped ({self.skipped}); the HTML report has every figure. " + (
            f"To get PNGs, {HOW_TO_GET_PNGS}."
        )


def _executable(path: str | os.PathLike[str]) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_browser() -> tuple[str | None, str]:
    """(path of a Chrome/Chromium executable or None, how it was found or why not).

    ``$BROWSER_PATH``, when set, is the only candidate (kaleido reads it too).
    """
    explicit = os.environ.get(BROWSER_ENV)
    if explicit:
        if _executable(explicit):
            return explicit, f"${BROWSER_ENV}"
        return None, f"${BROWSER_ENV}={explicit} is not an executable file"
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found and _executable(found):
            return found, "PATH"
    for path in TYPICAL_PATHS:
        if _executable(path):
            return path, "usual location"
    try:  # a copy fetched earlier with kaleido_get_chrome, in choreographer's folder
        from choreographer.browsers.chromium import Chromium

        local = Chromium.find_browser(skip_local=False)
    except Exception:  # any failure here just means "no local copy"
        local = None
    if local and _executable(local):
        return local, "kaleido download"
    return None, "no Chrome/Chromium found"


def write_pngs(figures: Mapping[str, go.Figure], out_dir: Path, scale: float = 1.0) -> PngResult:
    """Write ``<out_dir>/<stem>.png`` for each figure; skip all with a reason if impossible."""
    if not figures:
        return PngResult()
    browser, how = find_browser()
    if browser is None:
        return PngResult(skipped=how)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [
        {"fig": fig, "path": out_dir / f"{stem}.png", "opts": {"format": "png", "scale": scale}}
        for stem, fig in figures.items()
    ]
    # mathjax=False: kaleido would otherwise load MathJax from a CDN, and there is no network.
    kopts = {"path": browser, "mathjax": False, "timeout": RENDER_TIMEOUT_S}
    errors: list[Any] = []
    for _attempt in range(RENDER_ATTEMPTS):
        # On a busy machine kaleido may ask the page to render before its scripts have
        # loaded ("ReferenceError: kaleido_scopes is not defined"): the figures that
        # failed are rendered again, in a fresh browser.
        todo = [job for job in jobs if not job["path"].is_file()]
        if not todo:
            break
        try:
            errors = list(kaleido.write_fig_from_object_sync(todo, kopts=kopts) or [])
        except Exception as err:  # a browser that fails to start must not sink the report
            return PngResult(skipped=f"{browser} could not render: {_first_line(err)}")
    written = [job["path"] for job in jobs if job["path"].is_file()]
    if errors or len(written) < len(jobs):
        first = _first_line(errors[0]) if errors else "files missing"
        failed = len(jobs) - len(written)
        return PngResult(written=written, skipped=f"{failed} figure(s) failed: {first}")
    return PngResult(written=written)


def _first_line(err: BaseException) -> str:
    """First line of an error's message (choreographer puts several strings in args)."""
    text = err.args[0] if err.args and isinstance(err.args[0], str) else str(err)
    return (text.strip().splitlines() or [type(err).__name__])[0]
