"""The objective of one claimed slot: config from trial, fit, record, prune.

It reads like Optuna's PyTorch examples; what is particular to hpsearch is around it:
the trial is bound to its slot first, checkpoints let a retried trial resume, and how
the trial ended is kept as a :class:`TrialOutcome` for the worker to settle the slot.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from hpsearch.run.claims import Claim, SlotBoard
from hpsearch.run.context import Placement
from hpsearch.run.events import Emit, EpochEnded, TrialEnded, TrialStarted
from hpsearch.run.kinds import RunKind
from hpsearch.run.outcome import TrialOutcome
from hpsearch.run.signals import stop_requested
from hpsearch.storage.optuna_api import trial_id
from hpsearch.storage.resilience import recurring_error
from hpsearch.study.space import suggest
from hpsearch.trials.constraints import measures, violations
from hpsearch.trials.cost import COST, CostMeter, TrialCost, trial_cost
from hpsearch.trials.record import (
    ERROR,
    INTERRUPTED,
    PAUSED_AT,
    PRECISION_CHOICE,
    RESULT,
    START,
    WANDB_RUN_ID,
    TrialRecord,
)
from trainer.config import TrainConfig

if TYPE_CHECKING:
    from hpsearch.run.tracking import TrialTracker


class TrialPaused(Exception):  # a state, like Optuna's TrialPruned
    """The trial stopped at a rung of the promotion pruner: it waits, it did not end."""


class _KnownErrorsFilter(logging.Filter):
    """Drops Optuna's traceback of a trial that failed through no fault of its own
    (a setup error, a full disk, an outage, a stop signal), and the "Trial N failed with
    value None." line Optuna adds to it: the worker reports those in one line."""

    def __init__(self) -> None:
        super().__init__()
        self.quiet: set[str] = set()
        """Trial numbers whose failure was dropped (their value line follows)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        number = _TRIAL_NUMBER.match(text)
        if number and "failed with value" in text and number[1] in self.quiet:
            self.quiet.discard(number[1])
            return False
        error = record.exc_info[1] if record.exc_info else None
        if error is None:
            return True
        known = isinstance(error, KeyboardInterrupt) or (
            TrialOutcome.of_error(error) is not TrialOutcome.FAILED
        )
        if known and number:
            self.quiet.add(number[1])
        return not known


_TRIAL_NUMBER = re.compile(r"Trial (\d+) failed")


def quiet_known_errors() -> None:
    """Keep Optuna's tracebacks for bugs only (idempotent)."""
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, _KnownErrorsFilter) for f in handler.filters):
            handler.addFilter(_KnownErrorsFilter())


@dataclass(frozen=True)
class Tracking:
    """Where a worker's trials are tracked in wandb (``mode`` 'off': nowhere)."""

    mode: str
    study_name: str
    sampler: str
    pruner: str
    folder: Path


@dataclass
class TrialReport:
    """What the objective learned, for the worker after ``study.optimize`` returns."""

    slot: int
    outcome: TrialOutcome = TrialOutcome.FAILED
    trial_id: int | None = None
    number: int | None = None
    error: BaseException | None = None
    params: dict[str, Any] = field(default_factory=dict)
    epochs: int | None = None
    value: float | None = None
    best_epoch: int | None = None
    epochs_run: int | None = None
    paused_at: tuple[int, float] | None = None
    """The rung the trial stopped at (the promotion pruner), and its value there."""

    def ended(self, worker: int, outcome: TrialOutcome) -> TrialEnded:
        """The event that says how the trial ended."""
        return TrialEnded(
            worker=worker,
            trial=self.number,
            state=outcome.state,
            value=self.value,
            best_epoch=self.best_epoch,
            epochs_run=self.epochs_run,
        )


class TrialObjective:
    """The objective of one slot: config from trial, fit, report every epoch, prune."""

    def __init__(
        self,
        kind: RunKind,
        placement: Placement,
        board: SlotBoard,
        claim: Claim,
        data: Any,
        *,
        fit: Callable[..., Any],
        choose_precision: Callable[..., Any] | None = None,
        image_size: int = 0,
        precision_cache: Path | None = None,
        checkpoints: Path,
        artifacts: Path,
        tracking: Tracking,
        emit: Emit,
    ) -> None:
        self.kind, self.placement, self.board, self.claim = kind, placement, board, claim
        self.data, self.fit, self.emit = data, fit, emit
        self.choose_precision, self.image_size = choose_precision, image_size
        self.precision_cache = precision_cache
        self.checkpoints, self.artifacts, self.tracking = checkpoints, artifacts, tracking
        self.report = TrialReport(slot=claim.slot)
        self.pruned = False
        self.tracker: TrialTracker | None = None
        self.meter = CostMeter(placement.device)
        self.epochs_trained = 0
        """Epochs this trial trained itself (resumed ones apart): what it paid for."""
        self.measured: dict[str, float] = {}
        """What a constraint or objective may read of the finished trial (see ``record``)."""
        self.rungs = board.promotion
        """The promotion pruner's rungs: the trial pauses at them (None: another pruner)."""
        self.earlier_cost: TrialCost | None = None
        """A promoted trial: what its earlier runs cost (its cost adds to it)."""

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        try:
            config = self.config_from_trial(trial)
            result = self.train(trial, config)
            value = self.record(trial, result)
            values = self.objective_values(value)
        except KeyboardInterrupt:
            # Wherever a stop signal lands in the trial, the trial is recorded as interrupted.
            self._interrupted(trial)
            raise
        except Exception as err:
            if not stop_requested():
                raise
            # The stop's KeyboardInterrupt turned into another error on its way (torch's
            # checkpoint writer makes a RuntimeError of it): still a stop, not a failure.
            self._interrupted(trial)
            raise KeyboardInterrupt from err
        if self.report.paused_at is not None:
            raise TrialPaused(f"paused at epoch {result.epochs_run}")
        if self.pruned:
            raise optuna.TrialPruned(f"pruned at epoch {result.epochs_run}")
        if math.isnan(value):
            raise RuntimeError(f"{self.kind.metric} is NaN (training diverged)")
        if values is None:
            return value
        missing = [
            n for n, v in zip(self.kind.spec.objectives, values, strict=True) if math.isnan(v)
        ]
        if missing:
            raise RuntimeError(f"objective {', '.join(missing)} was not measured")
        return values

    def objective_values(self, value: float) -> tuple[float, ...] | None:
        """A study of several objectives: each objective's value (the metric's first, then
        recorded metrics or costs, as :meth:`record` measured them); None for one."""
        objectives = self.kind.spec.objectives
        if len(objectives) < 2:
            return None
        return (value, *(self.measured.get(name, math.nan) for name in objectives[1:]))

    def _interrupted(self, trial: optuna.Trial) -> None:
        self.report.outcome = TrialOutcome.INTERRUPTED
        trial.set_user_attr(INTERRUPTED, True)
        trial.set_user_attr(COST, self.cost().to_attr())
        self._finish_tracker("interrupted", {})

    def cost(self, peak_memory_mb: float | None = None) -> TrialCost:
        """What the trial cost so far: this run, plus its earlier runs if it was promoted."""
        cost = self.meter.read(self.epochs_trained, peak_memory_mb)
        return cost if self.earlier_cost is None else self.earlier_cost.plus(cost)

    def config_from_trial(self, trial: optuna.Trial) -> TrainConfig:
        """Bind the trial to its slot, ask it for the parameters, build the config."""
        slot = self.claim.slot
        self.meter = CostMeter(self.placement.device)  # the trial's cost counts from here
        self.report.trial_id = trial_id(trial)
        if not self.board.bind_trial(self.claim, self.report.trial_id):
            raise RuntimeError(f"slot {slot} was taken over by another worker")
        if self.claim.trial_id is not None:  # promoted: the trial goes on where it paused
            earlier = self.board.storage.get_trial(self.report.trial_id)
            self.earlier_cost = trial_cost(earlier)
            if earlier.user_attrs.get(INTERRUPTED):
                trial.set_user_attr(INTERRUPTED, False)  # a stop it was paused again after
            trial.set_user_attr(PAUSED_AT, None)
        params = suggest(trial, self.kind.space)
        values = self.kind.train_values(slot, params)
        for name, value in self.kind.slot_values(slot)[1].items():
            trial.set_user_attr(name, value)
        placed = {"device": self.placement.device, "threads": self.placement.threads}
        config = TrainConfig.from_dict({**values, **placed})
        start = TrialRecord(slot=slot, attempt=self.claim.attempt, config=config.to_dict())
        trial.set_user_attr(START, start.start_attr())
        report = self.report
        report.number, report.params, report.epochs = trial.number, params, config.epochs
        self.emit(
            TrialStarted(
                self.placement.index,
                trial.number,
                slot,
                params,
                config.epochs,
                token=self.claim.token,
                trial_id=report.trial_id,
            )
        )
        self.tracker = self._start_tracker(trial, config, params)
        return config

    def train(self, trial: optuna.Trial, config: TrainConfig) -> Any:
        """``fit`` with a per-epoch report; resumes the slot's checkpoint if there is one."""
        metric = self.kind.metric
        several = self.kind.spec.multi_objective
        # A promoted trial has reported the epochs of its earlier runs already.
        promoted = self.claim.trial_id is not None
        reported: set[int] = set(self._steps_reported(trial)) if promoted else set()

        def on_epoch(epoch: int, row: dict[str, float]) -> bool:
            if stop_requested():  # the signal was swallowed where it landed: stop here
                raise KeyboardInterrupt
            value = row.get(metric, math.nan)
            if not several:  # Optuna reports and prunes single-objective studies only
                trial.report(value, epoch)
            reported.add(epoch)
            self.epochs_trained += 1
            if self.tracker is not None:
                self.tracker.log_epoch(row, epoch)
            report = self.report
            report.epochs_run = epoch  # so far: an interrupted trial says how far it got
            self.emit(EpochEnded(self.placement.index, report.number, epoch, value, report.epochs))
            if self.rungs is not None and not several:
                rung = self.rungs.rung_at(epoch, report.epochs or epoch)
                report.paused_at = None if rung is None else (rung, value)
                return rung is not None
            self.pruned = False if several else trial.should_prune()
            return self.pruned

        try:
            config = self._precision(trial, config)
            result = self.fit(
                config, self.data, on_epoch, checkpoint_dir=self.checkpoints, resume=True
            )
        except Exception as err:
            if stop_requested():
                raise  # a stop, not the trial's failure: __call__ records it so
            self.report.error = err
            self.report.outcome = TrialOutcome.of_error(err)
            trial.set_user_attr(ERROR, error_reason(err)[:500])
            trial.set_user_attr(COST, self.cost().to_attr())
            self._finish_tracker("failed", {})
            raise
        # Epochs trained by an earlier attempt of this slot (resumed from its checkpoint)
        # are reported too, so the trial's curve is whole.
        for row in result.history:
            if int(row["epoch"]) not in reported and not several:
                trial.report(row.get(metric, math.nan), int(row["epoch"]))
        return result

    def _steps_reported(self, trial: optuna.Trial) -> list[int]:
        return list(self.board.storage.get_trial(trial_id(trial)).intermediate_values)

    def _precision(self, trial: optuna.Trial, config: TrainConfig) -> TrainConfig:
        """``config`` with 'auto' precision decided by a measurement on this machine
        (cached in the workdir), both figures recorded on the trial."""
        if self.choose_precision is None or config.precision != "auto":
            return config
        assert self.precision_cache is not None  # given with choose_precision
        choice = self.choose_precision(
            config, image_size=self.image_size, cache_file=self.precision_cache
        )
        trial.set_user_attr(PRECISION_CHOICE, choice.to_attr())
        return dataclasses.replace(config, precision=choice.precision)

    def record(self, trial: optuna.Trial, result: Any) -> float:
        """Write the result to the trial (and wandb); attach the best checkpoint."""
        value = float(result.best_metrics.get(self.kind.metric, math.nan))
        attrs = result_attrs(result, resumed=self.claim.resumed)
        attrs[COST] = self.cost(getattr(result, "peak_memory_mb", None)).to_attr()
        trial.set_user_attr(RESULT, attrs)  # one storage write for all of it
        self.measured = measures(attrs, attrs[COST])
        self._constrain(trial)
        report = self.report
        report.value, report.best_epoch = value, result.best_epoch
        report.epochs_run = result.epochs_run
        outcome = TrialOutcome.PRUNED if self.pruned else TrialOutcome.COMPLETE
        if report.paused_at is not None:
            outcome = TrialOutcome.PAUSED
            trial.set_user_attr(PAUSED_AT, result.epochs_run)
        self._finish_tracker(outcome.value, attrs)
        if outcome is TrialOutcome.COMPLETE and result.best_checkpoint is not None:
            self._attach(trial, result.best_checkpoint)
        report.outcome = outcome
        return value

    def _constrain(self, trial: optuna.Trial) -> None:
        """Each of the study's constraints, measured on this trial, as Optuna's constraint
        value (<= 0: kept), where its samplers, plots and the dashboard read it."""
        for name, violation in violations(self.kind.spec.constraints, self.measured).items():
            trial.set_constraint(name, violation)

    def _start_tracker(
        self, trial: optuna.Trial, config: TrainConfig, params: dict[str, Any]
    ) -> TrialTracker | None:
        tracking = self.tracking
        if tracking.mode == "off":
            return None
        from hpsearch.run.tracking import TrialTracker

        tracker = TrialTracker(
            tracking.mode,
            tracking.study_name,
            tracking.sampler,
            tracking.pruner,
            tracking.folder,
        )
        resume = trial.user_attrs.get(WANDB_RUN_ID) if self.claim.trial_id is not None else None
        run_id = tracker.start(trial.number, config.to_dict(), params, resume_id=resume)
        if run_id is not None:  # from the dashboard's trial to its wandb run
            trial.set_user_attr(WANDB_RUN_ID, run_id)
        return tracker

    def _finish_tracker(self, state: str, attrs: dict[str, Any]) -> None:
        if self.tracker is not None:
            self.tracker.finish(state, {"optuna_trial_number": self.report.number, **attrs})
            self.tracker = None

    def _attach(self, trial: optuna.Trial, path: Path) -> None:
        """Attach the best checkpoint to the trial (viewable in optuna-dashboard).

        Done before the trial is told (a finished trial cannot be changed); a failure
        here costs the attachment, never the trial.
        """
        from hpsearch.storage.artifacts import attach_file, open_artifact_store

        try:
            attach_file(trial.study, trial, path, open_artifact_store(self.artifacts))
        except Exception as err:  # the checkpoint stays on disk; its path is a user attr
            warnings.warn(
                f"could not attach {path.name} to trial {trial.number}: {err}", stacklevel=2
            )


def error_reason(err: BaseException) -> str:
    """What a failed trial records as its reason: the one line a user error has, else
    the exception's type and message."""
    recurring = recurring_error(err)
    return str(recurring) if recurring is not None else f"{type(err).__name__}: {err}"


def result_attrs(result: Any, *, resumed: bool) -> dict[str, Any]:
    """What a finished fit records on its trial (the ``result`` attribute): timing,
    device, checkpoint, best metrics."""
    attrs = {
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "images_per_sec": round(result.images_per_sec, 1),
        "wall_seconds": round(result.wall_seconds, 2),
        "device": result.device,
        "precision": result.precision,
        "peak_memory_mb": round(result.peak_memory_mb, 1),
        "checkpoint": str(result.best_checkpoint) if result.best_checkpoint else None,
        "resumed": resumed,
        # Set when the batch did not fit the device and was trained in micro-batches with
        # gradient accumulation at the same effective batch (trainer.memory).
        "memory_fallback": getattr(result, "memory_fallback", None),
    }
    attrs.update({k: _finite(v) for k, v in result.best_metrics.items() if k != "epoch"})
    return attrs


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
