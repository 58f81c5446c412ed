"""Starting the workers of a run and supervising them until they stop.

One worker on the CPU runs in this process; several run as ``spawn`` processes that
send their events to a queue the parent shows. Ctrl-C reaches the parent only: it
sends each worker one SIGTERM, which a worker treats like Ctrl-C (records its trial
as interrupted and releases the slot), so no second signal lands mid-record. A job
scheduler's stop (Slurm, Kubernetes) is SIGTERM to the parent: handled the same way,
exit status 143. A worker whose parent is gone (SIGKILL, a crash) stops as if
interrupted instead of training on unseen.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import queue as queue_mod
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hpsearch.signals import last_stop, stop_signals_noted
from hpsearch.worker import TrialBudget, WorkerContext, worker_main
from trainer.errors import UserError

Emit = Callable[[dict[str, Any]], None]

#: How long interrupted workers get to record their trials before they are killed.
STOP_GRACE_S = 60.0

#: Seconds between a worker's looks at its parent where the kernel cannot tell it.
PARENT_POLL_S = 1.0

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass
class LaunchResult:
    """How the workers of one run ended."""

    interrupted: bool = False
    stop_signal: int = signal.SIGINT
    """The signal that interrupted the run (SIGINT or SIGTERM)."""
    errors: list[str] = field(default_factory=list)
    """One-line errors that stopped a worker (exit status 2)."""
    died: list[tuple[int, int | None]] = field(default_factory=list)
    """(worker, exit code) of workers that died of something else."""


def launch(contexts: list[WorkerContext], n_trials: int | None, emit: Emit) -> LaunchResult:
    """Run the workers to the end; one CPU worker runs in this process."""
    if len(contexts) == 1 and contexts[0].device == "cpu":
        return _run_inline(contexts[0], n_trials, emit)
    return _run_processes(contexts, n_trials, emit)


def _run_inline(ctx: WorkerContext, n_trials: int | None, emit: Emit) -> LaunchResult:
    try:
        worker_main(ctx, TrialBudget(n_trials), emit)
    except KeyboardInterrupt:
        return LaunchResult(interrupted=True, stop_signal=last_stop())
    return LaunchResult()


def _child(ctx: WorkerContext, limit: int | None, shared: Any, events: Any, parent: int) -> None:
    """A worker process: exit status 0 (done), 2 (a user error, sent as an event), 130."""
    # Ctrl-C at a terminal reaches every process of the group: workers ignore it and
    # wait for the parent's SIGTERM instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _interrupt_once)
    _stop_with_parent(parent)
    try:
        worker_main(ctx, TrialBudget(limit, shared), events.put)
    except KeyboardInterrupt:
        if os.getppid() != parent:
            # Nobody reads the events any more: do not wait on the queue at exit.
            events.cancel_join_thread()
        raise SystemExit(130) from None
    except UserError as err:
        events.put(
            {"kind": "message", "text": f"worker {ctx.index}: error: {err}", "error": str(err)}
        )
        raise SystemExit(2) from None


def _interrupt_once(signum: int, frame: Any) -> None:
    """A worker's SIGTERM: stop like Ctrl-C. Later ones are ignored, so that a scheduler
    signalling every process and the parent passing its stop on never lands a second
    signal while the trial is being recorded."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def _stop_with_parent(parent: int) -> None:
    """Have this worker receive SIGTERM (recorded like Ctrl-C) when ``parent`` is gone.

    On Linux the kernel sends it (``PR_SET_PDEATHSIG``); elsewhere a thread watches the
    parent's pid. A parent that died before this ran is caught by the check after.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0:
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGTERM)
            return
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)


class _Supervisor:
    """The parent's side: forward events, stop the workers on Ctrl-C."""

    def __init__(self, procs: list[Any], events: Any, emit: Emit) -> None:
        self.procs, self.events, self.emit = procs, events, emit
        self.result = LaunchResult()

    def show(self, event: dict[str, Any]) -> None:
        if event.get("error"):
            self.result.errors.append(event["error"])
        self.emit(event)

    def drain(self, timeout: float) -> None:
        with contextlib.suppress(queue_mod.Empty):
            self.show(self.events.get(timeout=timeout))

    def alive(self) -> bool:
        return any(p.is_alive() for p in self.procs)

    def watch(self) -> None:
        try:
            while self.alive():
                self.drain(0.5)
        except KeyboardInterrupt:
            self.result.interrupted = True
            self.result.stop_signal = last_stop()
            self.stop()

    def stop(self) -> None:
        with stop_signals_noted() as hurry:
            for proc in self.procs:
                if proc.is_alive():
                    proc.terminate()
            deadline = time.time() + STOP_GRACE_S
            # A second Ctrl-C (or SIGTERM) means: stop now, without waiting for the workers.
            while self.alive() and time.time() < deadline and not hurry.is_set():
                self.drain(0.5)
            for proc in self.procs:
                if proc.is_alive():
                    proc.kill()

    def finish(self) -> LaunchResult:
        for proc in self.procs:
            proc.join()
        while True:
            try:
                self.show(self.events.get_nowait())
            except (queue_mod.Empty, OSError, ValueError):
                break
        if any(p.exitcode == 130 for p in self.procs):
            self.result.interrupted = True
        if not self.result.interrupted:
            self.result.died = [
                (i, p.exitcode) for i, p in enumerate(self.procs) if p.exitcode not in (0, 2, 130)
            ]
        return self.result


def _run_processes(contexts: list[WorkerContext], n_trials: int | None, emit: Emit) -> LaunchResult:
    mpctx = mp.get_context("spawn")
    events = mpctx.Queue()
    shared = mpctx.Value("i", 0)  # trials started by all workers, for --n-trials
    procs = [
        mpctx.Process(
            target=_child, args=(ctx, n_trials, shared, events, os.getpid()), daemon=False
        )
        for ctx in contexts
    ]
    for proc in procs:
        proc.start()
    supervisor = _Supervisor(procs, events, emit)
    supervisor.watch()
    return supervisor.finish()
