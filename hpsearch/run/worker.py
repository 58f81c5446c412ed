"""One worker: claim a slot, run its trial, settle the slot, repeat until the run is done."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import warnings
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState

from hpsearch.run.claims import Claim, ClaimResult, SlotBoard
from hpsearch.run.context import WorkerContext
from hpsearch.run.events import Emit, Message, WorkerStopped, WorkerWaiting
from hpsearch.run.objective import (
    Tracking,
    TrialObjective,
    TrialPaused,
    TrialReport,
    quiet_known_errors,
)
from hpsearch.run.outcome import TrialOutcome
from hpsearch.run.signals import StopSignalHold, interrupt, stop_requested
from hpsearch.storage import open_storage
from hpsearch.storage.optuna_api import heartbeat_thread, trial_id
from hpsearch.storage.resilience import (
    disk_full_error,
    is_storage_outage,
    keep_heartbeat_alive,
    recurring_error,
    wait_for_storage,
)
from hpsearch.study.promotion import PromotionPruner
from hpsearch.study.record import StudyRecord
from trainer.errors import UserError

#: Seconds a stopping worker waits for an unreachable storage before it gives up.
STOPPING_STORAGE_WAIT_S = 10.0


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


class Worker:
    """One worker process's study, board and data, and the loop over its claims."""

    def __init__(self, ctx: WorkerContext, budget: TrialBudget, emit: Emit) -> None:
        self.ctx, self.budget, self.emit = ctx, budget, emit
        self.index = ctx.placement.index
        access = ctx.access
        self.storage = open_storage(access.storage_url, heartbeat=access.heartbeat)
        keep_heartbeat_alive(self.storage)
        # load_study's default pruner is MedianPruner: pass the run's own.
        self.study = optuna.load_study(
            study_name=access.study_name, storage=self.storage, pruner=ctx.kind.pruner()
        )
        pruner = self.study.pruner
        self.board = SlotBoard(
            self.study,
            self.storage,
            ctx.kind.n_slots,
            worker=self.index,
            promotion=pruner.rungs if isinstance(pruner, PromotionPruner) else None,
        )
        record = StudyRecord.read(self.study)
        self.checkpoint_uid = record.uid if record is not None else ""
        """The study's id: the folder of its checkpoints (see :attr:`StudyRecord.uid`)."""
        # On a GPU the uint8 splits are filled straight into device memory. The held-out
        # test split stays on disk: no trial may see it, and the search holds less memory.
        device = "cuda" if ctx.placement.device == "cuda" else None
        self.data = ctx.trainer.load_data(ctx.data, device=device, with_test=False)
        self.tracking = Tracking(
            mode=ctx.wandb_mode,
            study_name=access.study_name,
            sampler=ctx.kind.spec.sampler,
            pruner=ctx.kind.spec.pruner_at(ctx.kind.scale).kind,
            folder=ctx.workdir.wandb,
        )

    def say(self, text: str) -> None:
        self.emit(Message(f"worker {self.index}: {text}"))

    def loop(self) -> dict[str, int]:
        counts = {outcome.state: 0 for outcome in TrialOutcome}
        held: Claim | None = None  # claimed and maybe not yet settled
        try:
            while True:
                stop = self.why_stop()
                if stop is None:
                    # A stop signal that lands while the slot is claimed waits until the
                    # claim is known here, so the slot is released at once, not after
                    # the claim's grace period.
                    hold = StopSignalHold()
                    hold.hold()
                    try:
                        result, held = wait_for_storage(
                            self.board.claim, "claiming a trial", self.say
                        )
                    finally:
                        hold.release()
                    stop = self.claim_result(result)
                if stop == "wait":
                    time.sleep(self.ctx.poll_s)
                    continue
                if stop is not None:
                    self.emit(WorkerStopped(self.index, stop))
                    break
                assert held is not None
                outcome = run_claim(self, held)
                held = None
                counts[outcome.state] += 1
        except KeyboardInterrupt:
            # Stopped between claiming a slot and settling it (run_claim settles the ones
            # stopped in training): settle it now, so no slot waits for a grace period.
            if held is not None:
                with contextlib.suppress(Exception):
                    self.board.settle_interrupted(held)
            raise
        return counts

    def why_stop(self) -> str | None:
        """Why no new trial may start (deadline, the run's stop rule, ``--n-trials``).

        After a stop signal nothing new starts whatever else holds: the signal's
        ``KeyboardInterrupt`` may have been lost on the way (turned into another error,
        or caught where it landed), so the worker raises it again here.
        """
        if stop_requested():
            raise KeyboardInterrupt
        if self.ctx.deadline is not None and time.time() >= self.ctx.deadline:
            return "timeout"
        # The stop rule reads the study: a storage outage here is waited out like any other.
        reason = wait_for_storage(
            lambda: self.ctx.kind.stop_reason(self.study), "checking the stop rule", self.say
        )
        if reason is not None:
            return reason
        if not self.budget.take():
            return "n-trials reached"
        return None

    def claim_result(self, result: ClaimResult) -> str | None:
        """None when a slot was claimed; else 'study done' or 'wait' (budget given back)."""
        if result is ClaimResult.CLAIMED:
            return None
        self.budget.give_back()
        if result is ClaimResult.ALL_DONE:
            return "study done"
        if result is ClaimResult.STUCK:
            return "no trial left to run, but some failed on every attempt"
        self.emit(WorkerWaiting(self.index))
        return "wait"


def worker_main(ctx: WorkerContext, budget: TrialBudget, emit: Emit) -> dict[str, int]:
    """Run trials until the study is done, the budget or deadline is reached, or Ctrl-C."""
    if ctx.placement.cuda_visible is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ctx.placement.cuda_visible
    # SIGTERM (a scheduler's stop) is treated like Ctrl-C: record, release, exit.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # else the command handles it
        signal.signal(signal.SIGTERM, interrupt)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    quiet_known_errors()
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        return Worker(ctx, budget, emit).loop()
    finally:
        if ctx.wandb_mode != "off":
            from hpsearch.run.tracking import shut_down

            shut_down()


def run_claim(worker: Worker, claim: Claim) -> TrialOutcome:
    """Run the trial of one claimed slot, settle the slot, and say how the trial ended."""
    ctx, board = worker.ctx, worker.board
    witness = _Witness(ctx.kind.sampler(claim.slot))
    worker.study.sampler = witness
    objective = _objective(worker, claim)
    report = objective.report
    try:
        # A stop signal is held back from here until the witness knows the trial Optuna
        # creates: landing in between, it would leave a running trial nobody can name.
        witness.hold.hold()
        try:
            if board.promotion is None:
                worker.study.optimize(
                    objective, n_trials=1, catch=(Exception,), gc_after_trial=False
                )
            else:
                _run_pausable(worker, claim, objective, witness)
        finally:
            witness.hold.release()
    except KeyboardInterrupt:
        _settle_stopped(worker, claim, report, witness.trial_id)
        raise
    except Exception as err:
        if stop_requested():  # the stop's KeyboardInterrupt, turned into another error
            _settle_stopped(worker, claim, report, witness.trial_id)
            raise KeyboardInterrupt from err
        report.outcome = _after_optimize_error(worker, report, err)
    outcome = report.outcome

    def settle() -> Any:
        if outcome is TrialOutcome.PAUSED and report.paused_at is not None:
            return board.pause(claim, *report.paused_at)
        return board.finish(claim, outcome.slot_status, refund=outcome.refunds_attempt)

    wait_for_storage(
        settle,
        "recording a trial",
        worker.say,
        # Stopping, the worker waits briefly for the storage: its stop is bounded in time.
        timeout=STOPPING_STORAGE_WAIT_S if stop_requested() else None,
    )
    worker.emit(report.ended(worker.index, outcome))
    where = f"trial {report.number}, slot {claim.slot}"
    if outcome is TrialOutcome.DISK_FULL:
        assert report.error is not None  # a full disk is always an error the trial met
        raise disk_full_error(report.error, where, ctx.workdir.root) from None
    if outcome is TrialOutcome.SETUP_ERROR:
        error = recurring_error(report.error) if report.error else None
        raise UserError(f"{error} ({where}; no attempt spent)") from None
    return outcome


def _objective(worker: Worker, claim: Claim) -> TrialObjective:
    """The objective of ``claim``'s trial, with the worker's data, trainer and folders."""
    ctx = worker.ctx
    return TrialObjective(
        ctx.kind,
        ctx.placement,
        worker.board,
        claim,
        worker.data,
        fit=ctx.trainer.fit,
        choose_precision=ctx.trainer.choose_precision,
        image_size=ctx.data.image_size,
        precision_cache=ctx.workdir.precision_probe,
        checkpoints=ctx.workdir.trial_dir(ctx.access.study_name, claim.slot, worker.checkpoint_uid),
        artifacts=ctx.workdir.artifacts,
        tracking=worker.tracking,
        emit=worker.emit,
    )


def _run_pausable(
    worker: Worker, claim: Claim, objective: TrialObjective, witness: _Witness
) -> None:
    """Run one trial under the promotion pruner, as ``study.optimize`` would run it, except
    that a trial stopped at a rung is not told anything: it stays running in Optuna,
    paused, and a promotion (``claim.trial_id``) takes it up again under its own number."""
    study = worker.study
    if claim.trial_id is None:
        trial = study.ask()  # the witness learns its id, and lets a held stop land
    else:
        trial = optuna.Trial(study, claim.trial_id)
        witness.trial_id = claim.trial_id
        witness.hold.release()
    value: Any = None
    with heartbeat_thread(trial_id(trial), worker.storage):
        try:
            value, state = objective(trial), TrialState.COMPLETE
        except TrialPaused:
            return
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except Exception as err:
            state = TrialState.FAIL
            optuna.logging.get_logger("optuna").warning(
                f"Trial {trial.number} failed with parameters: {trial.params} because of "
                f"the following error: {err!r}.",
                exc_info=True,
            )
    study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)


def _settle_stopped(worker: Worker, claim: Claim, report: TrialReport, created: int | None) -> None:
    """A stop signal ended the trial of ``claim``: the slot follows the trial. A signal
    that lands after Optuna recorded the trial complete leaves it complete and its slot
    done; otherwise the trial is failed as interrupted and the slot released, no attempt
    spent. Then the worker stops."""
    state = worker.board.settle_interrupted(claim, report.trial_id or created)
    outcome = TrialOutcome.of_finished(state) or TrialOutcome.INTERRUPTED
    worker.emit(report.ended(worker.index, outcome))


class _Witness(optuna.samplers.BaseSampler):
    """The slot's sampler, noting which trial Optuna created with it: a Ctrl-C that lands
    after the trial was created but before the objective ran can then still record it."""

    def __init__(self, inner: optuna.samplers.BaseSampler) -> None:
        self.inner = inner
        self.trial_id: int | None = None
        self.hold = StopSignalHold()

    def before_trial(self, study: optuna.Study, trial: Any) -> None:
        self.trial_id = trial_id(trial)
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


def _after_optimize_error(worker: Worker, report: TrialReport, err: Exception) -> TrialOutcome:
    """How a trial ended whose ``optimize`` raised past ``catch`` (while Optuna started or
    told it): a storage outage, or another worker that took the slot over."""
    if is_storage_outage(err):
        return _settle_after_outage(worker, report.trial_id)
    if not _failed_elsewhere(worker.board, report.trial_id):
        raise err
    # This process was frozen or cut off for longer than the heartbeat grace period and
    # another worker failed its trial: free the slot to be resumed from its checkpoint
    # (a no-op when that worker has already taken it over).
    worker.say(f"trial {report.number} was failed by another worker (no heartbeat)")
    return TrialOutcome.OUTAGE


def _failed_elsewhere(board: SlotBoard, trial_id: int | None) -> bool:
    """True when the trial was finished, not by this worker: failed as stale by another."""
    return trial_id is not None and board.storage.get_trial(trial_id).state.is_finished()


def _settle_after_outage(worker: Worker, trial_id: int | None) -> TrialOutcome:
    """Once the storage is back: keep the trial if it was recorded finished, else fail it
    (its slot is released, to be run again from its checkpoint by whichever worker)."""
    storage = worker.board.storage

    def wait(action: Callable[[], Any]) -> Any:
        return wait_for_storage(action, "recording a trial", worker.say)

    if trial_id is None:
        return TrialOutcome.OUTAGE
    state = wait(lambda: storage.get_trial(trial_id).state)
    finished = TrialOutcome.of_finished(state)
    if finished is not None:
        return finished
    if state == TrialState.RUNNING:
        # UpdateFinishedTrialError: another worker's heartbeat check failed it meanwhile.
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            wait(lambda: storage.set_trial_state_values(trial_id, TrialState.FAIL))
    return TrialOutcome.OUTAGE
