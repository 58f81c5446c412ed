"""Live view of the workers: a table on a terminal, plain log lines otherwise."""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return "-" if value is None else str(value)


def _params(params: dict[str, Any] | None) -> str:
    if not params:
        return ""
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


class Progress:
    """Receives worker events (dicts) and shows them."""

    def __init__(
        self,
        total: int,
        metric: str,
        direction: str,
        done_before: int = 0,
        stream: TextIO | None = None,
        live: bool | None = None,
    ) -> None:
        self.total, self.metric, self.direction = total, metric, direction
        self.finished = done_before
        self.stream = stream or sys.stderr
        self.best: float | None = None
        self.workers: dict[int, dict[str, Any]] = {}
        self.started = time.time()
        use_live = self.stream.isatty() if live is None else live
        self._live = None
        if use_live:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(
                self._table(), console=Console(file=self.stream), refresh_per_second=4
            )
            self._live.start()

    def _better(self, value: float) -> bool:
        if self.best is None or math.isnan(self.best):
            return True
        return value > self.best if self.direction == "maximize" else value < self.best

    def handle(self, event: dict[str, Any]) -> None:
        kind, worker = event.get("kind"), event.get("worker", 0)
        row = self.workers.setdefault(worker, {"status": "starting"})
        if kind == "trial_start":
            row.update(
                status="training",
                trial=event.get("trial"),
                params=event.get("params"),
                epoch=0,
                epochs=event.get("epochs"),
                value=None,
            )
            self._line(
                f"worker {worker}: trial {event.get('trial')} started "
                f"(slot {event.get('slot')}) {_params(event.get('params'))}"
            )
        elif kind == "epoch":
            row.update(epoch=event.get("epoch"), value=event.get("value"))
            value = _fmt(event.get("value"))
            self._line(
                f"worker {worker}: trial {event.get('trial')} epoch "
                f"{event.get('epoch')}/{event.get('epochs')} {self.metric}={value}"
            )
        elif kind == "trial_end":
            state = event.get("state")
            if state in ("complete", "pruned"):
                self.finished += 1
            value = event.get("value")
            if state == "complete" and isinstance(value, float) and self._better(value):
                self.best = value
            row.update(status=f"trial {event.get('trial')} {state}")
            self._line(
                f"worker {worker}: trial {event.get('trial')} {state} after "
                f"{event.get('epochs_run', '?')} epoch(s), {self.metric}={_fmt(value)} "
                f"[{self.finished}/{self.total} done, best {_fmt(self.best)}]"
            )
        elif kind == "worker_wait":
            if row.get("status") != "waiting":
                self._line(f"worker {worker}: no free trial; waiting for running ones")
            row.update(status="waiting")
        elif kind == "worker_end":
            row.update(status=f"stopped: {event.get('reason')}")
            self._line(f"worker {worker}: stopped ({event.get('reason')})")
        elif kind == "message":
            if self._live is not None:  # printed above the live table
                self._live.console.print(str(event.get("text")), markup=False, highlight=False)
            self._line(str(event.get("text")))
        if self._live is not None:
            self._live.update(self._table())

    def message(self, text: str) -> None:
        """A line of the run's own (above the live table on a terminal)."""
        self.handle({"kind": "message", "text": text})

    def _line(self, text: str) -> None:
        if self._live is not None:
            return
        stamp = time.strftime("%H:%M:%S")
        print(f"[{stamp}] {text}", file=self.stream, flush=True)

    def _table(self) -> Any:
        from rich.table import Table

        elapsed = time.time() - self.started
        table = Table(
            title=f"{self.finished}/{self.total} trials done · best {self.metric} "
            f"{_fmt(self.best)} · {elapsed:.0f}s"
        )
        for column in ("worker", "trial", "epoch", self.metric, "params", "status"):
            table.add_column(column)
        for worker, row in sorted(self.workers.items()):
            table.add_row(
                str(worker),
                _fmt(row.get("trial")),
                f"{row.get('epoch', 0)}/{row.get('epochs') or '?'}",
                _fmt(row.get("value")),
                _params(row.get("params")),
                str(row.get("status")),
            )
        return table

    def close(self) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.stop()
            self._live = None
