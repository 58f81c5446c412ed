"""The trial record: written as two user attributes, read back in one place."""

from __future__ import annotations

import json

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from hpsearch.trials import trial_rows
from hpsearch.trials.record import TrialRecord

RESULT = {
    "best_epoch": 2,
    "epochs_run": 3,
    "wall_seconds": 12.34,
    "device": "cpu",
    "checkpoint": "/work/slot-0/best.pt",
    "resumed": True,
    "val_accuracy": 0.8,
    "val_loss": 0.5,
}


def _trial(
    record: TrialRecord, state: TrialState = TrialState.COMPLETE
) -> optuna.trial.FrozenTrial:
    return create_trial(
        state=state,
        value=0.8 if state == TrialState.COMPLETE else None,
        params={"lr": 0.01},
        distributions={"lr": FloatDistribution(1e-4, 1.0, log=True)},
        intermediate_values={1: 0.6, 2: 0.8, 3: 0.7},
        user_attrs=record.user_attrs(),
    )


def test_a_record_reads_back_as_written() -> None:
    record = TrialRecord(slot=4, attempt=2, config={"lr": 0.01}, result=RESULT)
    read = TrialRecord.read(_trial(record))
    assert read == record
    # the accessors name what the readers need
    assert (read.best_epoch, read.epochs_run, read.wall_seconds) == (2, 3, 12.34)
    assert read.checkpoint == "/work/slot-0/best.pt" and read.resumed is True
    assert read.validation_metrics() == {"val_accuracy": 0.8, "val_loss": 0.5}
    # booleans are not numbers; text is not either
    assert set(read.numbers()) == {
        "best_epoch", "epochs_run", "wall_seconds", "val_accuracy", "val_loss"
    }  # fmt: skip


def test_two_attributes_hold_it_all_as_plain_json() -> None:
    attrs = TrialRecord(slot=0, attempt=1, config={"lr": 0.1}, result=RESULT).user_attrs()
    assert set(attrs) == {"start", "result"}
    # optuna-dashboard shows a dict attribute as JSON, cut at 1,024 characters
    assert all(len(json.dumps(v)) < 1024 for v in attrs.values())


def test_a_trial_without_a_record_reads_as_empty() -> None:
    read = TrialRecord.read(_trial(TrialRecord(), TrialState.FAIL))
    assert read.slot is None and read.result == {} and read.best_epoch is None
    # an interrupted or failed trial's reason is read too
    stopped = TrialRecord.read(_trial(TrialRecord(slot=1, interrupted=True, error="boom")))
    assert stopped.interrupted and stopped.error == "boom"


def test_trial_rows_read_the_record(tmp_path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", direction="maximize")
    study.add_trial(_trial(TrialRecord(slot=0, attempt=1, result=RESULT)))
    study.add_trial(_trial(TrialRecord(slot=1, attempt=1), TrialState.PRUNED))
    table = trial_rows(study, user_attrs=True)
    done, pruned = table.rows
    assert (done["best_epoch"], done["epochs_run"], done["seconds"]) == (2, 3, 12.3)
    assert done["val_accuracy"] == 0.8 and done["val_loss"] == 0.5
    # without a recorded result, the epochs it reported and its duration stand in
    assert pruned["epochs_run"] == 3 and pruned["val_accuracy"] is None
    # slot and attempt are not result columns
    assert not {"slot", "attempt", "resumed"} & set(table.columns)
