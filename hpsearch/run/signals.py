"""Stop signals: Ctrl-C and a scheduler's SIGTERM, as a state of the process.

Slurm and Kubernetes stop a job with SIGTERM. The commands treat it as Ctrl-C: the trial
in hand is recorded as interrupted, its slot released, no new trial is claimed, and the
command exits with 130 (SIGINT) or 143 (SIGTERM) after the line that says how to resume.

A stop is a state, not only an exception: the first stop signal is recorded here
(:func:`stop_requested`) before it raises ``KeyboardInterrupt``. A signal can land where
the exception is lost or turned into another one (torch's checkpoint writer turns it into
a ``RuntimeError``; Optuna records it as a failed trial); wherever an error is handled,
the handler asks :func:`stop_requested` first, and a worker claims nothing once it holds.

A scheduler may signal every process of a job and the command passes its stop on to its
workers too, so a worker process can receive the same stop twice within moments: there
a signal within :data:`DUPLICATE_S` of the first is taken for the same stop and ignored.
A later one is a second stop, which means now. Importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

#: Seconds after a stop signal within which another is taken for the same stop.
DUPLICATE_S = 5.0

#: The stop signal this process received last (SIGINT unless a SIGTERM came).
_last_stop = [signal.SIGINT]
#: When the first stop signal arrived (time.monotonic), None before one did.
_stopped_at: list[float | None] = [None]


def request_stop(signum: int) -> bool:
    """Record a stop signal; True for the first (a new stop), False for a later one."""
    _last_stop[0] = signal.Signals(signum)
    if _stopped_at[0] is not None:
        return False
    _stopped_at[0] = time.monotonic()
    return True


def stop_requested() -> bool:
    """True once a stop signal arrived in this process."""
    return _stopped_at[0] is not None


def is_duplicate() -> bool:
    """True while a new stop signal would be taken for the one that arrived first."""
    first = _stopped_at[0]
    return first is not None and time.monotonic() - first < DUPLICATE_S


def reset_stop() -> None:
    """Forget a stop (a new command in the same process, as the tests run them)."""
    _stopped_at[0] = None
    _last_stop[0] = signal.SIGINT


def interrupt(signum: int, frame: Any) -> None:
    """The command's handler: record the stop, then raise ``KeyboardInterrupt`` (every
    time: the command receives each stop once, so a second one means now)."""
    request_stop(signum)
    raise KeyboardInterrupt


def worker_interrupt(signum: int, frame: Any) -> None:
    """A worker process's handler: the first stop raises ``KeyboardInterrupt`` (the trial
    is recorded as interrupted and the worker ends); the same stop again is ignored; a
    second stop means now: the process ends at once (its trial is settled by the
    command, or by another worker once its heartbeat stops)."""
    if request_stop(signum):
        raise KeyboardInterrupt
    if not is_duplicate():
        os._exit(128 + signum)


def last_stop() -> int:
    """The stop signal received last: SIGINT, or SIGTERM if one came."""
    return int(_last_stop[0])


@contextlib.contextmanager
def stop_signals_handled() -> Iterator[None]:
    """Within the block SIGTERM and Ctrl-C record a stop and raise KeyboardInterrupt
    (:func:`interrupt`), in the main thread; elsewhere signals cannot be handled and
    nothing changes. A SIGINT the process inherited as ignored (``nohup cmd &``) stays
    ignored."""
    reset_stop()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, interrupt)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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
