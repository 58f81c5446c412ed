"""wandb tracking: one offline run per trial, read back from disk; failures never fail a trial."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import optuna
import pytest

from hpsearch.run.tracking import (
    TrackingWarning,
    TrialTracker,
    log_study_table,
    report_wandb_runs,
    resolve_wandb_mode,
    runs_line,
)
from tests.hpsearch.wandb_records import wait_for_runs

EPOCHS = 3


@pytest.fixture
def wandb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Offline, silent wandb confined to tmp_path; no account, nothing on the network."""
    root = tmp_path / "wandb-root"
    for key in ("WANDB_API_KEY", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(root))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    monkeypatch.setenv("WANDB_DISABLE_CODE", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    return root


def _quiet_study() -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name="demo", direction="maximize")


def _objective(tracker: TrialTracker, prune_trial: int | None = None):
    """A tiny stand-in for a training trial: per-epoch rows like the trainer's history."""

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-3, 1e-1, log=True)
        config = {
            "epochs": EPOCHS,
            "lr": 0.0,  # overwritten by the trial's params
            "batch_size": 8,
            "storage": "postgresql://hp:s3cret@db.example:5432/studies",
        }
        run_id = tracker.start(trial.number, config, trial.params)
        if run_id is not None:  # as the objective does
            trial.set_user_attr("wandb_run_id", run_id)
        acc = 0.0
        for epoch in range(1, EPOCHS + 1):
            acc = 0.5 + 0.1 * epoch + lr
            row = {
                "train_loss": 1.0 / epoch,
                "val_loss": 1.2 / epoch,
                "val_accuracy": acc,
                "val_auc_macro": acc + 0.05,
                "lr": lr,
                "images_per_sec": 250.0,
                "note": "not a number",  # left out of the logged metrics
            }
            tracker.log_epoch(row, epoch)
            trial.report(acc, epoch)
            if trial.number == prune_trial and epoch == 2:
                tracker.finish("pruned", {"epochs_run": epoch})
                raise optuna.TrialPruned()
        tracker.finish("complete", {"val_accuracy": acc, "epochs_run": EPOCHS})
        return acc

    return objective


@pytest.mark.parametrize(
    ("flag", "env", "expected"),
    [
        ("off", {"WANDB_API_KEY": "k"}, "off"),
        ("offline", {"WANDB_API_KEY": "k"}, "offline"),
        ("online", {}, "online"),
        (None, {}, "offline"),
        (None, {"WANDB_API_KEY": "k"}, "online"),
        (None, {"WANDB_API_KEY": "  "}, "offline"),
        (None, {"WANDB_API_KEY": "k", "WANDB_MODE": "offline"}, "offline"),
        (None, {"WANDB_MODE": "disabled"}, "off"),
    ],
)
def test_resolve_wandb_mode(flag, env, expected, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert resolve_wandb_mode(flag) == expected


def test_resolve_wandb_mode_rejects_unknown_flag() -> None:
    with pytest.raises(ValueError, match="'disabled'"):
        resolve_wandb_mode("disabled")


@pytest.mark.slow
def test_offline_runs_per_trial_read_back_from_disk(wandb_env: Path, tmp_path: Path) -> None:
    tracker = TrialTracker("offline", "demo", "tpe", "median", wandb_env)
    study = _quiet_study()
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrackingWarning)  # any wandb failure fails this test
        study.optimize(_objective(tracker, prune_trial=1), n_trials=2)
        assert log_study_table(study, "offline", wandb_env)

    runs = wait_for_runs(wandb_env, 3)
    trial_runs = sorted(
        (r for r in runs if r.job_type == "tpe"), key=lambda r: r.summary["optuna/trial_number"]
    )
    table_runs = [r for r in runs if r.job_type == "study"]
    assert len(runs) == 3 and len(trial_runs) == 2 and len(table_runs) == 1
    assert {r.group for r in runs} == {"demo"}

    for run, trial in zip(trial_runs, study.trials, strict=True):
        # the config is the fixed values with the trial's params on top
        assert run.config["lr"] == pytest.approx(trial.params["lr"])
        assert run.config["batch_size"] == 8
        assert run.config["optuna"]["trial_number"] == trial.number
        assert "sampler:tpe" in run.tags and "pruner:median" in run.tags
        # a password in a logged URL never reaches wandb
        assert "s3cret" not in run.config["storage"] and "***" in run.config["storage"]
        assert run.metric_keys >= {
            "epoch",
            "train_loss",
            "val_accuracy",
            "val_auc_macro",
            "lr",
            "images_per_sec",
        }
        assert "note" not in run.metric_keys
        assert run.exit_code == 0

    complete, pruned = trial_runs
    assert complete.summary["optuna/state"] == "complete"
    assert [row["epoch"] for row in complete.history] == [1, 2, 3]
    assert complete.summary["val_accuracy"] == pytest.approx(study.trials[0].value)
    assert pruned.summary["optuna/state"] == "pruned"
    assert [row["epoch"] for row in pruned.history] == [1, 2]
    assert study.trials[1].state == optuna.trial.TrialState.PRUNED

    (table,) = table_runs
    (row,) = table.history  # the Table is stored as a file, described in the history row
    assert row["trials._type"] == "table-file"
    assert row["trials.nrows"] == 2
    assert table.summary["n_trials"] == 2 and table.summary["n_pruned"] == 1


def test_failed_trial_run_exits_nonzero(wandb_env: Path) -> None:
    tracker = TrialTracker("offline", "demo", "random", "none", wandb_env)
    run_id = tracker.start(7, {"epochs": 1}, {"lr": 0.01})
    tracker.log_epoch({"train_loss": 2.0}, 1)
    tracker.finish("failed", {"error": "CUDA out of memory"})

    (run,) = wait_for_runs(wandb_env, 1)
    assert run.exit_code != 0
    assert run.summary["optuna/state"] == "failed"
    assert run.summary["optuna/trial_number"] == 7
    # start gives the run's id (recorded on the Optuna trial); the config has the number
    assert run.run_id == run_id and run.config["optuna"]["trial_number"] == 7


def test_wandb_init_failure_warns_once_and_trials_go_on(
    wandb_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wandb

    calls = []

    def broken_init(*args, **kwargs):
        calls.append(kwargs)
        raise RuntimeError("wandb service did not start")

    monkeypatch.setattr(wandb, "init", broken_init)
    tracker = TrialTracker("offline", "demo", "tpe", "median", wandb_env)
    study = _quiet_study()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        study.optimize(_objective(tracker), n_trials=3)

    tracking_warnings = [w for w in caught if issubclass(w.category, TrackingWarning)]
    assert len(tracking_warnings) == 1
    assert "wandb service did not start" in str(tracking_warnings[0].message)
    assert len(calls) == 1  # disabled after the first failure: no 60 s timeout per trial
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert not tracker.enabled


class _RunThatFailsToLog:
    def __init__(self) -> None:
        self.finished_with: list[int] = []
        self.tags: tuple[str, ...] = ()

    def define_metric(self, *args, **kwargs) -> None:
        pass

    def log(self, row) -> None:
        raise OSError(28, "No space left on device")

    def finish(self, exit_code: int = 0) -> None:
        self.finished_with.append(exit_code)


def test_log_failure_closes_run_and_disables(wandb_env, monkeypatch) -> None:
    import wandb

    run = _RunThatFailsToLog()
    monkeypatch.setattr(wandb, "init", lambda *a, **k: run)
    tracker = TrialTracker("offline", "demo", "tpe", "median", wandb_env)
    tracker.start(0, {}, {"lr": 0.1})
    with pytest.warns(TrackingWarning, match="No space left"):
        tracker.log_epoch({"train_loss": 1.0}, 1)
    tracker.log_epoch({"train_loss": 0.5}, 2)  # silently ignored now
    tracker.finish("complete", {})
    assert run.finished_with == [1]
    assert tracker.run is None and not tracker.enabled


def test_missing_wandb_package_only_matters_when_on(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` now raises ImportError
    off = TrialTracker("off", "demo", "tpe", "median", tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        off.start(0, {"epochs": 1}, {"lr": 0.1})
        off.log_epoch({"train_loss": 1.0}, 1)
        off.finish("complete", {})
        assert not log_study_table(_quiet_study(), "off", tmp_path)

    on = TrialTracker("offline", "demo", "tpe", "median", tmp_path)
    with pytest.warns(TrackingWarning, match="import of wandb"):
        on.start(0, {"epochs": 1}, {"lr": 0.1})
    on.log_epoch({"train_loss": 1.0}, 1)
    on.finish("complete", {})
    assert not on.enabled


def test_end_of_run_is_one_line_with_the_upload_command(wandb_env: Path, capsys) -> None:
    tracker = TrialTracker("offline", "demo", "grid", "median", wandb_env)
    study = _quiet_study()
    study.optimize(_objective(tracker), n_trials=2)
    capsys.readouterr()
    report_wandb_runs(study, "offline", wandb_env)
    wait_for_runs(wandb_env, 3)
    captured = capsys.readouterr()
    (line,) = captured.out.splitlines()  # wandb's own summaries and hints stay quiet
    assert not captured.err.strip()
    runs = f"{wandb_env / 'wandb'}"
    assert line.startswith(
        f"wandb: this study's 2 trial run(s) and its trials table offline in {runs}/ (project "
    )
    assert "group 'demo'" in line and "other run(s)" not in line
    assert line.endswith(f"upload them all: wandb sync {runs}/offline-run-*")


def test_runs_line_is_relative_and_quoted(tmp_path: Path, monkeypatch) -> None:
    runs = tmp_path / "my work" / "wandb" / "wandb"
    for name in ("offline-run-1", "offline-run-2", "latest-run"):
        (runs / name).mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    line = runs_line("offline", tmp_path / "my work" / "wandb", "grid")
    assert line.startswith("wandb: 2 offline run(s) in 'my work/wandb/wandb'/ ")
    assert line.endswith("wandb sync 'my work/wandb/wandb'/offline-run-*")
    assert runs_line("online", runs, "grid").startswith("wandb: this study's runs are online")


def test_runs_line_tells_the_study_s_runs_from_the_others(tmp_path: Path, monkeypatch) -> None:
    runs = tmp_path / "wandb" / "wandb"
    names = ["20261130_1-aaa", "20261130_2-bbb", "20261130_3-tbl", "20261129_9-old", "x-zzz"]
    for name in names:
        (runs / f"offline-run-{name}").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    line = runs_line("offline", tmp_path / "wandb", "grid", {"aaa", "bbb"}, table=True)
    # two trial runs and the table are this study's; the folder's two others are said apart
    assert line.startswith("wandb: this study's 2 trial run(s) and its trials table offline in")
    assert "; 2 other run(s) there too; upload them all: wandb sync" in line
