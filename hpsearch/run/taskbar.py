"""One progress bar for the long steps of the command line (writing images, building a cache).

The trainer shows nothing itself: it calls ``on_progress(done, total)``. :func:`progress_bar`
turns that into a rich bar on a terminal, and into an occasional plain line when stderr is
a log file or a pipe, where a bar redrawn in place would be noise.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

OnProgress = Callable[[int, int], None]

#: Seconds between plain lines; the last one (done == total) is always written.
PLAIN_EVERY_S = 10.0


@contextlib.contextmanager
def progress_bar(
    label: str, stream: TextIO | None = None, *, live: bool | None = None, show: bool = True
) -> Iterator[OnProgress]:
    """A ``(done, total)`` callback that shows the progress of ``label`` on ``stream``.

    ``stream`` defaults to stderr. On a terminal (or with ``live=True``) a rich progress
    bar appears at the first call and stays on screen, complete, when the block ends;
    otherwise a line ``label: done/total (rate/s, seconds s)`` is written every
    ``PLAIN_EVERY_S`` seconds and once at the end. Nothing is shown if the callback is
    never called (e.g. a cache that is reused, not built), nor with ``show=False`` (for
    machine-readable output).
    """
    if not show:
        yield lambda _done, _total: None
        return
    out = sys.stderr if stream is None else stream
    use_live = out.isatty() if live is None else live
    view: _RichBar | _PlainLines = _RichBar(label, out) if use_live else _PlainLines(label, out)
    try:
        yield view.update
    finally:
        view.close()


class _RichBar:
    def __init__(self, label: str, stream: TextIO) -> None:
        self.label, self.stream = label, stream
        self.progress: Any = None
        self.task: Any = None

    def update(self, done: int, total: int) -> None:
        if self.progress is None:
            self._start(total)
        self.progress.update(self.task, completed=done, total=total)

    def _start(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=Console(file=self.stream),
        )
        self.progress.start()
        self.task = self.progress.add_task(self.label, total=total)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


class _PlainLines:
    def __init__(self, label: str, stream: TextIO) -> None:
        self.label, self.stream = label, stream
        self.started = self.last = time.perf_counter()
        self.written: tuple[int, int] | None = None

    def update(self, done: int, total: int) -> None:
        now = time.perf_counter()
        finished = done >= total
        if (done, total) == self.written or not (finished or now - self.last >= PLAIN_EVERY_S):
            return
        self.last, self.written = now, (done, total)
        elapsed = max(now - self.started, 1e-9)
        print(
            f"{self.label}: {done}/{total} ({done / elapsed:.0f}/s, {elapsed:.1f} s)",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        pass
