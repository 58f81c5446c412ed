"""The objective of one claimed slot: config from trial, fit, record, prune.

It reads like Optuna's PyTorch examples; what is particular to hpsearch is around it:
the trial is bound to its slot first, checkpoints let a retried trial resume, and how
the trial ended is kept as a :class:`TrialOutcome` for the worker to settle the slot.
"""

from __future__ import annotations

import enum
import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from hpsearch.paths import Workdir
from hpsearch.resilience import is_disk_full, is_storage_outage, recurring_error
from hpsearch.study import is_enqueued, suggest
from reports.trial_record import RESULT, START, TrialRecord
from trainer.config import TrainConfig

if TYPE_CHECKING:
    from hpsearch.slots import Claim, SlotBoard
    from hpsearch.tracking import TrialTracker
    from hpsearch.worker import WorkerContext

Emit = Callable[[dict[str, Any]], None]


class TrialOutcome(enum.Enum):
    """How one run of the objective ended."""

    COMPLETE = "complete"
    PRUNED = "pruned"
    FAILED = "failed"
    """The training raised: the slot spends one of its attempts."""
    INTERRUPTED = "interrupted"
    """Ctrl-C or a scheduler's stop: the slot is released, to resume later."""
    DISK_FULL = "disk_full"
    """Not the trial's fault: released without spending an attempt; the run stops."""
    OUTAGE = "outage"
    """The storage went away: released without spending an attempt, to run again."""
    SETUP_ERROR = "setup_error"
    """An error every attempt would meet (missing weights, an unwritable folder): the
    trial is failed with its reason, the slot released unspent, and the run stops."""

    @classmethod
    def of_error(cls, err: BaseException) -> TrialOutcome:
        """The one place where an error in a trial is told apart from the trial's fault."""
        if is_disk_full(err):
            return cls.DISK_FULL
        if is_storage_outage(err):
            return cls.OUTAGE
        if recurring_error(err) is not None:
            return cls.SETUP_ERROR
        return cls.FAILED

    @property
    def spends_attempt(self) -> bool:
        """Only a trial's own failure counts towards its slot's attempts."""
        return self is TrialOutcome.FAILED

    @property
    def state(self) -> str:
        """The state shown to the user (disk-full and outage trials failed)."""
        return self.value if self in _SHOWN else "failed"


_SHOWN = (TrialOutcome.COMPLETE, TrialOutcome.PRUNED, TrialOutcome.INTERRUPTED)


class _KnownErrorsFilter(logging.Filter):
    """Drops Optuna's traceback of a trial that failed through no fault of its own
    (a setup error, a full disk, an outage, Ctrl-C): the worker reports those in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, KeyboardInterrupt):
            return False  # Ctrl-C or a scheduler's stop: recorded as interrupted
        return error is None or TrialOutcome.of_error(error) is TrialOutcome.FAILED


def quiet_known_errors() -> None:
    """Keep Optuna's tracebacks for bugs only (idempotent)."""
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, _KnownErrorsFilter) for f in handler.filters):
            handler.addFilter(_KnownErrorsFilter())


@dataclass
class TrialReport:
    """What the objective learned, for the worker after ``study.optimize`` returns."""

    outcome: TrialOutcome = TrialOutcome.FAILED
    trial_id: int | None = None
    error: BaseException | None = None
    info: dict[str, Any] = field(default_factory=dict)
    """Trial number, slot, params, value: what the progress events carry."""


class TrialObjective:
    """The objective of one slot: config from trial, fit, report every epoch, prune."""

    def __init__(
        self, ctx: WorkerContext, board: SlotBoard, claim: Claim, data: Any, emit: Emit
    ) -> None:
        self.ctx, self.board, self.claim, self.data, self.emit = ctx, board, claim, data, emit
        self.report = TrialReport(info={"slot": claim.slot})
        self.pruned = False
        self.tracker: TrialTracker | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            config = self.config_from_trial(trial)
            result = self.train(trial, config)
            value = self.record(trial, result)
        except KeyboardInterrupt:
            # Wherever Ctrl-C lands in the trial, the trial is recorded as interrupted.
            self.report.outcome = TrialOutcome.INTERRUPTED
            trial.set_user_attr("interrupted", True)
            self._finish_tracker("interrupted", {})
            raise
        if self.pruned:
            raise optuna.TrialPruned(f"pruned at epoch {result.epochs_run}")
        if math.isnan(value):
            raise RuntimeError(f"{self.ctx.spec.metric} is NaN (training diverged)")
        return value

    def config_from_trial(self, trial: optuna.Trial) -> TrainConfig:
        """Bind the trial to its slot, ask it for the parameters, build the config."""
        ctx, spec = self.ctx, self.ctx.spec
        self.report.trial_id = trial._trial_id
        if not self.board.bind_trial(self.claim, trial._trial_id):
            raise RuntimeError(f"slot {self.claim.slot} was taken over by another worker")
        params = suggest(trial, spec.space_at(ctx.scale))
        values = {**spec.train_values(ctx.scale), **params}
        values.setdefault("seed", spec.seed)
        if ctx.runs:  # a confirmation run: the configuration again with a new seed
            run = ctx.runs[self.claim.slot]
            values["seed"] = run.seed
            trial.set_user_attr("confirm_of", run.source_trial)
            trial.set_user_attr("seed", run.seed)
        config = TrainConfig.from_dict({**values, "device": ctx.device, "threads": ctx.threads})
        if is_enqueued(spec, ctx.scale, self.claim.slot) and not ctx.runs:
            trial.set_user_attr("enqueued", True)
        start = TrialRecord(
            slot=self.claim.slot, attempt=self.claim.attempt, config=config.to_dict()
        )
        trial.set_user_attr(START, start.start_attr())
        self.report.info.update(trial=trial.number, params=params, epochs=config.epochs)
        self.emit({"kind": "trial_start", "worker": ctx.index, **self.report.info})
        self.tracker = self._start_tracker(trial, config, params)
        return config

    def train(self, trial: optuna.Trial, config: TrainConfig) -> Any:
        """``fit`` with a per-epoch report; resumes the slot's checkpoint if there is one."""
        metric = self.ctx.spec.metric
        reported: set[int] = set()

        def on_epoch(epoch: int, row: dict[str, float]) -> bool:
            value = row.get(metric, math.nan)
            trial.report(value, epoch)
            reported.add(epoch)
            if self.tracker is not None:
                self.tracker.log_epoch(row, epoch)
            event = {"kind": "epoch", "worker": self.ctx.index, "epoch": epoch, "value": value}
            self.emit({**event, **self.report.info})
            self.pruned = trial.should_prune()
            return self.pruned

        workdir = Workdir(self.ctx.workdir, self.ctx.artifacts)
        checkpoint_dir = workdir.trial_dir(self.ctx.study_name, self.claim.slot)
        try:
            result = self.ctx.trainer.fit(
                config, self.data, on_epoch, checkpoint_dir=checkpoint_dir, resume=True
            )
        except Exception as err:
            self.report.error = err
            self.report.outcome = TrialOutcome.of_error(err)
            trial.set_user_attr("error", error_reason(err)[:500])
            self._finish_tracker("failed", {})
            raise
        # Epochs trained by an earlier attempt of this slot (resumed from its checkpoint)
        # are reported too, so the trial's curve is whole.
        for row in result.history:
            if int(row["epoch"]) not in reported:
                trial.report(row.get(metric, math.nan), int(row["epoch"]))
        return result

    def record(self, trial: optuna.Trial, result: Any) -> float:
        """Write the result to the trial (and wandb); attach the best checkpoint."""
        metric = self.ctx.spec.metric
        value = float(result.best_metrics.get(metric, math.nan))
        attrs = result_attrs(result, resumed=self.claim.resumed)
        trial.set_user_attr(RESULT, attrs)  # one storage write for all of it
        self.report.info.update(
            value=value, best_epoch=result.best_epoch, epochs_run=result.epochs_run
        )
        outcome = TrialOutcome.PRUNED if self.pruned else TrialOutcome.COMPLETE
        self._finish_tracker(outcome.value, attrs)
        if outcome is TrialOutcome.COMPLETE and result.best_checkpoint is not None:
            self._attach(trial, result.best_checkpoint)
        self.report.outcome = outcome
        return value

    def _start_tracker(
        self, trial: optuna.Trial, config: TrainConfig, params: dict[str, Any]
    ) -> TrialTracker | None:
        if self.ctx.wandb_mode == "off":
            return None
        from hpsearch.tracking import TrialTracker

        spec = self.ctx.spec
        tracker = TrialTracker(
            self.ctx.wandb_mode,
            self.ctx.study_name,
            spec.sampler,
            spec.pruner.kind,
            Workdir(self.ctx.workdir).wandb,
        )
        run_id = tracker.start(trial.number, config.to_dict(), params)
        if run_id is not None:  # from the dashboard's trial to its wandb run
            trial.set_user_attr("wandb_run_id", run_id)
        return tracker

    def _finish_tracker(self, state: str, attrs: dict[str, Any]) -> None:
        if self.tracker is not None:
            number = self.report.info.get("trial")
            self.tracker.finish(state, {"optuna_trial_number": number, **attrs})
            self.tracker = None

    def _attach(self, trial: optuna.Trial, path: Path) -> None:
        """Attach the best checkpoint to the trial (viewable in optuna-dashboard).

        Done before the trial is told (a finished trial cannot be changed); a failure
        here costs the attachment, never the trial.
        """
        from hpsearch.artifacts import attach_file, open_artifact_store

        try:
            store = open_artifact_store(Workdir(self.ctx.workdir, self.ctx.artifacts).artifacts)
            attach_file(trial.study, trial, path, store)
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
    }
    attrs.update({k: _finite(v) for k, v in result.best_metrics.items() if k != "epoch"})
    return attrs


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
