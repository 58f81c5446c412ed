"""One definition of the objective: ``[study] metric`` is the trial's value, the epoch it
selects (the trainer's monitor) and, through the metric, the direction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hpsearch.run.outcome import TrialOutcome
from hpsearch.run.worker import run_claim
from hpsearch.study.load import load_study_file, with_overrides
from hpsearch.trials.record import TrialRecord
from tests.hpsearch import fake_trainer
from tests.hpsearch.test_objective import make_slot
from trainer.errors import UserError

#: A history whose accuracy peaks at epoch 2 and whose macro F1 peaks at epoch 3.
HISTORY = [
    {"epoch": 1, "val_accuracy": 0.50, "val_macro_f1": 0.40, "val_loss": 1.2},
    {"epoch": 2, "val_accuracy": 0.80, "val_macro_f1": 0.55, "val_loss": 0.9},
    {"epoch": 3, "val_accuracy": 0.70, "val_macro_f1": 0.65, "val_loss": 1.0},
]

F1_STUDY = """
[study]
sampler = "grid"
metric = "val_macro_f1"

[space]
lr = [0.001, 0.01]

[scale.full]
epochs = 3
image_size = 32
"""


def scripted_fit(config: Any, data: Any, on_epoch: Any = None, **_kw: Any) -> Any:
    """The trainer's contract on a scripted history: the best epoch is chosen by
    ``config.monitor``, as ``trainer.training.fit`` chooses it."""
    for row in HISTORY:
        if on_epoch is not None:
            on_epoch(row["epoch"], row)
    sign = -1 if config.monitor == "val_loss" else 1
    best = max(HISTORY, key=lambda r: sign * r[config.monitor])
    return fake_trainer.FakeResult(
        best_epoch=int(best["epoch"]),
        best_metrics=best,
        history=HISTORY,
        epochs_run=3,
        stopped_early=False,
    )


def test_a_macro_f1_study_selects_and_records_the_f1_best_epoch(tmp_path: Path) -> None:
    worker, claim = make_slot(tmp_path, scripted_fit, text=F1_STUDY)
    assert run_claim(worker, claim) is TrialOutcome.COMPLETE
    trial = worker.study.trials[0]
    record = TrialRecord.read(trial)
    # The trainer was told to select by the study's metric ...
    assert record.config is not None and record.config["monitor"] == "val_macro_f1"
    # ... so the epoch that is exported (the best epoch, retrained for that many epochs)
    # is the F1-best one, not the accuracy-best epoch 2, and the value is its F1.
    assert record.best_epoch == 3
    assert trial.value == 0.65
    assert trial.intermediate_values == {1: 0.40, 2: 0.55, 3: 0.65}


def test_the_spec_hands_its_metric_to_the_trainer(tmp_path: Path) -> None:
    path = tmp_path / "f1.toml"
    path.write_text(F1_STUDY)
    spec = load_study_file(path)
    assert spec.train_values("full")["monitor"] == "val_macro_f1"
    assert spec.direction == "maximize"
    path.write_text(F1_STUDY.replace("val_macro_f1", "val_loss"))
    assert load_study_file(path).direction == "minimize"


MISMATCHES = {
    "fixed": ('[fixed]\nmonitor = "val_accuracy"\n', "fixed.monitor: set by [study] metric"),
    "space": ("", "space.monitor: set by [study] metric"),
    "scale": ("", "scale.full.monitor: set by [study] metric"),
    "direction": ("", "study.direction: val_macro_f1 is maximized"),
}


@pytest.mark.parametrize("where", sorted(MISMATCHES))
def test_a_monitor_or_direction_that_disagrees_cannot_be_written(
    tmp_path: Path, where: str
) -> None:
    extra, expected = MISMATCHES[where]
    text = F1_STUDY + extra
    if where == "space":
        text = text.replace("lr = [0.001, 0.01]", 'lr = [0.001, 0.01]\nmonitor = ["val_loss"]')
    if where == "scale":
        text = text.replace("epochs = 3", 'epochs = 3\nmonitor = "val_accuracy"')
    if where == "direction":
        text = text.replace(
            'metric = "val_macro_f1"', 'metric = "val_macro_f1"\ndirection = "minimize"'
        )
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        load_study_file(path)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_set_monitor_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f1.toml"
    path.write_text(F1_STUDY)
    spec = load_study_file(path)
    with pytest.raises(UserError, match="--set monitor: set by \\[study\\] metric"):
        with_overrides(spec, ["monitor=val_accuracy"], "full")


def test_a_matching_direction_may_still_be_written(tmp_path: Path) -> None:
    path = tmp_path / "loss.toml"
    path.write_text(
        F1_STUDY.replace('metric = "val_macro_f1"', 'metric = "val_loss"\ndirection = "minimize"')
    )
    assert load_study_file(path).direction == "minimize"


def test_an_older_studys_record_trained_with_the_default_monitor() -> None:
    from hpsearch.study.record import StudyRecord

    raw = {"data": {}, "fixed": {"epochs": 3}, "metric": "val_macro_f1"}
    assert StudyRecord.from_dict(raw).fixed == {"monitor": "val_accuracy", "epochs": 3}
