"""Errors that every attempt would meet stop the run at once; failed studies are not done.

A setup problem found before the first trial (missing weights) writes nothing; one met
inside a trial (an unreadable file, an unwritable folder) fails that trial with its
reason, spends none of the slot's attempts, and stops the run with one line. A study
whose trials failed on every attempt says so and how to retry.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpsearch.cli import main
from hpsearch.trainer_api import TrainerAPI
from hpsearch.trials.record import TrialRecord
from tests.hpsearch import fake_trainer
from tests.hpsearch.conftest import fake_env, run_cli
from tests.hpsearch.study_checks import assert_one_line_error, random_study, run_args, slot_rows
from tests.trainer._imagefiles import make_folder_per_class

PRETRAINED = """
[study]
sampler = "grid"

[space]
lr = [0.001, 0.01]

[scale.full]
epochs = 1
image_size = 32
pretrained = true
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_folder_per_class(tmp_path_factory.mktemp("data") / "xray", per_class=3)


def test_missing_weights_stop_the_run_before_any_trial(
    tmp_path: Path, dataset: Path, capsys, monkeypatch
) -> None:
    # An empty torch hub: no ImageNet weights anywhere.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    study = tmp_path / "pretrained.toml"
    study.write_text(PRETRAINED)
    db = tmp_path / "study.db"
    args = ["run", "--study", str(study), "--storage", f"sqlite:///{db}", "--data", str(dataset)]
    code = main([*args, "--workdir", str(tmp_path / "work"), "--wandb", "off"])
    err = capsys.readouterr().err
    # One line naming the file and where to put it.
    assert_one_line_error(code, err, "ImageNet weights for resnet18 not found", "weights_path")
    # Nothing written to the storage: not even the SQLite file.
    assert not db.exists()


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("user", "cannot read weights file /models/resnet18.pth"),
        ("permission", "cannot write /shared/ckpt/last.pt: Permission denied"),
    ],
)
def test_an_error_every_attempt_would_meet_stops_the_run(
    tmp_path: Path, kind: str, expected: str
) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study_file = random_study(tmp_path, n_trials=4)
    env = fake_env(tmp_path, STAND_IN_TRAINER="tests.hpsearch.failing_trainer")
    env["FAILING_TRAINER_ERROR"] = kind
    result = run_cli(run_args(study_file, "s", url, tmp_path), env)
    # Exit 2 with the reason on the last line, and no traceback anywhere.
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("hpsearch run: error: ") and expected in last
    study = optuna.load_study(study_name="s", storage=url)
    # One trial ran and failed with the reason recorded; no slot was tried again.
    assert [t.state for t in study.trials] == [TrialState.FAIL]
    assert expected.split(":")[0] in study.trials[0].user_attrs["error"]
    rows = slot_rows(url, study)
    assert [(r.status, r.attempts) for r in rows] == [("released", 0)]


def test_a_study_whose_trials_failed_every_attempt_is_not_done(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study_file = random_study(tmp_path, n_trials=2)
    args = run_args(study_file, "s", url, tmp_path)
    env = fake_env(tmp_path, STAND_IN_TRAINER="tests.hpsearch.failing_trainer")
    failing = {**env, "FAILING_TRAINER_ERROR": "runtime"}
    first = run_cli(args, failing)
    # Each slot failed 3 times; the run says the study is not done and how to retry.
    assert first.returncode == 1, first.stderr
    assert "2 trial(s) failed on all 3 attempts" in first.stderr
    assert "--retry-failed" in first.stderr
    # Once the cause is gone, the same command alone still does not call it done ...
    again = run_cli(args, env)
    assert again.returncode == 1 and "--retry-failed" in again.stderr
    # ... and --retry-failed runs the failed trials.
    retried = run_cli([*args, "--retry-failed"], env)
    assert retried.returncode == 0, retried.stderr
    study = optuna.load_study(study_name="s", storage=url)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.FAIL) == 6 and states.count(TrialState.COMPLETE) == 2
    # status agrees with run.
    status = run_cli(["status", "--study", "s", "--storage", url], env)
    assert "2/2 finished" in status.stdout


GRID = """
[study]
sampler = "grid"

[space]
lr = [0.001, 0.01]

[scale.full]
epochs = 2
image_size = 32

[scale.small]
epochs = 1
image_size = 32
"""


@pytest.fixture
def stand_in_run(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_TRAINER_EPOCH_S", "0")
    study = tmp_path / "g.toml"
    study.write_text(
        GRID.replace('sampler = "grid"', 'sampler = "grid"\nscales = ["full", "small"]')
    )
    trainer = TrainerAPI(load_data=fake_trainer.load_data, fit=fake_trainer.fit)

    def call(*flags: str) -> tuple[int, str]:
        argv = ["run", "--study", str(study), "--storage", f"sqlite:///{tmp_path / 's.db'}"]
        argv += ["--data", str(tmp_path), "--workdir", str(tmp_path / "w"), "--wandb", "off"]
        code = main([*argv, *flags], trainer=trainer)
        return code, capsys.readouterr().err

    return call


def test_scale_and_set_are_checked_like_the_file(stand_in_run) -> None:
    code, err = stand_in_run("--scale", "huge")
    # An unknown scale lists those the file defines.
    assert_one_line_error(code, err, "huge", "full", "small")
    code, err = stand_in_run("--set", "epochs=0")
    # A bad value names the --set key.
    assert_one_line_error(code, err, "--set epochs", ">= 1")
    code, err = stand_in_run("--set", "lr=0.1")
    # A search-space axis cannot be overridden.
    assert_one_line_error(code, err, "--set lr")


def test_resuming_with_other_overrides_is_refused(stand_in_run, tmp_path: Path) -> None:
    code, err = stand_in_run("--scale", "small", "--set", "epochs=3", "--n-trials", "1")
    assert code == 0, err
    study = optuna.load_study(study_name="g", storage=f"sqlite:///{tmp_path / 's.db'}")
    # The overrides and the scale are recorded with the study; the trial used them.
    assert study.user_attrs["hpsearch"]["overrides"] == {"epochs": 3}
    assert study.user_attrs["hpsearch"]["scale"] == "small"
    assert TrialRecord.read(study.trials[0]).epochs_run == 3
    code, err = stand_in_run("--scale", "small", "--set", "epochs=4")
    # Another value on resume is refused with one line, as another search space is.
    assert_one_line_error(code, err, "different overrides")
