"""One run of workers on a study, from the first line to the summary and the exit status.

Shared by ``hpsearch run`` (a search) and ``hpsearch confirm`` (a confirmation): both
hand :func:`run_workers` a :class:`RunRequest`, which names the study, the run's kind,
the prepared data, the devices and the command's worker options.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import optuna

from hpsearch.paths import Workdir
from hpsearch.run.claims import MAX_ATTEMPTS, SlotBoard, exhausted_slots
from hpsearch.run.context import Placement, StudyAccess, WorkerContext
from hpsearch.run.dataprep import PreparedData
from hpsearch.run.kinds import RunKind
from hpsearch.run.launch import LaunchResult, launch
from hpsearch.run.plan import DevicePlan, fit_to_machine, machine_capacity
from hpsearch.run.progress import Progress
from hpsearch.run.tracking import report_wandb_runs, resolve_wandb_mode, shut_down
from hpsearch.storage import Heartbeat, redact
from hpsearch.study.summary import print_summary
from hpsearch.trainer_api import TrainerAPI
from hpsearch.trials import best_search_trial
from trainer.errors import UserError


@dataclass(frozen=True)
class WorkerOptions:
    """What the command line says about the workers of a run."""

    n_trials: int | None = None
    """Start at most this many trials in this run (``--n-trials``)."""
    timeout_s: float | None = None
    """Start no new trial after this many seconds (``--timeout``, or the study's)."""
    heartbeat: Heartbeat = dataclasses.field(default_factory=Heartbeat)
    wandb_flag: str | None = None
    retry_failed: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace, timeout_s: float | None = None) -> WorkerOptions:
        return cls(
            n_trials=args.n_trials,
            timeout_s=args.timeout or timeout_s,
            heartbeat=Heartbeat() if args.heartbeat is None else Heartbeat(args.heartbeat),
            wandb_flag=args.wandb,
            retry_failed=bool(getattr(args, "retry_failed", False)),
        )


@dataclass(frozen=True)
class RunRequest:
    """A run to launch: the study, what it runs, on what data, where, and how."""

    study: optuna.Study
    storage: optuna.storages.RDBStorage
    url: str
    kind: RunKind
    data: PreparedData
    workdir: Workdir
    trainer: TrainerAPI
    plan: DevicePlan
    options: WorkerOptions


def run_workers(request: RunRequest) -> int:
    """Start the workers, show their progress, summarise; the exit status."""
    study, storage, kind = request.study, request.storage, request.kind
    board = SlotBoard(study, storage, kind.n_slots)
    if request.options.retry_failed:
        count = board.retry_failed()
        print(f"--retry-failed: {count} trial(s) that had failed on every attempt will run again")
    done_before = board.counts()["done"]
    plan = _fit_workers(request, board.open_slots())
    best = best_search_trial(study)  # earlier runs' best: the trial lines start from it
    progress = Progress(
        kind.n_slots,
        kind.metric,
        kind.spec.direction,
        done_before=done_before,
        best_before=best.value if best is not None else None,
    )
    progress.message(_first_line(request, plan, done_before))
    contexts = _worker_contexts(request, plan)
    storage.engine.dispose()  # workers connect themselves; idle ones here only cost slots
    try:
        result = launch(contexts, request.options.n_trials, progress.handle)
    finally:
        progress.close()
    _say_if_timed_out(contexts[0].deadline, board, result)
    return _summarise(request, contexts[0].wandb_mode, board, result)


def _first_line(request: RunRequest, plan: DevicePlan, done_before: int) -> str:
    kind = request.kind
    skipped = kind.slots_note()
    return (
        f"study {request.study.study_name!r} ({kind.describe()}) on {redact(request.url)}: "
        f"{kind.n_slots} trials in all{f' ({skipped})' if skipped else ''}, {done_before} "
        f"done before; {request.data.describe()}; {plan.describe()}"
    )


def _fit_workers(request: RunRequest, left: int) -> DevicePlan:
    """No more workers than the machine holds (cores, memory measured) or trials left;
    one line says so when that is fewer than planned."""
    if request.options.n_trials is not None:
        left = min(left, request.options.n_trials)
    data = request.data
    # A worker holds the training and validation images, one byte per pixel.
    images = data.counts.get("train", 0) + data.counts.get("val", 0)
    capacity = machine_capacity(images * data.config.image_size**2)
    fitted, note = fit_to_machine(request.plan, left, capacity)
    if note:
        print(f"hpsearch run: {note}", file=sys.stderr)
    return fitted


def _worker_contexts(request: RunRequest, plan: DevicePlan) -> list[WorkerContext]:
    """One context per worker of ``plan``."""
    options = request.options
    wandb_mode = resolve_wandb_mode(options.wandb_flag)
    if wandb_mode != "off":
        _wandb_without_home(request.workdir.root)
    timeout = options.timeout_s
    base = WorkerContext(
        access=StudyAccess(request.url, request.study.study_name, options.heartbeat),
        placement=Placement(index=0, device=plan.device, threads=plan.threads or None),
        kind=request.kind,
        data=request.data.config,
        workdir=request.workdir,
        trainer=request.trainer,
        wandb_mode=wandb_mode,
        deadline=time.time() + timeout if timeout else None,
    )
    gpus = plan.gpus or (None,) * plan.workers
    return [
        dataclasses.replace(
            base, placement=dataclasses.replace(base.placement, index=i, cuda_visible=gpu)
        )
        for i, gpu in enumerate(gpus)
    ]


def _wandb_without_home(workdir: Path) -> None:
    """Without $HOME (some schedulers' jobs), wandb finds no folder for its cache and logs
    and prints an error on a run that succeeds: give it folders in the workdir. The
    worker processes inherit them."""
    if os.environ.get("HOME") or os.environ.get("XDG_CACHE_HOME"):
        return
    for name, sub in (("CACHE", "cache"), ("CONFIG", "config"), ("DATA", "data")):
        os.environ.setdefault(f"WANDB_{name}_DIR", str(workdir / "wandb" / sub))


def _say_if_timed_out(deadline: float | None, board: SlotBoard, result: LaunchResult) -> None:
    """One line when the time limit, not the end of the study, stopped the run."""
    if deadline is None or time.time() < deadline or result.interrupted:
        return
    left = board.open_slots()
    if left:
        print(
            f"hpsearch run: time limit reached (--timeout or the study's timeout_s): no trial "
            f"started after it; {left} trial(s) left: run the same command again to go on",
            file=sys.stderr,
        )


def _summarise(request: RunRequest, wandb_mode: str, board: SlotBoard, result: LaunchResult) -> int:
    """The end-of-run table, the wandb study table, and the exit status."""
    study = request.study
    print_summary(study, request.kind.metric, study.study_name)
    if wandb_mode != "off":
        report_wandb_runs(study, wandb_mode, request.workdir.wandb)
        shut_down()
    if result.interrupted:
        print("interrupted: completed trials are saved; run the same command again to resume")
        return 128 + result.stop_signal
    if result.errors:
        raise UserError(result.errors[0])
    if result.died:
        return _report_deaths(board, result.died)
    return _report_exhausted(study, request.storage)


def _report_exhausted(study: optuna.Study, storage: optuna.storages.RDBStorage) -> int:
    """Exit status 1, and how to retry, when trials failed on every attempt."""
    slots = exhausted_slots(study, storage)
    if not slots:
        return 0
    print(
        f"hpsearch run: {len(slots)} trial(s) failed on all {MAX_ATTEMPTS} attempts "
        f"(slot(s) {', '.join(map(str, slots))}; `hpsearch status` shows their errors): "
        "the study is not done. Fix the cause, then run the same command with --retry-failed",
        file=sys.stderr,
    )
    return 1


def _report_deaths(board: SlotBoard, died: list[tuple[int, int | None]]) -> int:
    left = board.open_slots()
    codes = ", ".join(f"worker {i}: exit code {code}" for i, code in died)
    then = (
        f"{left} trial(s) left: run the same command again to finish them"
        if left
        else "their trials were run again by the others"
    )
    print(f"hpsearch run: {len(died)} worker process(es) died ({codes}); {then}", file=sys.stderr)
    return 1 if left else 0
