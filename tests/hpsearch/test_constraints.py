"""``[constraints]``: measured on each trial, handed to Optuna, and the best trial is the
best feasible one; and what trials and studies cost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.samplers._tpe.sampler import _split_trials
from optuna.study._constrained_optimization import _get_feasible_trials
from optuna.trial import TrialState, create_trial

from hpsearch.export.choose import best_complete_trial
from hpsearch.run.worker import run_claim
from hpsearch.study.confirm import top_configurations
from hpsearch.study.load import load_study_file
from hpsearch.study.summary import feasibility, format_feasibility
from hpsearch.trials import best_search_trial, is_feasible
from hpsearch.trials.constraints import UNMEASURED, Constraint, violations
from hpsearch.trials.cost import COST, StudyCost, TrialCost, study_cost, trial_cost
from hpsearch.trials.record import RESULT, START
from tests.hpsearch import fake_trainer
from tests.hpsearch.test_objective import make_slot
from trainer.errors import UserError

STUDY = """
[study]
sampler = "grid"

[space]
lr = [0.001, 0.01]

[scale.full]
epochs = 3
image_size = 32

[constraints]
"recall.covid" = {{ min = {recall} }}
device_seconds = {{ max = 1e6 }}
"""

#: lr 0.01 is the more accurate, but misses COVID-19 cases; lr 0.001 finds 95 % of them.
METRICS = {
    0.01: {"val_accuracy": 0.90, "val_recall_covid": 0.70},
    0.001: {"val_accuracy": 0.80, "val_recall_covid": 0.95},
}


def scripted_fit(config: Any, data: Any, on_epoch: Any = None, **_kw: Any) -> Any:
    history = []
    for epoch in (1, 2, 3):
        row = {"epoch": epoch, **{k: v * epoch / 3 for k, v in METRICS[config.lr].items()}}
        history.append(row)
        if on_epoch is not None:
            on_epoch(epoch, row)
    return fake_trainer.FakeResult(
        best_epoch=3, best_metrics=history[-1], history=history, epochs_run=3,
        stopped_early=False, peak_memory_mb=123.4,
    )  # fmt: skip


def run_both(tmp_path: Path, url: str, name: str, recall: float) -> optuna.Study:
    """Both grid points trained through the objective, in the storage at ``url``."""
    text = STUDY.format(recall=recall)
    worker, claim = make_slot(tmp_path, scripted_fit, text=text, url=url, name=name)
    run_claim(worker, claim)
    _, second = worker.board.claim()
    assert second is not None
    run_claim(worker, second)
    return worker.study


def by_lr(study: optuna.Study) -> dict[float, optuna.trial.FrozenTrial]:
    return {t.params["lr"]: t for t in study.get_trials()}


def test_the_best_feasible_trial_wins_over_a_better_infeasible_one(
    tmp_path: Path, storage_url: str, study_name: str
) -> None:
    study = run_both(tmp_path, storage_url, study_name, recall=0.9)
    trials = by_lr(study)
    accurate, screening = trials[0.01], trials[0.001]
    assert accurate.value == pytest.approx(0.90) and screening.value == pytest.approx(0.80)
    # Each constraint reached Optuna as the trial's constraint value (<= 0: kept) ...
    assert accurate.constraints["recall.covid"] == pytest.approx(0.2)
    assert screening.constraints["recall.covid"] == pytest.approx(-0.05)
    assert accurate.constraints["device_seconds"] < 0
    # ... where Optuna's own rule and TPE's split read them: the infeasible trial is never
    # among TPE's good trials, whatever its value.
    assert [t.number for t in _get_feasible_trials(study.trials)] == [screening.number]
    below, _ = _split_trials(study, study.trials, 1)
    assert [t.number for t in below] == [screening.number]
    # The best trial, the confirmation's candidates and the export take the feasible one.
    assert best_search_trial(study).number == screening.number
    assert [t.number for t in top_configurations(study, 2)] == [screening.number]
    assert best_complete_trial(study).number == screening.number
    assert study.best_trial.number == screening.number  # Optuna 5 agrees


def test_a_study_with_no_feasible_trial_says_so_in_one_line(
    tmp_path: Path, storage_url: str, study_name: str
) -> None:
    study = run_both(tmp_path, storage_url, study_name, recall=0.99)
    assert not any(is_feasible(t) for t in study.trials)
    assert best_search_trial(study) is None
    for refuse in (best_complete_trial, lambda s: top_configurations(s, 2)):
        with pytest.raises(UserError) as err:
            refuse(study)
        message = str(err.value)
        assert "no feasible trial" in message and "recall.covid" in message
        assert "\n" not in message


def test_status_names_the_constraints_and_the_feasible_trials(tmp_path: Path) -> None:
    from hpsearch.study.stored import build_record

    study = run_both(tmp_path, f"sqlite:///{tmp_path / 's.db'}", "s", recall=0.9)
    path = tmp_path / "s.toml"
    record = build_record(load_study_file(path), "full", _data_record(), str(tmp_path))
    summary = feasibility(study, record)
    assert summary is not None
    assert summary["constraints"] == ["recall.covid >= 0.9", "device_seconds <= 1e+06"]
    assert summary["feasible"] == [by_lr(study)[0.001].number]
    assert summary["infeasible"] == {by_lr(study)[0.01].number: ["recall.covid"]}
    assert "1 of 2 complete trials feasible" in format_feasibility(summary)


def _data_record() -> Any:
    from hpsearch.study.record import DataRecord

    return DataRecord(root="x", image_size=32, val_fraction=0.2)


def test_a_trial_records_its_cost(tmp_path: Path) -> None:
    study = run_both(tmp_path, f"sqlite:///{tmp_path / 's.db'}", "s", recall=0.5)
    for trial in study.trials:
        cost = trial_cost(trial)
        assert cost is not None and cost.unit == "cpu" and cost.epochs == 3
        assert cost.device_seconds >= 0 and cost.peak_memory_mb == 123.4


def test_violation_of_each_bound() -> None:
    both = Constraint("val_accuracy", 0.5, 0.9)
    assert both.violation(0.4) == pytest.approx(0.1)
    assert both.violation(0.95) == pytest.approx(0.05)
    assert both.violation(0.7) == pytest.approx(-0.2)
    assert both.violation(float("nan")) == UNMEASURED and both.violation(None) == UNMEASURED
    got = violations([Constraint("recall.covid", 0.9)], {"val_recall_covid": 0.85})
    assert got == {"recall.covid": pytest.approx(0.05)}


BAD = {
    '"recall.covid" = { min = 0.9, max = 0.5 }': "constraints.recall.covid",
    '"recall.cat" = { min = 0.9 }': "constraints.recall.cat: expected recall.CLASS",
    "val_speed = { min = 1.0 }": "constraints.val_speed: not a measure",
    '"recall.covid" = {}': "expected { min = X }, { max = Y } or both",
    '"recall.covid" = { min = "high" }': "constraints.recall.covid.min",
}


@pytest.mark.parametrize("line", sorted(BAD))
def test_bad_constraints_are_refused_in_one_line(tmp_path: Path, line: str) -> None:
    text = STUDY.format(recall=0.9).split("[constraints]")[0] + "[constraints]\n" + line + "\n"
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        load_study_file(path)
    assert BAD[line] in str(err.value) and "\n" not in str(err.value)


# -- what a study cost ------------------------------------------------------------------

DIST = {"lr": CategoricalDistribution([0.001, 0.01, 0.1])}


def _trial(state: TrialState, budget: int, reached: int, cost: TrialCost | None) -> Any:
    attrs: dict[str, Any] = {START: {"slot": 0, "attempt": 1, "config": {"epochs": budget}}}
    if state in (TrialState.COMPLETE, TrialState.PRUNED):
        result: dict[str, Any] = {"epochs_run": reached}
        if cost is not None:
            result[COST] = cost.to_attr()
        attrs[RESULT] = result
    elif cost is not None:
        attrs[COST] = cost.to_attr()
    return create_trial(
        state=state,
        value=0.5 if state == TrialState.COMPLETE else None,
        params={"lr": 0.01},
        distributions=DIST,
        intermediate_values={e: 0.5 for e in range(1, reached + 1)},
        user_attrs=attrs,
    )


def test_study_cost_and_pruning_savings_equal_a_direct_sum() -> None:
    trials = [
        _trial(TrialState.COMPLETE, 10, 10, TrialCost(100.0, "cpu", 10, 900.0)),
        _trial(TrialState.COMPLETE, 10, 10, TrialCost(140.0, "cpu", 10, 950.0)),
        _trial(TrialState.PRUNED, 10, 3, TrialCost(36.0, "cpu", 3, 800.0)),
        # Resumed: 4 epochs reached, 2 of them trained by this attempt.
        _trial(TrialState.PRUNED, 10, 4, TrialCost(30.0, "cpu", 2, 700.0)),
        # A pruned trial that measured no epoch: the finished trials' rate (12 s/epoch).
        _trial(TrialState.PRUNED, 10, 1, TrialCost(0.0, "cpu", 0, None)),
        _trial(TrialState.FAIL, 10, 2, TrialCost(25.0, "cpu", 2, None)),  # interrupted
        _trial(TrialState.FAIL, 10, 0, None),  # failed before it recorded anything
    ]
    cost = study_cost(trials)
    assert cost.trials == 6
    assert cost.device_seconds == pytest.approx(100 + 140 + 36 + 30 + 0 + 25)
    assert cost.epochs == 10 + 10 + 3 + 2 + 0 + 2
    assert cost.peak_memory_mb == 950.0 and cost.units == ("cpu",)
    assert cost.pruned == 3
    assert cost.epochs_saved == (10 - 3) + (10 - 4) + (10 - 1)
    finished_rate = (100 / 10 + 140 / 10) / 2
    expected = (10 - 3) * 36 / 3 + (10 - 4) * 30 / 2 + (10 - 1) * finished_rate
    assert cost.device_seconds_saved == pytest.approx(expected)
    assert StudyCost.from_dict(cost.to_dict()) == cost


def test_a_memory_fallback_is_recorded_on_the_trial(tmp_path: Path) -> None:
    """What ``fit`` reports of a batch trained in micro-batches reaches the trial."""
    fallback = {"batch_size": 32, "micro_batch": 8, "accumulate": 4, "effective_batch": 32,
                "retries": 2, "reason": "DefaultCPUAllocator: can't allocate memory"}  # fmt: skip

    def fit(*args: Any, **kwargs: Any) -> Any:
        result = scripted_fit(*args, **kwargs)
        result.memory_fallback = fallback
        return result

    worker, claim = make_slot(tmp_path, fit, text=STUDY.format(recall=0.5))
    run_claim(worker, claim)
    assert worker.study.trials[0].user_attrs[RESULT]["memory_fallback"] == fallback


def test_the_export_checks_each_constraint_on_the_test_split_with_its_interval() -> None:
    import numpy as np

    from hpsearch.export.constraints import check_on_split
    from hpsearch.trials.constraints import format_checks
    from reports.final import wilson_interval

    # 20 COVID-19 images, 17 found; 30 others, 3 of them called COVID-19.
    y = np.array([0] * 20 + [3] * 30)
    pred = np.array([0] * 17 + [3] * 3 + [0] * 3 + [3] * 27)
    proba = np.eye(4)[pred] * 0.9 + 0.025
    constraints = (
        Constraint("recall.covid", 0.9),
        Constraint("specificity.covid", 0.8),
        Constraint("val_accuracy", 0.5),
        Constraint("device_seconds", max=600.0),
    )
    checks = check_on_split(constraints, "test", y, proba, {"device_seconds": 412.0}, 50)
    recall, specificity, accuracy, seconds = checks
    assert recall["value"] == pytest.approx(17 / 20) and not recall["kept"]
    assert recall["ci95"] == pytest.approx(list(wilson_interval(17, 20)))
    assert specificity["value"] == pytest.approx(27 / 30) and specificity["kept"]
    assert specificity["kept_by_whole_interval"] == (wilson_interval(27, 30)[0] >= 0.8)
    assert accuracy["value"] == pytest.approx(44 / 50) and accuracy["kept"]
    low, high = accuracy["ci95"]
    assert low <= 44 / 50 <= high and "bootstrap" in accuracy["ci_method"]
    assert seconds["value"] == 412.0 and seconds["split"] is None and seconds["kept"]
    lines = format_checks(checks)
    assert lines[0].startswith("recall.covid >= 0.9 on the test split: 0.85 (95 % CI")
    assert lines[0].endswith("NOT kept") and "while it trained" in lines[3]


def test_the_report_marks_the_trials_that_break_a_constraint(tmp_path: Path) -> None:
    from reports.study_figures import study_figures

    study = run_both(tmp_path, f"sqlite:///{tmp_path / 's.db'}", "s", recall=0.9)
    history = study_figures(study).figures["optimization_history"]
    marked = [t for t in history.data if t.name == "breaks a constraint (not a candidate)"]
    assert len(marked) == 1 and marked[0].showlegend
    assert list(marked[0].x) == [by_lr(study)[0.01].number]


def test_a_malformed_stored_constraint_is_left_out_not_trusted() -> None:
    from hpsearch.trials.constraints import from_record

    raw = {"recall.covid": {"min": 0.9}, "x": "high", "y": {"min": "0.5"}, "z": {"max": 600}}
    assert from_record(raw) == (Constraint("recall.covid", 0.9), Constraint("z", max=600))
    assert from_record(["recall.covid"]) == ()
