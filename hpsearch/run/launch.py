"""Starting the workers of a run and supervising them until they stop.

One worker on the CPU runs in this process; several run as ``spawn`` processes that
send their events to a queue the parent shows. Ctrl-C reaches the parent only: it
sends each worker one SIGTERM, which a worker treats like Ctrl-C (records its trial
as interrupted and releases the slot, then exits). A job scheduler's stop (Slurm,
Kubernetes) is SIGTERM to the parent, or to every process of the job: handled the same
way, exit status 143. A worker whose parent is gone (SIGKILL, a crash) stops as if
interrupted instead of training on unseen.

A stop is bounded in time: workers that have not ended :data:`STOP_GRACE_S` seconds after
the stop (or at once, on a second stop) are killed, and the parent settles the trials
they held itself (failed as interrupted, slots released), so none is left running.
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
from dataclasses import dataclass, field
from typing import Any

import optuna

from hpsearch.run.claims import Claim, SlotBoard
from hpsearch.run.context import StudyAccess, WorkerContext
from hpsearch.run.events import Emit, Event, Message, TrialEnded, TrialStarted
from hpsearch.run.outcome import TrialOutcome
from hpsearch.run.signals import last_stop, stop_signals_noted, worker_interrupt
from hpsearch.run.worker import TrialBudget, worker_main
from hpsearch.storage import open_storage
from trainer.errors import UserError

#: How long interrupted workers get to record their trials before they are killed. Within
#: Kubernetes' default termination grace (30 s) and far within the two minutes the shipped
#: Slurm and Kubernetes files give (``--signal=B:TERM@120``,
#: ``terminationGracePeriodSeconds: 120``).
STOP_GRACE_S = 25.0

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
    if len(contexts) == 1 and contexts[0].placement.device == "cpu":
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
    signal.signal(signal.SIGTERM, worker_interrupt)
    _stop_with_parent(parent)
    try:
        worker_main(ctx, TrialBudget(limit, shared), events.put)
    except KeyboardInterrupt:
        # Stopped: the trial is recorded and the slot settled. Hand the last events over
        # (unless nobody reads them any more) and end now, without the interpreter's
        # teardown, which takes seconds with torch loaded on a busy machine.
        if os.getppid() == parent:
            events.close()
            events.join_thread()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    except UserError as err:
        events.put(Message(f"worker {ctx.placement.index}: error: {err}", error=str(err)))
        raise SystemExit(2) from None


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
        self.held: dict[int, TrialStarted] = {}
        """Each worker's trial that started and has not ended (as far as its events say)."""

    def show(self, event: Event) -> None:
        if isinstance(event, Message) and event.error:
            self.result.errors.append(event.error)
        if isinstance(event, TrialStarted):
            self.held[event.worker] = event
        elif isinstance(event, TrialEnded):
            self.held.pop(event.worker, None)
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

    def finish(self, access: StudyAccess, n_slots: int) -> LaunchResult:
        for proc in self.procs:
            proc.join()
        while True:
            try:
                self.show(self.events.get_nowait())
            except (queue_mod.Empty, OSError, ValueError):
                break
        if any(p.exitcode == 130 for p in self.procs):
            self.result.interrupted = True
        if self.result.interrupted and self.held:
            with stop_signals_noted():  # one more Ctrl-C must not cut this short
                settle_abandoned(access, n_slots, list(self.held.values()), self.emit)
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
    return supervisor.finish(contexts[0].access, contexts[0].kind.n_slots)


def settle_abandoned(
    access: StudyAccess, n_slots: int, trials: list[TrialStarted], emit: Emit
) -> None:
    """Settle the trials of workers that ended in a stop without settling them (killed
    after the grace period, or ended at once by a second stop): each trial still running
    is failed as interrupted and its slot released, as the worker would have done."""
    try:
        storage = open_storage(access.storage_url)
        study = optuna.load_study(study_name=access.study_name, storage=storage)
        board = SlotBoard(study, storage, n_slots)
        for started in trials:
            claim = Claim(started.slot, started.token, attempt=0, resumed=False)
            state = board.settle_interrupted(claim, started.trial_id)
            if state is not None:  # None: the worker had settled it after all
                outcome = TrialOutcome.of_finished(state) or TrialOutcome.INTERRUPTED
                emit(TrialEnded(started.worker, started.trial, outcome.state))
    except Exception as err:  # the storage is gone: the heartbeat check settles them later
        emit(Message(f"could not record the stopped workers' trials ({err}); they are "
                     "taken over once their heartbeat is missed"))  # fmt: skip
