"""The trials table and study status that ``hpsearch run`` and ``hpsearch status`` print."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from hpsearch.cli import main
from hpsearch.study.summary import format_trials_table, study_status, trial_record
from hpsearch.trials import trial_rows
from hpsearch.trials.expected_best import expected_best_curve
from hpsearch.trials.record import RESULT
from reports.study import trials_table, unused_note

DISTRIBUTIONS = {
    "lr": FloatDistribution(1e-4, 1.0, log=True),
    "momentum": CategoricalDistribution([0.9]),
    "optimizer": CategoricalDistribution(["sgd", "adam"]),
}
START = dt.datetime(2026, 1, 1, 12, 0, 0)


def _add(study: optuna.Study, state: TrialState, optimizer: str, **kw: Any) -> None:
    """A trial of ``state`` that ran 160 s from start to end (finished ones)."""
    trial = create_trial(
        state=state,
        params={"lr": 0.01, "momentum": 0.9, "optimizer": optimizer},
        distributions=DISTRIBUTIONS,
        **kw,
    )
    trial.datetime_start = START
    trial.datetime_complete = START + dt.timedelta(seconds=160) if state.is_finished() else None
    study.add_trial(trial)


def _study() -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name="demo", direction="maximize")


def test_table_headers_are_words_and_adam_momentum_is_marked_unused() -> None:
    study = _study()
    # recorded training time 157.3 s of a trial that took 160 s from start to end
    attrs = {RESULT: {"wall_seconds": 157.3, "best_epoch": 3, "epochs_run": 4}}
    _add(study, TrialState.COMPLETE, "adam", value=0.9, user_attrs=attrs)
    _add(study, TrialState.COMPLETE, "sgd", value=0.8, user_attrs=attrs)
    lines = format_trials_table(study, "val_accuracy").splitlines()
    assert lines[0].split() == [
        "#",
        "state",
        "lr",
        "momentum",
        "optimizer",
        "val_accuracy",
        "best",
        "epoch",
        "epochs",
        "seconds",
    ]
    adam, sgd = lines[1].split(), lines[2].split()
    assert adam[3] == "-" and sgd[3] == "0.9000"  # momentum: not used by Adam
    assert adam[-1] == "157.3"
    # and the table says why the '-' is there
    assert lines[-1].startswith("momentum '-': not used by adam, adamw trials")
    # The report's table agrees: momentum left empty on the Adam trial, and said why.
    report = trials_table(study)
    assert report["momentum"].isna().tolist() == [True, False]
    assert unused_note(study) == (
        "momentum is empty on adam, adamw trials "
        "(not used by that optimizer; the grid still gives it a value)."
    )


def test_a_running_trial_shows_its_last_epoch_value() -> None:
    study = _study()
    _add(study, TrialState.RUNNING, "sgd", intermediate_values={1: 0.5, 2: 0.62})
    row = format_trials_table(study, "val_accuracy").splitlines()[1].split()
    assert row[1] == "running" and row[5] == "0.6200"
    assert row[7] == "2"  # epochs reported so far


def test_status_and_report_share_one_trial_time() -> None:
    study = _study()
    _add(study, TrialState.COMPLETE, "sgd", value=0.8, user_attrs={RESULT: {"wall_seconds": 157.3}})
    _add(study, TrialState.PRUNED, "adam", user_attrs={RESULT: {"wall_seconds": 42.7}})
    rows = trial_rows(study).rows
    status = study_status(study, n_slots=6)
    assert [trial_record(t)["seconds"] for t in study.trials] == [r["seconds"] for r in rows]
    assert status["mean_seconds_per_trial"] == (157.3 + 42.7) / 2  # not 160 s each


def test_no_eta_once_no_trial_is_running() -> None:
    study = _study()
    _add(study, TrialState.COMPLETE, "sgd", value=0.8, user_attrs={RESULT: {"wall_seconds": 100.0}})
    stopped = study_status(study, n_slots=6)
    assert stopped["eta_seconds"] is None and stopped["remaining"] == 5
    _add(study, TrialState.RUNNING, "adam")
    _add(study, TrialState.RUNNING, "sgd")
    running = study_status(study, n_slots=6)
    assert running["eta_seconds"] == 100.0 * 5 / 2  # 5 left shared by 2 running trials


def test_no_eta_when_nothing_is_left() -> None:
    study = _study()
    _add(study, TrialState.COMPLETE, "sgd", value=0.8, user_attrs={RESULT: {"wall_seconds": 100.0}})
    _add(study, TrialState.RUNNING, "adam")  # a stale one, say: nothing left to wait for
    assert study_status(study, n_slots=1)["eta_seconds"] is None


def _sqlite_search(tmp_path: Path, values: list[float]) -> tuple[str, optuna.Study]:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study = optuna.create_study(study_name="demo", storage=url, direction="maximize")
    for value in values:
        _add(study, TrialState.COMPLETE, "sgd", value=value)
    _add(study, TrialState.PRUNED, "adam")  # counts for nothing: no value
    _add(study, TrialState.FAIL, "adam")
    return url, study


def test_status_json_has_the_expected_best_curve(tmp_path: Path, capsys) -> None:
    values = [0.62, 0.70, 0.55, 0.81, 0.77, 0.68]
    url, _ = _sqlite_search(tmp_path, values)
    assert main(["status", "--study", "demo", "--storage", url, "--json"]) == 0
    curve = json.loads(capsys.readouterr().out)["expected_best"]
    assert set(curve) >= {"n", "value", "low", "high", "within_one_se_at"}
    assert curve["n"] == [1, 2, 3, 4, 5, 6]  # the complete trials only
    assert curve["value"] == pytest.approx(expected_best_curve(values).tolist())
    assert curve["value"][0] == pytest.approx(np.mean(values)) and curve["value"][-1] == 0.81
    assert all(lo <= hi for lo, hi in zip(curve["low"], curve["high"], strict=True))
    # no confirmation: one standard error is the spread of the top 5 values
    se = np.std(sorted(values)[-5:], ddof=1)
    assert curve["se"] == pytest.approx(se)
    k = curve["within_one_se_at"]
    assert 0.81 - curve["value"][k - 1] <= se < 0.81 - curve["value"][k - 2]
    # the text view states the read-out in one line
    assert main(["status", "--study", "demo", "--storage", url]) == 0
    assert f"expected best: {k} of these 6 trials reach within one standard error" in (
        capsys.readouterr().out
    )


def test_the_expected_best_read_out_takes_the_confirmed_seeds_noise(tmp_path: Path, capsys) -> None:
    url, _ = _sqlite_search(tmp_path, [0.62, 0.70, 0.55, 0.81, 0.77, 0.68])
    confirm = optuna.create_study(study_name="demo.confirm", storage=url, direction="maximize")
    for seed, value in ((1, 0.78), (2, 0.80), (3, 0.75)):
        confirm.add_trial(
            create_trial(
                params={"lr": 0.01, "momentum": 0.9, "optimizer": "sgd"},
                distributions=DISTRIBUTIONS,
                value=value,
                user_attrs={"confirm_of": 3, "seed": seed},
            )
        )
    assert main(["status", "--study", "demo", "--storage", url, "--json"]) == 0
    curve = json.loads(capsys.readouterr().out)["expected_best"]
    assert curve["se"] == pytest.approx(np.std([0.78, 0.80, 0.75], ddof=1))
    assert curve["se_source"] == "sd of the confirmed leader's seeds"


def test_status_json_of_a_study_without_complete_trials_has_no_curve(
    tmp_path: Path, capsys
) -> None:
    url, _ = _sqlite_search(tmp_path, [])
    assert main(["status", "--study", "demo", "--storage", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["expected_best"] is None
