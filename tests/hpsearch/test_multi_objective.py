"""Several objectives: a Pareto front, unpruned, listed by status and best, drawn by the
report, and any point of it exported with ``best --export DIR --trial N``."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import pytest

from hpsearch.cli import main
from hpsearch.export.choose import best_complete_trial, choose_winner_and_runner_up
from hpsearch.run.worker import run_claim
from hpsearch.study.confirm import top_configurations
from hpsearch.study.load import load_study_file
from hpsearch.study.record import DataRecord
from hpsearch.study.stored import build_record
from hpsearch.study.summary import front_summary
from hpsearch.trials import best_search_trial, pareto_front
from reports.study_figures import study_figures
from tests.hpsearch import fake_trainer
from tests.hpsearch.conftest import fake_env, run_cli
from tests.hpsearch.test_objective import make_slot
from trainer.errors import UserError

STUDY = """
[study]
sampler = "grid"
metric = "val_accuracy"
objectives = ["val_accuracy", "val_recall_covid", "val_loss"]

[pruner]
kind = "median"

[space]
lr = [0.0001, 0.001, 0.01, 0.1]

[scale.full]
epochs = 2
image_size = 32
"""

#: Accuracy, COVID-19 recall and loss of each learning rate: 0.01 is the most accurate,
#: 0.001 finds the most COVID-19 cases, 0.1 has the lowest loss; 0.0001 is dominated.
POINTS = {
    0.0001: (0.60, 0.50, 1.00),
    0.001: (0.80, 0.95, 0.70),
    0.01: (0.90, 0.80, 0.60),
    0.1: (0.85, 0.70, 0.50),
}


def scripted_fit(config: Any, data: Any, on_epoch: Any = None, **_kw: Any) -> Any:
    accuracy, recall, loss = POINTS[config.lr]
    history = []
    for epoch in (1, 2):
        row = {"epoch": epoch, "val_accuracy": accuracy * epoch / 2,
               "val_recall_covid": recall * epoch / 2, "val_loss": loss * (3 - epoch)}  # fmt: skip
        history.append(row)
        if on_epoch is not None:
            on_epoch(epoch, row)
    return fake_trainer.FakeResult(
        best_epoch=2, best_metrics=history[-1], history=history, epochs_run=2,
        stopped_early=False,
    )  # fmt: skip


def run_all(tmp_path: Path, url: str, name: str) -> optuna.Study:
    worker, claim = make_slot(tmp_path, scripted_fit, text=STUDY, url=url, name=name)
    spec = load_study_file(tmp_path / "s.toml")
    record = build_record(
        spec, "full", DataRecord(root="x", image_size=32, val_fraction=0.2), str(tmp_path)
    )
    record.write(worker.study)
    while claim is not None:
        run_claim(worker, claim)
        _, claim = worker.board.claim()
    return worker.study


def test_the_file_declares_the_objectives_and_their_directions(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(STUDY)
    spec = load_study_file(path)
    assert spec.objectives == ("val_accuracy", "val_recall_covid", "val_loss")
    assert spec.directions == ("maximize", "maximize", "minimize")
    # Optuna prunes single-objective studies only: the median pruner is not used.
    assert isinstance(spec.build_pruner("full"), optuna.pruners.NopPruner)


BAD = {
    'objectives = ["val_accuracy"]': "study.objectives: expected two or more",
    'objectives = ["val_loss", "val_accuracy"]': "the first must be study.metric",
    'objectives = ["val_accuracy", "speed"]': "study.objectives: speed: not a recorded",
    'objectives = ["val_accuracy", "val_accuracy"]': "study.objectives: repeated names",
}


@pytest.mark.parametrize("line", sorted(BAD))
def test_bad_objectives_are_refused_in_one_line(tmp_path: Path, line: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        STUDY.replace('objectives = ["val_accuracy", "val_recall_covid", "val_loss"]', line)
    )
    with pytest.raises(UserError) as err:
        load_study_file(path)
    assert BAD[line] in str(err.value) and "\n" not in str(err.value)


def test_a_stop_rule_is_refused_for_several_objectives(tmp_path: Path) -> None:
    text = STUDY.replace('sampler = "grid"', 'sampler = "random"') + (
        "\n[budget]\nn_trials = 4\n\n[stop]\npatience = 2\n"
    )
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserError, match="stop: a study of several objectives has a front"):
        load_study_file(path)


def test_the_front_is_optunas_best_trials(
    tmp_path: Path, storage_url: str, study_name: str
) -> None:
    study = run_all(tmp_path, storage_url, study_name)
    by_lr = {t.params["lr"]: t for t in study.trials}
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert by_lr[0.01].values == pytest.approx([0.90, 0.80, 0.60])
    assert not any(t.intermediate_values for t in study.trials)  # nothing reported: unpruned
    front = [t.number for t in pareto_front(study)]
    assert front == sorted(t.number for t in study.best_trials)
    assert sorted(front) == sorted(by_lr[lr].number for lr in (0.001, 0.01, 0.1))
    summary = front_summary(study, None)
    assert [p["number"] for p in summary["front"]] == front
    # No single best: the commands that need one say what to do instead, in one line.
    assert best_search_trial(study) is None
    for refuse in (best_complete_trial, lambda s: top_configurations(s, 2)):
        with pytest.raises(UserError) as err:
            refuse(study)
        assert "several objectives" in str(err.value) and "--trial N" in str(err.value)
    # A point of the front is chosen by number; a dominated one can be chosen too.
    winner, rival = choose_winner_and_runner_up(study, by_lr[0.001].number)
    assert winner.number == by_lr[0.001].number and rival is None


def test_status_best_and_the_report_show_the_front(tmp_path: Path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'front.db'}"
    study = run_all(tmp_path, url, "front")
    front = sorted(t.number for t in study.best_trials)
    assert main(["status", "--study", "front", "--storage", url, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [p["number"] for p in status["pareto"]["front"]] == front
    assert status["pareto"]["objectives"] == ["val_accuracy", "val_recall_covid", "val_loss"]
    assert main(["best", "--study", "front", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "Pareto front (val_accuracy (up), val_recall_covid (up), val_loss (down)" in out
    assert all(f"trial {n}:" in out for n in front)
    assert (
        main(["best", "--study", "front", "--storage", url, "--export", str(tmp_path / "x")]) == 2
    )
    assert "name the point of its Pareto front to export with --trial N" in capsys.readouterr().err
    assert main(["report", "--study", "front", "--storage", url, "--out", str(tmp_path / "r")]) == 0
    page = (tmp_path / "r" / "report.html").read_text()
    assert "Pareto front" in page and "a Pareto front, unpruned" in page
    settings = study.user_attrs["hpsearch"]
    figures = study_figures(study, settings)
    assert list(figures.figures) == ["pareto_front"]
    assert "several objectives" in figures.skipped["optimization_history"]


def test_a_run_says_pruning_is_off_and_records_the_front(tmp_path: Path, grid_file) -> None:
    path = grid_file(pruner="median", epochs=2)
    text = path.read_text().replace(
        'direction = "maximize"', 'objectives = ["val_accuracy", "device_seconds"]'
    )
    path.write_text(text)
    url = f"sqlite:///{tmp_path / 'run.db'}"
    work = str(tmp_path / "w")
    args = ["run", "--study", str(path), "--name", "mo", "--storage", url, "--data",
            str(tmp_path), "--workers", "2", "--workdir", work, "--wandb", "off"]  # fmt: skip
    result = run_cli(args, fake_env(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "objectives val_accuracy, device_seconds (a Pareto front), pruning off" in (
        result.stdout + result.stderr
    )
    study = optuna.load_study(study_name="mo", storage=url)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    status = run_cli(["status", "--study", "mo", "--storage", url, "--json"], fake_env(tmp_path))
    front = json.loads(status.stdout)["pareto"]["front"]
    assert sorted(p["number"] for p in front) == sorted(t.number for t in study.best_trials)


def test_a_stored_record_with_other_objective_names_does_not_break_status(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'front.db'}"
    study = run_all(tmp_path, url, "front")
    record = build_record(
        load_study_file(tmp_path / "s.toml"), "full", DataRecord("x", 32, 0.2), str(tmp_path)
    )
    for names in (["only_one"], [1, 2, 3]):
        summary = front_summary(study, replace(record, objectives=names))
        assert summary["objectives"] == ["objective 0", "objective 1", "objective 2"]
