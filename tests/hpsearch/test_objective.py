"""The objective and the settling of a slot, in-process, on a real SQLite storage."""

from __future__ import annotations

import errno
import signal
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from hpsearch.objective import TrialOutcome
from hpsearch.slots import DONE, FAILED, RELEASED, SlotBoard
from hpsearch.spec import load_study_file
from hpsearch.storage import open_storage
from hpsearch.study import build_pruner
from hpsearch.trainer_api import TrainerAPI
from hpsearch.worker import WorkerContext, run_claim
from reports.trial_record import TrialRecord
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


def make_slot(tmp_path: Path, fit: Any, pruner: str = "none", settings: str = ""):
    """A study of two grid points, one claimed slot, and the context to run it."""
    study_file = tmp_path / "s.toml"
    study_file.write_text(STUDY.format(pruner=pruner, pruner_settings=settings))
    spec = load_study_file(study_file)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = open_storage(url)
    pruner = build_pruner(spec, "full")
    study = optuna.create_study(
        study_name="s", storage=storage, pruner=pruner, direction="maximize"
    )
    board = SlotBoard(study, storage, spec.budget("full"))
    ctx = WorkerContext(
        index=0,
        storage_url=url,
        study_name="s",
        spec=spec,
        scale="full",
        data=DataConfig(root=tmp_path, image_size=32),
        workdir=tmp_path / "work",
        trainer=TrainerAPI(load_data=fake_trainer.load_data, fit=fit),
    )
    _, claim = board.claim()
    assert claim is not None
    return ctx, study, board, claim


def quick_fit(*args: Any, **kwargs: Any) -> Any:
    return fake_trainer.fit(*args, **kwargs)


def slot_status(board: SlotBoard, slot: int) -> sa.Row:
    return next(r for r in board.rows() if r.slot == slot)


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setenv("FAKE_TRAINER_EPOCH_S", "0")


def test_a_complete_trial_records_its_result_and_closes_the_slot(tmp_path: Path) -> None:
    ctx, study, board, claim = make_slot(tmp_path, quick_fit)
    events: list[dict[str, Any]] = []
    outcome = run_claim(ctx, study, board, claim, fake_trainer.load_data(None), events.append)
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
    assert (row.status, row.trial_id) == (DONE, trial._trial_id)
    # The progress events came in order, ending with the trial's state.
    kinds = [e["kind"] for e in events]
    assert kinds == ["trial_start", "epoch", "epoch", "epoch", "trial_end"]
    assert events[-1]["state"] == "complete"


def test_a_pruned_trial_stops_early_and_closes_the_slot(tmp_path: Path) -> None:
    # A percentile pruner at 100 % with no start-up trials prunes at the first check.
    settings = "percentile = 100.0\nn_startup_trials = 0\nn_warmup_steps = 0"
    ctx, study, board, claim = make_slot(tmp_path, quick_fit, "percentile", settings)
    # Another finished trial gives the pruner something to compare with.
    study.add_trial(
        optuna.trial.create_trial(
            params={"lr": 0.01},
            distributions={"lr": optuna.distributions.CategoricalDistribution([0.001, 0.01])},
            value=1.0,
            intermediate_values={1: 1.0, 2: 1.0, 3: 1.0},
        )
    )
    outcome = run_claim(ctx, study, board, claim, None, lambda e: None)
    trial = study.trials[-1]
    assert outcome is TrialOutcome.PRUNED
    # Pruned after its first epoch: no epoch trained past the verdict.
    assert trial.state == TrialState.PRUNED and sorted(trial.intermediate_values) == [1]
    assert slot_status(board, claim.slot).status == DONE


def test_a_training_error_fails_the_trial_and_spends_an_attempt(tmp_path: Path) -> None:
    def broken_fit(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("CUDA error: an illegal memory access")

    ctx, study, board, claim = make_slot(tmp_path, broken_fit)
    outcome = run_claim(ctx, study, board, claim, None, lambda e: None)
    trial = study.trials[0]
    assert outcome is TrialOutcome.FAILED
    # The reason is on the trial, for the dashboard and status.
    assert trial.state == TrialState.FAIL
    assert "illegal memory access" in trial.user_attrs["error"]
    # The slot is failed with one attempt used: the next claim may try it again.
    row = slot_status(board, claim.slot)
    assert (row.status, row.attempts) == (FAILED, 1)


def test_a_full_disk_releases_the_slot_and_stops_the_worker(tmp_path: Path) -> None:
    def full_disk_fit(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device", "/work/last.pt")

    ctx, study, board, claim = make_slot(tmp_path, full_disk_fit)
    with pytest.raises(UserError, match=r"disk full writing /work/last\.pt"):
        run_claim(ctx, study, board, claim, None, lambda e: None)
    # Not the trial's fault: the slot is released, its attempt not spent on a failure.
    assert slot_status(board, claim.slot).status == RELEASED


def test_ctrl_c_in_training_releases_the_slot_and_marks_the_trial(tmp_path: Path) -> None:
    def interrupted_fit(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    ctx, study, board, claim = make_slot(tmp_path, interrupted_fit)
    events: list[dict[str, Any]] = []
    with pytest.raises(KeyboardInterrupt):  # the worker stops
        run_claim(ctx, study, board, claim, None, events.append)
    trial = study.trials[0]
    assert events[-1]["kind"] == "trial_end" and events[-1]["state"] == "interrupted"
    # Recorded as interrupted, and the slot is free for the next run to resume, its
    # attempt not spent.
    assert trial.user_attrs.get("interrupted") is True
    row = slot_status(board, claim.slot)
    assert (row.status, row.attempts) == (RELEASED, 0)


@pytest.mark.usefixtures("terminal_ctrl_c")
def test_ctrl_c_while_optuna_creates_the_trial_still_records_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, study, board, claim = make_slot(tmp_path, quick_fit)
    storage = study._storage
    create = storage.create_new_trial

    def create_then_ctrl_c(*args: Any, **kwargs: Any) -> int:
        trial_id = create(*args, **kwargs)
        # Ctrl-C after the trial is stored, before Optuna hands it to the sampler: on a
        # busy machine that is a wide window
        signal.raise_signal(signal.SIGINT)
        return trial_id

    monkeypatch.setattr(storage, "create_new_trial", create_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        run_claim(ctx, study, board, claim, None, lambda e: None)
    # no trial left running: it is failed as interrupted and its slot is free again
    (trial,) = study.trials
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs.get("interrupted") is True
    row = slot_status(board, claim.slot)
    assert (row.status, row.attempts) == (RELEASED, 0)


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
    from hpsearch.summary import format_trials_table, trial_record
    from hpsearch.tracking import trials_table

    writes: list[str] = []
    set_user_attr = optuna.Trial.set_user_attr

    def counting(self: optuna.Trial, key: str, value: Any) -> None:
        writes.append(key)
        set_user_attr(self, key, value)

    monkeypatch.setattr(optuna.Trial, "set_user_attr", counting)
    ctx, study, board, claim = make_slot(tmp_path, quick_fit)
    run_claim(ctx, study, board, claim, fake_trainer.load_data(None), lambda e: None)
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
