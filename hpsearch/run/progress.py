"""Live view of the workers: a table on a terminal, plain log lines otherwise.

On a terminal the table is redrawn four times a second from the current state (its
clock ticks between epochs), and each trial's end is a line above it; elsewhere every
event is one time-stamped line.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TextIO

from hpsearch.run.events import (
    EpochEnded,
    Event,
    Message,
    TrialEnded,
    TrialStarted,
    WorkerStopped,
    WorkerWaiting,
)
from hpsearch.trials.applicable import applicable

Clock = Callable[[], float]

#: Why a worker stopped -> the flag that caused it, for the "how to go on" line.
STOP_FLAGS = {"n-trials reached": "--n-trials", "timeout": "--timeout"}


def format_duration(seconds: float) -> str:
    """``45s``, ``3m 05s``, ``2h 07m``: whole seconds, counted down, never negative."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m"


def estimate_eta(
    durations: Sequence[float], remaining: int, running_elapsed: Sequence[float], workers: int
) -> float | None:
    """Seconds until the study's last trial ends; None before a trial has finished.

    Each of the ``remaining`` trials (running ones included) takes the mean of the
    finished ``durations``; what running trials have already spent (up to one mean
    each) is done; ``workers`` share the rest.
    """
    if not durations:
        return None
    return _eta(sum(durations) / len(durations), remaining, running_elapsed, workers)


def _eta(
    mean: float, remaining: int, running_elapsed: Sequence[float], workers: int
) -> float | None:
    """:func:`estimate_eta` from the finished trials' mean (the live view keeps their
    total and count, not every duration: its refresh costs the same at any study size)."""
    if workers < 1:
        return None
    if remaining <= 0:
        return 0.0
    spent = sum(min(e, mean) for e in running_elapsed)
    return max(0.0, mean * remaining - spent) / workers


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return "-" if value is None else str(value)


def _params(params: dict[str, Any] | None) -> str:
    if not params:
        return ""
    shown = applicable(params)
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())


class _View:
    """What ``rich.live.Live`` redraws: the table as it is at each refresh."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def __rich__(self) -> Any:
        return self.progress.table()


class Progress:
    """Receives worker events (dicts) and shows them."""

    def __init__(
        self,
        total: int,
        metric: str,
        direction: str,
        done_before: int = 0,
        best_before: float | None = None,
        stream: TextIO | None = None,
        live: bool | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.total, self.metric, self.direction = total, metric, direction
        self.finished = done_before
        self.stream = stream or sys.stderr
        self.best: float | None = best_before
        """The best value of the study so far, earlier runs' trials included."""
        self.workers: dict[int, dict[str, Any]] = {}
        self.seconds_finished = 0.0
        """Seconds the trials that finished in this run took together (start to end event)."""
        self.timed_finished = 0
        """How many trials finished in this run with a known start (so a time)."""
        self.stopped_by: set[str] = set()
        self._above: list[str] = []
        self.clock = clock
        self.started = clock()
        # The live view redraws from its own thread while events arrive.
        self._lock = threading.RLock()
        use_live = self.stream.isatty() if live is None else live
        self._live = None
        if use_live:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(_View(self), console=Console(file=self.stream), refresh_per_second=4)
            self._live.start()

    def _better(self, value: float) -> bool:
        if self.best is None or math.isnan(self.best):
            return True
        return value > self.best if self.direction == "maximize" else value < self.best

    def handle(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, Message):
                # A message is the run's, not a worker's: it adds no row to the table.
                self._say(event.text)
            else:
                row = self.workers.setdefault(event.worker, {"status": "starting"})
                self._handlers[type(event)](self, row, event)
            above, self._above = self._above, []
        if self._live is not None:
            # Printed outside self._lock: the console takes the live view's lock, and the
            # live view's refresh thread holds that while it waits for self._lock.
            for text in above:
                self._live.console.print(text, markup=False, highlight=False)
            self._live.refresh()

    def _trial_start(self, row: dict[str, Any], event: TrialStarted) -> None:
        row.update(
            status="training",
            trial=event.trial,
            params=event.params,
            epoch=0,
            epochs=event.epochs,
            value=None,
            started=self.clock(),
        )
        self._line(
            f"worker {event.worker}: trial {event.trial} started "
            f"(slot {event.slot}) {_params(event.params)}"
        )

    def _epoch(self, row: dict[str, Any], event: EpochEnded) -> None:
        row.update(epoch=event.epoch, value=event.value)
        self._line(
            f"worker {event.worker}: trial {event.trial} epoch "
            f"{event.epoch}/{event.epochs} {self.metric}={_fmt(event.value)}"
        )

    def _trial_end(self, row: dict[str, Any], event: TrialEnded) -> None:
        took = None if row.get("started") is None else self.clock() - row["started"]
        if event.state in ("complete", "pruned"):
            self.finished += 1
            if took is not None:
                self.seconds_finished += took
                self.timed_finished += 1
        value = event.value
        if event.state == "complete" and isinstance(value, float) and self._better(value):
            self.best = value
        row.update(status=f"trial {event.trial} {event.state}", started=None)
        self._say(f"worker {event.worker}: {self._end_text(event, took)}")

    def _waiting(self, row: dict[str, Any], event: WorkerWaiting) -> None:
        if row.get("status") != "waiting":
            self._line(f"worker {event.worker}: no free trial; waiting for running ones")
        row.update(status="waiting", started=None)

    def _stopped(self, row: dict[str, Any], event: WorkerStopped) -> None:
        self.stopped_by.add(event.reason)
        row.update(status=f"stopped: {event.reason}", started=None)
        self._line(f"worker {event.worker}: stopped ({event.reason})")

    _handlers: ClassVar[dict[type, Callable[[Progress, dict[str, Any], Any], None]]] = {
        TrialStarted: _trial_start,
        EpochEnded: _epoch,
        TrialEnded: _trial_end,
        WorkerWaiting: _waiting,
        WorkerStopped: _stopped,
    }

    def _end_text(self, event: TrialEnded, took: float | None) -> str:
        """``trial 3 pruned at epoch 1, val_accuracy 0.4800 (12s) [2/6 done, best 0.9000]``."""
        trial, state, epochs = event.trial, event.state, event.epochs_run
        value = f"{self.metric} {_fmt(event.value)}"
        if state == "complete":
            best_epoch = event.best_epoch if event.best_epoch is not None else "?"
            what = f"trial {trial} complete: {value} at epoch {best_epoch}"
        elif state == "pruned":
            what = f"trial {trial} pruned at epoch {epochs or '?'}, {value}"
        elif state == "paused":
            what = f"trial {trial} paused at epoch {epochs or '?'}, {value}: waits for promotion"
        elif trial is None:  # stopped or cut off before Optuna created the trial
            what = f"trial not created ({state}); its slot is free to run again"
        else:
            what = f"trial {trial} {state} after {epochs or 0} epoch(s)"
        took_text = f" ({format_duration(took)})" if took is not None else ""
        return f"{what}{took_text} [{self.finished}/{self.total} done, best {_fmt(self.best)}]"

    def message(self, text: str) -> None:
        """A line of the run's own (above the live table on a terminal)."""
        self.handle(Message(text))

    def eta(self) -> float | None:
        """Seconds left for the whole study, once a trial of this run has finished."""
        now = self.clock()
        with self._lock:
            rows = list(self.workers.values())
            running = [now - r["started"] for r in rows if r.get("started") is not None]
            active = sum(not str(r.get("status")).startswith("stopped") for r in rows)
            if not self.timed_finished:
                return None
            mean = self.seconds_finished / self.timed_finished
            return _eta(mean, self.total - self.finished, running, active)

    def title(self) -> str:
        """``2/6 trials done · best val_accuracy 0.9000 · elapsed 1m 05s · ETA 2m 10s``."""
        elapsed = format_duration(self.clock() - self.started)
        eta = self.eta()
        left = "" if eta is None else f" · ETA {format_duration(eta)}"
        return (
            f"{self.finished}/{self.total} trials done · best {self.metric} {_fmt(self.best)}"
            f" · elapsed {elapsed}{left}"
        )

    def _say(self, text: str) -> None:
        """A line in both modes: above the live table (once the event is handled), or a
        plain log line."""
        if self._live is not None:
            self._above.append(f"[{time.strftime('%H:%M:%S')}] {text}")
        self._line(text)

    def _line(self, text: str) -> None:
        """A plain log line (only when there is no live table)."""
        if self._live is not None:
            return
        stamp = time.strftime("%H:%M:%S")
        print(f"[{stamp}] {text}", file=self.stream, flush=True)

    def table(self) -> Any:
        """The live table: one row per worker."""
        from rich.table import Table

        now = self.clock()
        with self._lock:
            table = Table(title=self.title())
            for column in ("worker", "trial", "epoch", f"{self.metric} (last epoch)"):
                table.add_column(column)
            for column in ("trial time", "parameters", "status"):
                table.add_column(column)
            for worker, row in sorted(self.workers.items()):
                started = row.get("started")
                table.add_row(
                    str(worker),
                    _fmt(row.get("trial")),
                    f"{row.get('epoch', 0)}/{row.get('epochs') or '?'}",
                    _fmt(row.get("value")),
                    "-" if started is None else format_duration(now - started),
                    _params(row.get("params")),
                    str(row.get("status")),
                )
            return table

    def close(self) -> None:
        """Stop the live table; say how to go on when a flag stopped the run early."""
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None
        left = self.total - self.finished
        for reason, flag in STOP_FLAGS.items():
            if reason in self.stopped_by and left > 0:
                print(
                    f"{flag} reached: run the same command again to continue: "
                    f"{left} of {self.total} left",
                    file=self.stream,
                    flush=True,
                )
                break
