"""Stop signals: SIGTERM (a job scheduler's stop) handled like Ctrl-C, and told apart.

Slurm and Kubernetes stop a job with SIGTERM. The commands treat it as Ctrl-C (a
``KeyboardInterrupt``: trials recorded as interrupted, slots released, the resume
line) and exit with 143 instead of 130. Importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

#: The stop signal this process received last (SIGINT unless a SIGTERM came).
_last_stop = [signal.SIGINT]


def interrupt(signum: int, frame: Any) -> None:
    """Signal handler: remember the signal, then stop like Ctrl-C."""
    _last_stop[0] = signal.Signals(signum)
    raise KeyboardInterrupt


def last_stop() -> int:
    """The stop signal received last: SIGINT, or SIGTERM if one came."""
    return int(_last_stop[0])


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises KeyboardInterrupt, like Ctrl-C (in the main thread;
    elsewhere signals cannot be handled and nothing changes)."""
    _last_stop[0] = signal.SIGINT
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_status() -> int:
    """The exit status after a stop signal: 130 (Ctrl-C) or 143 (SIGTERM)."""
    return 128 + last_stop()


@contextlib.contextmanager
def stop_signals_noted() -> Iterator[threading.Event]:
    """Within the block SIGINT and SIGTERM raise nothing: they set the event yielded.

    Once a command is stopping, a further Ctrl-C must not cut short what it does next
    (recording trials, printing how to resume); the caller may hurry up instead.
    """
    noted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.getsignal(sig) for sig in stops}
    for sig in stops:
        signal.signal(sig, lambda signum, frame: noted.set())
    try:
        yield noted
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class StopSignalHold:
    """Holds Ctrl-C and SIGTERM back over a step that must not be cut in two.

    Between ``hold()`` and ``release()`` the first SIGINT or SIGTERM is only noted; at
    ``release()`` the handlers are put back and the noted signal handed to its handler,
    as if it had just arrived. A second signal while held is not kept waiting: it
    releases at once (twice Ctrl-C means now). Outside the main thread, or for a signal
    that is ignored or whose handler was not set from Python, nothing is held.
    """

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}
        self._noted: list[int] = []

    def hold(self) -> None:
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) not in (None, signal.SIG_IGN):
                self._previous[sig] = signal.signal(sig, self._note)

    def _note(self, signum: int, frame: Any) -> None:
        self._noted.append(signum)
        if len(self._noted) > 1:
            self.release()

    def release(self) -> None:
        previous, self._previous = self._previous, {}
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        noted, self._noted = self._noted[:1], []
        for signum in noted:
            handler = previous.get(signum)
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)  # what it would have done: end the process
