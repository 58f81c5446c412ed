"""One worker: claim a slot, run its trial (config from trial, fit, report, prune), repeat."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from hpsearch.paths import Workdir
from hpsearch.resilience import (
    disk_full_error,
    is_disk_full,
    is_storage_outage,
    keep_heartbeat_alive,
    wait_for_storage,
)
from hpsearch.slots import DONE, FAILED, RELEASED, Claim, Outcome, SlotBoard
from hpsearch.spec import StudySpec, load_study_file
from hpsearch.storage import open_storage
from hpsearch.study import build_pruner, sampler_for_slot, suggest
from trainer.config import DataConfig

Emit = Callable[[dict[str, Any]], None]

#: Seconds between looks at the board while other workers' trials may still fail.
POLL_S = 2.0
#: Module providing ``load_data`` and ``fit``. Tests point it at a fast stand-in so
#: load and crash tests exercise the real orchestration in CI time.
TRAINER_MODULE_ENV = "HPSEARCH_TRAINER_MODULE"


def trainer_module() -> Any:
    """The trainer's ``load_data`` and ``fit`` (or the stand-in named by the environment)."""
    import importlib
    from types import SimpleNamespace

    name = os.environ.get(TRAINER_MODULE_ENV)
    if name:
        return importlib.import_module(name)
    from trainer.data import load_data
    from trainer.training import fit

    return SimpleNamespace(load_data=load_data, fit=fit)


@dataclass
class WorkerContext:
    """Everything a worker process needs; plain data so it crosses ``spawn``."""

    index: int
    storage_url: str
    study_name: str
    spec_path: Path
    scale: str
    data: DataConfig
    workdir: Path
    device: str = "cpu"
    """'cpu' or 'cuda' (the one GPU this process sees)."""
    cuda_visible: str | None = None
    threads: int | None = None
    wandb_mode: str = "off"
    deadline: float | None = None
    """Wall-clock time after which no new trial starts."""
    poll_s: float = POLL_S
    extra: dict[str, Any] = field(default_factory=dict)


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
    signal.signal(signal.SIGTERM, _raise_interrupt)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    impl = trainer_module()
    spec = load_study_file(ctx.spec_path)
    if "seed" in ctx.extra:
        spec = dataclasses.replace(spec, seed=ctx.extra["seed"])
    storage = open_storage(ctx.storage_url)
    keep_heartbeat_alive(storage)
    # load_study's default pruner is MedianPruner: pass the study file's own.
    study = optuna.load_study(
        study_name=ctx.study_name, storage=storage, pruner=build_pruner(spec, ctx.scale)
    )
    board = SlotBoard(study, storage, spec.budget(ctx.scale))
    # On a GPU the uint8 splits are filled straight into device memory. The held-out test
    # split stays on disk: no trial may see it, and the search holds less memory.
    device = "cuda" if ctx.device == "cuda" else None
    data = impl.load_data(ctx.data, device=device, with_test=False)
    counts = {"complete": 0, "pruned": 0, "failed": 0, "interrupted": 0}
    while True:
        if ctx.deadline is not None and time.time() >= ctx.deadline:
            emit({"kind": "worker_end", "worker": ctx.index, "reason": "timeout"})
            break
        if not budget.take():
            emit({"kind": "worker_end", "worker": ctx.index, "reason": "n-trials reached"})
            break
        outcome, claim = wait_for_storage(board.claim, "claiming a trial", _message(ctx, emit))
        if outcome is Outcome.DONE:
            budget.give_back()
            emit({"kind": "worker_end", "worker": ctx.index, "reason": "study done"})
            break
        if outcome is Outcome.WAIT:
            budget.give_back()
            emit({"kind": "worker_wait", "worker": ctx.index})
            time.sleep(ctx.poll_s)
            continue
        assert claim is not None
        state = run_claim(ctx, spec, study, board, claim, data, emit)
        counts[state] += 1
        if state == "interrupted":
            raise KeyboardInterrupt
    return counts


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_claim(
    ctx: WorkerContext,
    spec: StudySpec,
    study: optuna.Study,
    board: SlotBoard,
    claim: Claim,
    data: Any,
    emit: Emit,
) -> str:
    """Run the trial of one claimed slot; return complete, pruned, failed or interrupted."""
    study.sampler = sampler_for_slot(spec, ctx.scale, claim.slot)
    outcome = {"state": "failed"}
    objective = TrialObjective(ctx, spec, board, claim, data, emit, outcome)
    try:
        study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=False)
    except KeyboardInterrupt:
        board.finish(claim, RELEASED)
        emit({"kind": "trial_end", "worker": ctx.index, "state": "interrupted", **objective.info})
        return "interrupted"
    except Exception as err:
        if is_storage_outage(err):
            # The storage went away while Optuna started or told the trial.
            state = _settle_after_outage(ctx, board, claim, objective.trial_id, emit)
            emit({"kind": "trial_end", "worker": ctx.index, "state": state, **objective.info})
            return state
        if not _failed_elsewhere(board, objective.trial_id):
            raise
        # This process was frozen or cut off for longer than the heartbeat grace period and
        # another worker failed its trial: free the slot to be resumed from its checkpoint
        # (a no-op when that worker has already taken it over).
        _finish(ctx, board, claim, RELEASED, emit)
        text = f"trial {objective.info.get('trial')} was failed by another worker (no heartbeat)"
        _message(ctx, emit)(text)
        return "failed"
    state = outcome["state"]
    if state in ("disk_full", "outage"):
        # Not the trial's fault: release the slot without spending one of its attempts.
        _finish(ctx, board, claim, RELEASED, emit)
        emit({"kind": "trial_end", "worker": ctx.index, "state": "failed", **objective.info})
        if state == "disk_full":
            where = f"trial {objective.info.get('trial')}, slot {claim.slot}"
            raise disk_full_error(objective.error, where, ctx.workdir) from None
        return "failed"
    _finish(ctx, board, claim, FAILED if state == "failed" else DONE, emit)
    emit({"kind": "trial_end", "worker": ctx.index, "state": state, **objective.info})
    return state


def _message(ctx: WorkerContext, emit: Emit) -> Callable[[str], None]:
    return lambda text: emit({"kind": "message", "text": f"worker {ctx.index}: {text}"})


def _finish(ctx: WorkerContext, board: SlotBoard, claim: Claim, status: str, emit: Emit) -> None:
    wait_for_storage(lambda: board.finish(claim, status), "recording a trial", _message(ctx, emit))


def _failed_elsewhere(board: SlotBoard, trial_id: int | None) -> bool:
    """True when the trial was finished, not by this worker: failed as stale by another."""
    return trial_id is not None and board.storage.get_trial(trial_id).state.is_finished()


def _settle_after_outage(
    ctx: WorkerContext, board: SlotBoard, claim: Claim, trial_id: int | None, emit: Emit
) -> str:
    """Once the storage is back: keep the trial if it was recorded finished, else fail it
    and release its slot, to be run again (from its checkpoint) by whichever worker."""
    from optuna.trial import TrialState

    def wait(action: Callable[[], Any]) -> Any:
        return wait_for_storage(action, "recording a trial", _message(ctx, emit))

    state = wait(lambda: board.storage.get_trial(trial_id).state) if trial_id is not None else None
    if state in (TrialState.COMPLETE, TrialState.PRUNED):
        _finish(ctx, board, claim, DONE, emit)
        return "complete" if state == TrialState.COMPLETE else "pruned"
    if state == TrialState.RUNNING:
        # UpdateFinishedTrialError: another worker's heartbeat check failed it meanwhile.
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            wait(lambda: board.storage.set_trial_state_values(trial_id, TrialState.FAIL))
    _finish(ctx, board, claim, RELEASED, emit)
    return "failed"


class TrialObjective:
    """The objective of one slot: config from trial, fit, report every epoch, prune."""

    def __init__(
        self,
        ctx: WorkerContext,
        spec: StudySpec,
        board: SlotBoard,
        claim: Claim,
        data: Any,
        emit: Emit,
        outcome: dict[str, str],
    ) -> None:
        self.ctx, self.spec, self.board, self.claim = ctx, spec, board, claim
        self.data, self.emit, self.outcome = data, emit, outcome
        self.info: dict[str, Any] = {"slot": claim.slot}
        self.trial_id: int | None = None
        self.error: BaseException | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            return self._run(trial)
        except KeyboardInterrupt:
            # Wherever Ctrl-C lands in the trial, the trial is recorded as interrupted.
            self.outcome["state"] = "interrupted"
            trial.set_user_attr("interrupted", True)
            raise

    def _run(self, trial: optuna.Trial) -> float:
        from trainer.config import TrainConfig

        fit = trainer_module().fit
        ctx, spec = self.ctx, self.spec
        self.trial_id = trial._trial_id
        if not self.board.bind_trial(self.claim, trial._trial_id):
            raise RuntimeError(f"slot {self.claim.slot} was taken over by another worker")
        params = suggest(trial, spec.space_at(ctx.scale))
        values = {
            **spec.train_values(ctx.scale),
            **params,
            "device": ctx.device,
            "threads": ctx.threads,
        }
        values.setdefault("seed", spec.seed)
        config = TrainConfig.from_dict(values)
        checkpoint_dir = Workdir(ctx.workdir).trial_dir(ctx.study_name, self.claim.slot)
        trial.set_user_attr("slot", self.claim.slot)
        trial.set_user_attr("attempt", self.claim.attempt)
        trial.set_user_attr("config", config.to_dict())
        self.info.update(trial=trial.number, params=params, epochs=config.epochs)
        self.emit({"kind": "trial_start", "worker": ctx.index, **self.info})
        tracker = self._tracker(trial, config, params)

        metric = spec.metric
        reported: set[int] = set()
        pruned = False

        def on_epoch(epoch: int, row: dict[str, float]) -> bool:
            nonlocal pruned
            value = row.get(metric, math.nan)
            trial.report(value, epoch)
            reported.add(epoch)
            if tracker is not None:
                tracker.log_epoch(row, epoch)
            self.emit(
                {"kind": "epoch", "worker": ctx.index, "epoch": epoch, "value": value, **self.info}
            )
            if trial.should_prune():
                pruned = True
                return True
            return False

        try:
            result = fit(config, self.data, on_epoch, checkpoint_dir=checkpoint_dir, resume=True)
        except KeyboardInterrupt:
            if tracker is not None:
                tracker.finish("interrupted", {"optuna_trial_number": trial.number})
            raise
        except Exception as err:
            self.error = err
            if is_disk_full(err):
                self.outcome["state"] = "disk_full"
            elif is_storage_outage(err):
                self.outcome["state"] = "outage"
            trial.set_user_attr("error", f"{type(err).__name__}: {err}"[:500])
            if tracker is not None:
                tracker.finish("failed", {"optuna_trial_number": trial.number})
            raise

        # Epochs trained by an earlier attempt of this slot (resumed from its checkpoint)
        # are reported too, so the trial's curve is whole.
        for row in result.history:
            if int(row["epoch"]) not in reported:
                trial.report(row.get(metric, math.nan), int(row["epoch"]))
        value = float(result.best_metrics.get(metric, math.nan))
        attrs = {
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "images_per_sec": round(result.images_per_sec, 1),
            "wall_seconds": round(result.wall_seconds, 2),
            "device": result.device,
            "peak_memory_mb": round(result.peak_memory_mb, 1),
            "checkpoint": str(result.best_checkpoint) if result.best_checkpoint else None,
            "resumed": self.claim.resumed,
        }
        attrs.update({k: _finite(v) for k, v in result.best_metrics.items() if k != "epoch"})
        for key, val in attrs.items():
            trial.set_user_attr(key, val)
        self.info.update(value=value, best_epoch=result.best_epoch, epochs_run=result.epochs_run)
        state = "pruned" if pruned else "complete"
        if tracker is not None:
            tracker.finish(state, {"optuna_trial_number": trial.number, **attrs})
        if state == "complete" and result.best_checkpoint is not None:
            self._attach(trial, result.best_checkpoint)
        self.outcome["state"] = state
        if pruned:
            raise optuna.TrialPruned(f"pruned at epoch {result.epochs_run}")
        if math.isnan(value):
            raise RuntimeError(f"{metric} is NaN (training diverged)")
        return value

    def _tracker(self, trial: optuna.Trial, config: Any, params: dict[str, Any]) -> Any:
        if self.ctx.wandb_mode == "off":
            return None
        from hpsearch.tracking import TrialTracker

        tracker = TrialTracker(
            self.ctx.wandb_mode,
            self.ctx.study_name,
            self.spec.sampler,
            self.spec.pruner.kind,
            Workdir(self.ctx.workdir).wandb,
        )
        tracker.start(trial.number, config.to_dict(), params)
        return tracker

    def _attach(self, trial: optuna.Trial, path: Path) -> None:
        """Attach the best checkpoint to the trial (viewable in optuna-dashboard).

        Done before the trial is told (a finished trial cannot be changed); a failure
        here costs the attachment, never the trial.
        """
        from hpsearch.artifacts import attach_file, open_artifact_store

        try:
            store = open_artifact_store(Workdir(self.ctx.workdir).artifacts)
            attach_file(trial.study, trial, path, store)
        except Exception as err:  # the checkpoint stays on disk; its path is a user attr
            warnings.warn(
                f"could not attach {path.name} to trial {trial.number}: {err}", stacklevel=2
            )


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
