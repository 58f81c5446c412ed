"""The objective and the settling of a slot, in-process, on a real SQLite storage."""

from __future__ import annotations

import dataclasses
import errno
import signal
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from hpsearch.paths import Workdir
from hpsearch.run.claims import SlotBoard, SlotStatus
from hpsearch.run.context import Placement, StudyAccess, WorkerContext
from hpsearch.run.events import Event, TrialEnded
from hpsearch.run.kinds import Search
from hpsearch.run.outcome import TrialOutcome
from hpsearch.run.worker import TrialBudget, Worker, run_claim
from hpsearch.storage import open_storage
from hpsearch.storage.optuna_api import study_storage
from hpsearch.study.load import load_study_file
from hpsearch.trainer_api import TrainerAPI
from hpsearch.trials.record import TrialRecord
from tests.hpsearch import fake_trainer
from trainer.config import DataConfig
from trainer.errors import UserError

STUDY = """
[study]
sampler = "grid"

[pruner]
kind = "{pruner}"
{pruner_settings}

[space]
lr = [0.001, 0.01]

[scale.full]
epochs = 3
image_size = 32
"""


def make_slot(
    tmp_path: Path,
    fit: Any,
    pruner: str = "none",
    settings: str = "",
    emit: Any = lambda event: None,
    text: str | None = None,
    url: str | None = None,
    name: str = "s",
) -> tuple[Worker, Any]:
    """A study of two grid points (or the study file ``text``), a worker on it, and the
    slot it claimed."""
    study_file = tmp_path / "s.toml"
    study_file.write_text(text or STUDY.format(pruner=pruner, pruner_settings=settings))
    spec = load_study_file(study_file)
    url = url or f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(
        study_name=name, storage=open_storage(url), pruner=spec.build_pruner("full"),
        directions=list(spec.directions),
    )  # fmt: skip
    ctx = WorkerContext(
        access=StudyAccess(url, name),
        placement=Placement(index=0),
        kind=Search(spec, "full"),
        data=DataConfig(root=tmp_path, image_size=32),
        workdir=Workdir(tmp_path / "work"),
        trainer=TrainerAPI(load_data=fake_trainer.load_data, fit=fit),
    )
    worker = Worker(ctx, TrialBudget(None), emit)
    _, claim = worker.board.claim()
    assert claim is not None
    return worker, claim


def quick_fit(*args: Any, **kwargs: Any) -> Any:
    return fake_trainer.fit(*args, **kwargs)


def slot_status(board: SlotBoard, slot: int) -> sa.Row:
    return next(r for r in board.rows() if r.slot == slot)


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setenv("FAKE_TRAINER_EPOCH_S", "0")


def test_a_complete_trial_records_its_result_and_closes_the_slot(tmp_path: Path) -> None:
    events: list[Event] = []
    worker, claim = make_slot(tmp_path, quick_fit, emit=events.append)
    study, board = worker.study, worker.board
    outcome = run_claim(worker, claim)
    trial = study.trials[0]
    # The trial is complete with the best epoch's validation accuracy as its value.
    assert outcome is TrialOutcome.COMPLETE
    assert trial.state == TrialState.COMPLETE
    assert trial.value == max(trial.intermediate_values.values())
    # Every epoch was reported, and the result's attributes were recorded.
    assert sorted(trial.intermediate_values) == [1, 2, 3]
    record = TrialRecord.read(trial)
    assert record.epochs_run == 3 and record.slot == claim.slot
    assert record.config is not None and record.config["lr"] == trial.params["lr"]
    assert record.validation_metrics()["val_accuracy"] == trial.value
    # The slot is done and bound to this trial.
    row = slot_status(board, claim.slot)
    assert (row.status, row.trial_id) == (SlotStatus.DONE, trial._trial_id)
    # The progress events came in order, ending with the trial's state.
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["TrialStarted", "EpochEnded", "EpochEnded", "EpochEnded", "TrialEnded"]
    assert isinstance(events[-1], TrialEnded) and events[-1].state == "complete"


def test_a_pruned_trial_stops_early_and_closes_the_slot(tmp_path: Path) -> None:
    # A percentile pruner at 100 % with no start-up trials prunes at the first check.
    settings = "percentile = 100.0\nn_startup_trials = 0\nn_warmup_steps = 0"
    worker, claim = make_slot(tmp_path, quick_fit, "percentile", settings)
    study, board = worker.study, worker.board
    # Another finished trial gives the pruner something to compare with.
    study.add_trial(
        optuna.trial.create_trial(
            params={"lr": 0.01},
            distributions={"lr": optuna.distributions.CategoricalDistribution([0.001, 0.01])},
            value=1.0,
            intermediate_values={1: 1.0, 2: 1.0, 3: 1.0},
        )
    )
    outcome = run_claim(worker, claim)
    trial = study.trials[-1]
    assert outcome is TrialOutcome.PRUNED
    # Pruned after its first epoch: no epoch trained past the verdict.
    assert trial.state == TrialState.PRUNED and sorted(trial.intermediate_values) == [1]
    assert slot_status(board, claim.slot).status == SlotStatus.DONE


def test_a_training_error_fails_the_trial_and_spends_an_attempt(tmp_path: Path) -> None:
    def broken_fit(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("CUDA error: an illegal memory access")

    worker, claim = make_slot(tmp_path, broken_fit)
    study, board = worker.study, worker.board
    outcome = run_claim(worker, claim)
    trial = study.trials[0]
    assert outcome is TrialOutcome.FAILED
    # The reason is on the trial, for the dashboard and status.
    assert trial.state == TrialState.FAIL
    assert "illegal memory access" in trial.user_attrs["error"]
    # The slot is failed with one attempt used: the next claim may try it again.
    row = slot_status(board, claim.slot)
    assert (row.status, row.attempts) == (SlotStatus.FAILED, 1)


def test_a_full_disk_releases_the_slot_and_stops_the_worker(tmp_path: Path) -> None:
    def full_disk_fit(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device", "/work/last.pt")

    worker, claim = make_slot(tmp_path, full_disk_fit)
    board = worker.board
    with pytest.raises(UserError, match=r"disk full writing /work/last\.pt"):
        run_claim(worker, claim)
    # Not the trial's fault: the slot is released, its attempt not spent on a failure.
    assert slot_status(board, claim.slot).status == SlotStatus.RELEASED


def test_ctrl_c_in_training_releases_the_slot_and_marks_the_trial(tmp_path: Path) -> None:
    def interrupted_fit(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    events: list[Event] = []
    worker, claim = make_slot(tmp_path, interrupted_fit, emit=events.append)
    study, board = worker.study, worker.board
    with pytest.raises(KeyboardInterrupt):  # the worker stops
        run_claim(worker, claim)
    trial = study.trials[0]
    assert isinstance(events[-1], TrialEnded) and events[-1].state == "interrupted"
    # Recorded as interrupted, and the slot is free for the next run to resume, its
    # attempt not spent.
    assert trial.user_attrs.get("interrupted") is True
    row = slot_status(board, claim.slot)
    assert (row.status, row.attempts) == (SlotStatus.RELEASED, 0)


@pytest.mark.usefixtures("terminal_ctrl_c")
def test_ctrl_c_while_optuna_creates_the_trial_still_records_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker, claim = make_slot(tmp_path, quick_fit)
    study, board = worker.study, worker.board
    storage = study_storage(worker.study)
    create = storage.create_new_trial

    def create_then_ctrl_c(*args: Any, **kwargs: Any) -> int:
        trial_id = create(*args, **kwargs)
        # Ctrl-C after the trial is stored, before Optuna hands it to the sampler: on a
        # busy machine that is a wide window
        signal.raise_signal(signal.SIGINT)
        return trial_id

    monkeypatch.setattr(storage, "create_new_trial", create_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        run_claim(worker, claim)
    # no trial left running: it is failed as interrupted and its slot is free again
    (trial,) = study.trials
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs.get("interrupted") is True
    row = slot_status(board, claim.slot)
    assert (row.status, row.attempts) == (SlotStatus.RELEASED, 0)


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (OSError(errno.ENOSPC, "No space left"), TrialOutcome.DISK_FULL),
        (OSError(errno.EDQUOT, "Quota exceeded"), TrialOutcome.DISK_FULL),
        (sa.exc.OperationalError("SELECT 1", {}, Exception("server closed")), TrialOutcome.OUTAGE),
        (ValueError("bad shape"), TrialOutcome.FAILED),
    ],
)
def test_errors_are_told_apart_in_one_place(error: BaseException, outcome: TrialOutcome) -> None:
    # Disk full and storage outages are not the trial's fault; anything else is.
    assert TrialOutcome.of_error(error) is outcome


def test_a_trial_records_its_result_in_two_writes_that_every_reader_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpsearch.export import best_summary
    from hpsearch.paths import Workdir
    from hpsearch.run.tracking import trials_table
    from hpsearch.study.summary import format_trials_table, trial_record

    writes: list[str] = []
    set_user_attr = optuna.Trial.set_user_attr

    def counting(self: optuna.Trial, key: str, value: Any) -> None:
        writes.append(key)
        set_user_attr(self, key, value)

    monkeypatch.setattr(optuna.Trial, "set_user_attr", counting)
    worker, claim = make_slot(tmp_path, quick_fit)
    study = worker.study
    run_claim(worker, claim)
    trial = study.trials[0]
    # One storage write when the trial starts, one when it ends.
    assert writes == ["start", "result"]
    # (besides the best checkpoint's attachment, which optuna-dashboard lists)
    assert {k for k in trial.user_attrs if not k.startswith("artifact:")} == {"start", "result"}
    # status: the trial as JSON, and the terminal table
    status = trial_record(trial)
    assert (status["slot"], status["attempt"]) == (claim.slot, claim.attempt)
    assert status["config"]["lr"] == trial.params["lr"]
    assert status["user_attrs"]["result"]["epochs_run"] == 3
    _, row = format_trials_table(study, "val_accuracy").splitlines()
    assert row.split()[-3:-1] == ["3", "3"]  # best epoch, epochs run
    # best: the best epoch, epochs run and validation metrics
    best = best_summary(study, Workdir(tmp_path / "work"))
    assert (best["best_epoch"], best["epochs_run"]) == (3, 3)
    assert best["validation_metrics"]["val_accuracy"] == trial.value
    # the wandb table (and the report's, through the same rows): numeric results as columns
    columns, rows = trials_table(study)
    assert {"val_accuracy", "images_per_sec"} <= set(columns) and "slot" not in columns
    assert rows[0][columns.index("val_accuracy")] == trial.value


def test_auto_precision_is_decided_per_trial_and_recorded(tmp_path: Path) -> None:
    from dataclasses import dataclass

    seen: list[str] = []

    def fit_seeing_precision(config: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(config.precision)
        return fake_trainer.fit(config, *args, **kwargs)

    @dataclass
    class Choice:
        precision: str = "fp32"

        def to_attr(self) -> dict[str, Any]:
            return {"precision": self.precision, "fp32_steps_per_sec": 2.0, "bf16": 1.5}

    asked: list[dict[str, Any]] = []

    def choose(config: Any, *, image_size: int, cache_file: Path) -> Choice:
        asked.append({"precision": config.precision, "size": image_size, "file": cache_file})
        return Choice()

    worker, claim = make_slot(tmp_path, fit_seeing_precision)
    ctx = worker.ctx
    worker.ctx = dataclasses.replace(
        ctx, trainer=dataclasses.replace(ctx.trainer, choose_precision=choose)
    )
    run_claim(worker, claim)
    trial = worker.study.trials[0]
    # 'auto' was decided before training, at the data's image size, cached in the workdir
    assert asked == [
        {"precision": "auto", "size": 32, "file": tmp_path / "work" / "precision-probe.json"}
    ]
    assert seen == ["fp32"]
    # both figures are recorded on the trial, for the dashboard and status
    assert trial.user_attrs["precision_choice"]["fp32_steps_per_sec"] == 2.0
