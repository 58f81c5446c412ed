"""``hpsearch run`` on a grid: exactly once across worker processes, on SQLite and PostgreSQL.

The trainer is replaced by a fast stand-in (tests/hpsearch/fake_trainer.py) so these
tests exercise the real orchestration — claims, storage, workers, pruning — in seconds.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import signal
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpsearch.trials.record import TrialRecord
from tests.hpsearch.conftest import fake_env, run_cli
from tests.hpsearch.study_checks import start_cli

pytestmark = pytest.mark.slow  # every test runs `hpsearch run` workers in subprocesses

GRID = {
    "lr": [0.0001, 0.001, 0.01, 0.1],
    "optimizer": ["sgd", "adam"],
    "batch_size": [16, 32],
}
GRID_SIZE = 16


def _points() -> set[tuple]:
    return set(itertools.product(*GRID.values()))


def _key(params: dict) -> tuple:
    return tuple(params[k] for k in GRID)


def _load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


@pytest.mark.parametrize("pruner", ["none", "median"])
def test_grid_four_workers_runs_every_point_once(
    tmp_path: Path, grid_file, storage_url: str, study_name: str, pruner: str
) -> None:
    study_path = grid_file(pruner=pruner)
    args = [
        "run",
        "--study",
        str(study_path),
        "--name",
        study_name,
        "--storage",
        storage_url,
        "--data",
        str(tmp_path),
        "--workers",
        "4",
        "--workdir",
        str(tmp_path / "work"),
        "--wandb",
        "off",
    ]
    result = run_cli(args, fake_env(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    # SQLite under four writers: no lock error anywhere
    assert "locked" not in (result.stdout + result.stderr).lower()
    study = _load(storage_url, study_name)
    finished = _finished(study)
    # every grid point trained, none twice, nothing off the grid
    assert len(finished) == GRID_SIZE
    assert {_key(t.params) for t in finished} == _points()
    # no failed or stray trials at all
    assert len(study.trials) == GRID_SIZE
    if pruner == "median":
        assert any(t.state == TrialState.PRUNED for t in finished)
        # pruned trials keep their curve
        assert all(t.intermediate_values for t in finished)
    # the epochs really trained match the trials' curves (nothing trained twice)
    log = (tmp_path / "epochs.log").read_text().splitlines()
    assert len(log) == sum(len(t.intermediate_values) for t in finished)
    # a rerun finds the study done and trains nothing
    again = run_cli(args, fake_env(tmp_path))
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(_load(storage_url, study_name).trials) == GRID_SIZE
    assert len((tmp_path / "epochs.log").read_text().splitlines()) == len(log)


def _wait_for_epochs(log: Path, n: int, timeout: float = 60) -> list[str]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if log.exists():
            lines = log.read_text().splitlines()
            if len(lines) >= n:
                return lines
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} epochs trained in {timeout} s")


def test_sigkill_mid_trial_then_rerun_retries_the_killed_trial(
    tmp_path: Path, grid_file, study_name: str
) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study_path = grid_file(epochs=4)
    args = [
        "run",
        "--study",
        str(study_path),
        "--name",
        study_name,
        "--storage",
        url,
        "--data",
        str(tmp_path),
        "--workers",
        "2",
        "--workdir",
        str(tmp_path / "work"),
        "--wandb",
        "off",
    ]
    env = fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0.3", FAKE_TRAINER_STALL_AFTER="6")
    proc = start_cli(args, env)
    log = tmp_path / "epochs.log"
    lines = _wait_for_epochs(log, 6)
    # kill one worker process hard, in the middle of its trial
    victim = int(lines[-1].split()[0])
    os.kill(victim, signal.SIGKILL)
    time.sleep(0.5)
    # then the whole run, as a crashed machine would
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    study = _load(url, study_name)
    assert any(t.state == TrialState.RUNNING for t in study.trials)

    rerun = run_cli(args, fake_env(tmp_path))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    study = _load(url, study_name)
    finished = _finished(study)
    # every grid point done once, nothing off the grid
    assert len(finished) == GRID_SIZE
    assert {_key(t.params) for t in finished} == _points()
    # the killed trials were failed by the heartbeat check and retried from their checkpoint
    # (a trial killed before it drew its parameters has none)
    failed = [t for t in study.trials if t.state == TrialState.FAIL and t.params]
    assert failed, "the killed trials should be recorded as failed"
    retried = {_key(t.params) for t in finished if TrialRecord.read(t).resumed}
    assert {_key(t.params) for t in failed} <= retried
    # resumed, not restarted: each grid point trained each epoch once
    epochs = collections.Counter(tuple(line.split()[1:]) for line in log.read_text().splitlines())
    assert max(epochs.values()) == 1


def test_sigint_stops_cleanly_and_rerun_resumes(tmp_path: Path, grid_file, study_name: str) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study_path = grid_file(epochs=3)
    args = [
        "run",
        "--study",
        str(study_path),
        "--name",
        study_name,
        "--storage",
        url,
        "--data",
        str(tmp_path),
        "--workers",
        "1",
        "--workdir",
        str(tmp_path / "work"),
        "--wandb",
        "off",
    ]
    env = fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0.2", FAKE_TRAINER_STALL_AFTER="5")
    proc = start_cli(args, env)
    log = tmp_path / "epochs.log"
    _wait_for_epochs(log, 5)  # trial 0 done, trial 1 in its second epoch
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "resume" in out + err
    study = _load(url, study_name)
    interrupted = [t for t in study.trials if t.user_attrs.get("interrupted")]
    assert len(interrupted) == 1 and interrupted[0].state == TrialState.FAIL
    done_before = {_key(t.params) for t in _finished(study)}
    assert done_before

    rerun = run_cli(args, fake_env(tmp_path))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    study = _load(url, study_name)
    finished = _finished(study)
    assert len(finished) == GRID_SIZE
    assert {_key(t.params) for t in finished} == _points()
    # completed trials were not redone, and the interrupted one resumed its epochs
    epochs = collections.Counter(tuple(line.split()[1:]) for line in log.read_text().splitlines())
    assert max(epochs.values()) == 1


def test_status_json_lists_every_trial(tmp_path: Path, grid_file, study_name: str) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    args = [
        "run",
        "--study",
        str(grid_file()),
        "--name",
        study_name,
        "--storage",
        url,
        "--data",
        str(tmp_path),
        "--workdir",
        str(tmp_path / "work"),
        "--wandb",
        "off",
        "--n-trials",
        "5",
    ]
    assert run_cli(args, fake_env(tmp_path)).returncode == 0
    out = run_cli(["status", "--study", study_name, "--storage", url, "--json"], fake_env(tmp_path))
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    # --n-trials capped this run at 5 of the 16 points
    assert status["finished"] == 5 and status["remaining"] == GRID_SIZE - 5
    assert len(status["trials"]) == 5
    assert all(
        {"number", "state", "params", "value", "user_attrs"} <= set(t) for t in status["trials"]
    )
    text = run_cli(["status", "--storage", url], fake_env(tmp_path))
    assert study_name in text.stdout and "5/16 finished" in text.stdout


def test_a_study_made_again_under_its_name_never_resumes_the_old_checkpoints(
    tmp_path: Path, grid_file
) -> None:
    """The workdir keeps a deleted study's checkpoints; a new study of the same name (or
    one of that name in another storage sharing the workdir) trains its own, from epoch 1,
    and leaves the old ones as they were."""
    work = tmp_path / "work"
    study_path = grid_file(epochs=2)
    for db in ("first.db", "second.db"):
        url = f"sqlite:///{tmp_path / db}"
        args = ["run", "--study", str(study_path), "--name", "same", "--storage", url,
                "--data", str(tmp_path), "--workdir", str(work), "--wandb", "off"]  # fmt: skip
        result = run_cli(args, fake_env(tmp_path))
        assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "epochs.log").read_text().splitlines()
    # Both studies trained every epoch of every point themselves: nothing was resumed.
    assert len(log) == 2 * GRID_SIZE * 2
    folders = sorted(p.name for p in (work / "studies" / "same").iterdir())
    assert len(folders) == 2
    for db in ("first.db", "second.db"):
        study = _load(f"sqlite:///{tmp_path / db}", "same")
        assert not any(TrialRecord.read(t).resumed for t in study.trials)
        uid = study.user_attrs["hpsearch"]["uid"]
        assert uid in folders
        assert all(f"/{uid}/slot-" in TrialRecord.read(t).checkpoint for t in study.trials)
