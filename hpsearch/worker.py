"""One worker: claim a slot, run its trial, settle the slot, repeat until the study is done."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from hpsearch.objective import TrialObjective, TrialOutcome, TrialReport, quiet_known_errors
from hpsearch.resilience import (
    disk_full_error,
    is_storage_outage,
    keep_heartbeat_alive,
    recurring_error,
    wait_for_storage,
)
from hpsearch.signals import StopSignalHold
from hpsearch.slots import DONE, FAILED, RELEASED, Claim, Outcome, SlotBoard
from hpsearch.spec import StudySpec
from hpsearch.stopping import check_stop
from hpsearch.storage import Heartbeat, open_storage
from hpsearch.study import build_pruner, sampler_for_slot
from hpsearch.trainer_api import TrainerAPI

if TYPE_CHECKING:
    from hpsearch.confirm import ConfirmRun
from trainer.config import DataConfig
from trainer.errors import UserError

Emit = Callable[[dict[str, Any]], None]

#: Seconds between looks at the board while other workers' trials may still fail.
POLL_S = 2.0

#: The slot status each way a trial can end leaves behind.
SLOT_STATUS = {
    TrialOutcome.COMPLETE: DONE,
    TrialOutcome.PRUNED: DONE,
    TrialOutcome.FAILED: FAILED,
    TrialOutcome.INTERRUPTED: RELEASED,
    TrialOutcome.DISK_FULL: RELEASED,
    TrialOutcome.OUTAGE: RELEASED,
    TrialOutcome.SETUP_ERROR: RELEASED,
}

#: Outcomes of trials that Optuna recorded finished before a stop signal landed.
_FINISHED = {TrialState.COMPLETE: TrialOutcome.COMPLETE, TrialState.PRUNED: TrialOutcome.PRUNED}


@dataclass(frozen=True)
class WorkerContext:
    """Everything a worker process needs; picklable, so it crosses ``spawn``."""

    index: int
    storage_url: str
    study_name: str
    spec: StudySpec
    """The study file as loaded (and overridden) by the command, never parsed again."""
    scale: str
    data: DataConfig
    workdir: Path
    trainer: TrainerAPI
    artifacts: Path | None = None
    """The shared artifact location (``--artifacts``); None: checkpoints stay in the workdir."""
    heartbeat: Heartbeat = field(default_factory=Heartbeat)
    device: str = "cpu"
    """'cpu' or 'cuda' (the one GPU this process sees)."""
    cuda_visible: str | None = None
    threads: int | None = None
    wandb_mode: str = "off"
    deadline: float | None = None
    """Wall-clock time after which no new trial starts."""
    poll_s: float = POLL_S
    val_size: int = 0
    """Images in the validation split (the stop rule's standard error needs it)."""
    follow_stop_rule: bool = True
    """False when ``--n-trials`` asks for new trials on purpose."""
    runs: tuple[ConfirmRun, ...] = ()
    """Fixed runs, one per slot (``hpsearch confirm``): trained to the budget, unpruned."""

    @property
    def n_slots(self) -> int:
        return len(self.runs) if self.runs else self.spec.budget(self.scale)


class TrialBudget:
    """Trials this invocation may still start (``--n-trials``), shared by its workers."""

    def __init__(self, limit: int | None, shared: Any = None) -> None:
        self.limit = limit
        self.shared = shared  # a multiprocessing.Value('i') across processes
        self._local = 0

    def take(self) -> bool:
        if self.limit is None:
            return True
        if self.shared is None:
            if self._local >= self.limit:
                return False
            self._local += 1
            return True
        with self.shared.get_lock():
            if self.shared.value >= self.limit:
                return False
            self.shared.value += 1
            return True

    def give_back(self) -> None:
        if self.limit is None:
            return
        if self.shared is None:
            self._local -= 1
        else:
            with self.shared.get_lock():
                self.shared.value -= 1


def worker_main(ctx: WorkerContext, budget: TrialBudget, emit: Emit) -> dict[str, int]:
    """Run trials until the study is done, the budget or deadline is reached, or Ctrl-C."""
    if ctx.cuda_visible is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ctx.cuda_visible
    # SIGTERM (a scheduler's stop) is treated like Ctrl-C: record, release, exit.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # else the command handles it
        signal.signal(signal.SIGTERM, _raise_interrupt)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    quiet_known_errors()
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    storage = open_storage(ctx.storage_url, heartbeat=ctx.heartbeat)
    keep_heartbeat_alive(storage)
    # load_study's default pruner is MedianPruner: pass the study file's own.
    pruner = optuna.pruners.NopPruner() if ctx.runs else build_pruner(ctx.spec, ctx.scale)
    study = optuna.load_study(study_name=ctx.study_name, storage=storage, pruner=pruner)
    board = SlotBoard(study, storage, ctx.n_slots, worker=ctx.index)
    # On a GPU the uint8 splits are filled straight into device memory. The held-out test
    # split stays on disk: no trial may see it, and the search holds less memory.
    device = "cuda" if ctx.device == "cuda" else None
    data = ctx.trainer.load_data(ctx.data, device=device, with_test=False)
    counts = {outcome.state: 0 for outcome in TrialOutcome}
    held: Claim | None = None  # claimed and maybe not yet settled
    try:
        while True:
            stop = _why_stop(ctx, budget, study)
            if stop is None:
                claiming = _message(ctx, emit)
                outcome, held = wait_for_storage(board.claim, "claiming a trial", claiming)
                stop = _claim_result(ctx, budget, outcome, emit)
            if stop == "wait":
                time.sleep(ctx.poll_s)
                continue
            if stop is not None:
                emit({"kind": "worker_end", "worker": ctx.index, "reason": stop})
                break
            assert held is not None
            result = run_claim(ctx, study, board, held, data, emit)
            held = None
            counts[result.state] += 1
    except KeyboardInterrupt:
        # Stopped between claiming a slot and settling it (run_claim settles the ones
        # stopped in training): settle it now, so no slot waits for a grace period.
        if held is not None:
            with contextlib.suppress(Exception):
                board.settle_interrupted(held)
        raise
    return counts


def _why_stop(ctx: WorkerContext, budget: TrialBudget, study: optuna.Study) -> str | None:
    """Why no new trial may start (deadline, the study's stop rule, ``--n-trials``), or None."""
    if ctx.deadline is not None and time.time() >= ctx.deadline:
        return "timeout"
    if ctx.follow_stop_rule and not ctx.runs:
        reason = check_stop(study, ctx.spec, ctx.val_size)
        if reason is not None:
            return reason
    if not budget.take():
        return "n-trials reached"
    return None


def _claim_result(
    ctx: WorkerContext, budget: TrialBudget, outcome: Outcome, emit: Emit
) -> str | None:
    """None when a slot was claimed; else 'study done' or 'wait' (budget given back)."""
    if outcome is Outcome.CLAIMED:
        return None
    budget.give_back()
    if outcome is Outcome.DONE:
        return "study done"
    if outcome is Outcome.STUCK:
        return "no trial left to run, but some failed on every attempt"
    emit({"kind": "worker_wait", "worker": ctx.index})
    return "wait"


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_claim(
    ctx: WorkerContext,
    study: optuna.Study,
    board: SlotBoard,
    claim: Claim,
    data: Any,
    emit: Emit,
) -> TrialOutcome:
    """Run the trial of one claimed slot, settle the slot, and say how the trial ended."""
    witness = _Witness(_sampler(ctx, claim.slot))
    study.sampler = witness
    objective = TrialObjective(ctx, board, claim, data, emit)
    report = objective.report
    try:
        # A stop signal is held back from here until the witness knows the trial Optuna
        # creates: landing in between, it would leave a running trial nobody can name.
        witness.hold.hold()
        try:
            study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=False)
        finally:
            witness.hold.release()
    except KeyboardInterrupt:
        # The slot follows the trial: a signal that lands after Optuna recorded the trial
        # complete leaves it complete and its slot done; otherwise the trial is failed as
        # interrupted and the slot released. Then the worker stops.
        state = board.settle_interrupted(claim, report.trial_id or witness.trial_id)
        outcome = _FINISHED.get(state, TrialOutcome.INTERRUPTED)  # type: ignore[arg-type]
        emit({"kind": "trial_end", "worker": ctx.index, "state": outcome.state, **report.info})
        raise
    except Exception as err:
        report.outcome = _after_optimize_error(ctx, board, report, err, emit)
    outcome = report.outcome
    refund = outcome is not TrialOutcome.COMPLETE and not outcome.spends_attempt
    _finish(ctx, board, claim, SLOT_STATUS[outcome], emit, refund=refund)
    emit({"kind": "trial_end", "worker": ctx.index, "state": outcome.state, **report.info})
    where = f"trial {report.info.get('trial')}, slot {claim.slot}"
    if outcome is TrialOutcome.DISK_FULL:
        raise disk_full_error(report.error, where, ctx.workdir) from None
    if outcome is TrialOutcome.SETUP_ERROR:
        error = recurring_error(report.error) if report.error else None
        raise UserError(f"{error} ({where}; no attempt spent)") from None
    return outcome


class _Witness(optuna.samplers.BaseSampler):
    """The slot's sampler, noting which trial Optuna created with it: a Ctrl-C that lands
    after the trial was created but before the objective ran can then still record it."""

    def __init__(self, inner: optuna.samplers.BaseSampler) -> None:
        self.inner = inner
        self.trial_id: int | None = None
        self.hold = StopSignalHold()

    def before_trial(self, study: optuna.Study, trial: Any) -> None:
        self.trial_id = trial._trial_id
        self.hold.release()  # the trial is known now: a held Ctrl-C lands here
        self.inner.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: Any) -> dict[str, Any]:
        return self.inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: Any, space: dict[str, Any]) -> Any:
        return self.inner.sample_relative(study, trial, space)

    def sample_independent(self, study: optuna.Study, trial: Any, name: str, dist: Any) -> Any:
        return self.inner.sample_independent(study, trial, name, dist)

    def after_trial(self, study: optuna.Study, trial: Any, state: Any, values: Any) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()


def _sampler(ctx: WorkerContext, slot: int) -> optuna.samplers.BaseSampler:
    """The sampler that creates the slot's trial: a fixed run's parameters, or the study's."""
    if ctx.runs:
        fixed = ctx.runs[slot].params
        return optuna.samplers.PartialFixedSampler(fixed, optuna.samplers.RandomSampler(slot))
    return sampler_for_slot(ctx.spec, ctx.scale, slot)


def _after_optimize_error(
    ctx: WorkerContext, board: SlotBoard, report: TrialReport, err: Exception, emit: Emit
) -> TrialOutcome:
    """How a trial ended whose ``optimize`` raised past ``catch`` (while Optuna started or
    told it): a storage outage, or another worker that took the slot over."""
    if is_storage_outage(err):
        return _settle_after_outage(ctx, board, report.trial_id, emit)
    if not _failed_elsewhere(board, report.trial_id):
        raise err
    # This process was frozen or cut off for longer than the heartbeat grace period and
    # another worker failed its trial: free the slot to be resumed from its checkpoint
    # (a no-op when that worker has already taken it over).
    _message(ctx, emit)(
        f"trial {report.info.get('trial')} was failed by another worker (no heartbeat)"
    )
    return TrialOutcome.OUTAGE


def _message(ctx: WorkerContext, emit: Emit) -> Callable[[str], None]:
    return lambda text: emit({"kind": "message", "text": f"worker {ctx.index}: {text}"})


def _finish(
    ctx: WorkerContext,
    board: SlotBoard,
    claim: Claim,
    status: str,
    emit: Emit,
    refund: bool = False,
) -> None:
    wait_for_storage(
        lambda: board.finish(claim, status, refund=refund), "recording a trial", _message(ctx, emit)
    )


def _failed_elsewhere(board: SlotBoard, trial_id: int | None) -> bool:
    """True when the trial was finished, not by this worker: failed as stale by another."""
    return trial_id is not None and board.storage.get_trial(trial_id).state.is_finished()


def _settle_after_outage(
    ctx: WorkerContext, board: SlotBoard, trial_id: int | None, emit: Emit
) -> TrialOutcome:
    """Once the storage is back: keep the trial if it was recorded finished, else fail it
    (its slot is released, to be run again from its checkpoint by whichever worker)."""
    from optuna.trial import TrialState

    def wait(action: Callable[[], Any]) -> Any:
        return wait_for_storage(action, "recording a trial", _message(ctx, emit))

    state = wait(lambda: board.storage.get_trial(trial_id).state) if trial_id is not None else None
    if state in (TrialState.COMPLETE, TrialState.PRUNED):
        return TrialOutcome.COMPLETE if state == TrialState.COMPLETE else TrialOutcome.PRUNED
    if state == TrialState.RUNNING:
        # UpdateFinishedTrialError: another worker's heartbeat check failed it meanwhile.
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            wait(lambda: board.storage.set_trial_state_values(trial_id, TrialState.FAIL))
    return TrialOutcome.OUTAGE
