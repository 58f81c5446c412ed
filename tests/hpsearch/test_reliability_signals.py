"""Signals from a job scheduler and from the keyboard: record, release, say how to resume.

SIGTERM (Slurm's and Kubernetes' stop) to the run is handled like Ctrl-C and exits 143;
a worker whose parent is killed outright stops as if interrupted instead of training on
unseen; several Ctrl-C in a row still end on the line that says how to resume.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpsearch.trials.record import TrialRecord
from tests.hpsearch.conftest import fake_env, run_cli
from tests.hpsearch.study_checks import (
    assert_every_slot_once,
    epochs_per_slot,
    random_study,
    run_args,
    slot_rows,
    start_cli,
    wait_for_lines,
)

N_SLOTS = 8
RESUME = "run the same command again to resume"


def _worker_pids(log: Path) -> set[int]:
    return {int(line.split()[0]) for line in log.read_text().splitlines()}


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting for init counts as exited)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            return any(line.split()[1:2] == ["Z"] for line in handle if line.startswith("State"))
    except FileNotFoundError:
        return True


def _wait_gone(pids: set[int], timeout: float = 120) -> set[int]:
    """The pids still running after ``timeout`` (none, if all stopped)."""
    deadline = time.time() + timeout
    while time.time() < deadline and not all(_gone(p) for p in pids):
        time.sleep(0.2)
    return {p for p in pids if not _gone(p)}


def _assert_stopped_trials_released(url: str, name: str) -> None:
    """No trial is left running; the stopped ones are recorded as interrupted, their
    slots released for the next run."""
    study = optuna.load_study(study_name=name, storage=url)
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    stopped = [t for t in study.trials if t.state == TrialState.FAIL]
    assert stopped and all(t.user_attrs.get("interrupted") for t in stopped)
    status = {r.slot: r.status for r in slot_rows(url, study)}
    assert {status[TrialRecord.read(t).slot] for t in stopped} == {"released"}


def _start_stalling(
    tmp_path: Path, study_name: str, *, epochs: int, workers: int, lines: int
) -> tuple[str, list[str], subprocess.Popen]:
    """A run of the random study on SQLite, once it has trained ``lines`` epochs: 0.3 s
    epochs until then, then epochs that last until the test's signal, so the run cannot
    finish before it, however busy the machine. Returns the URL, the args and the run."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = random_study(tmp_path, N_SLOTS, epochs=epochs)
    args = run_args(study, study_name, url, tmp_path, "--workers", str(workers))
    env = fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0.3", FAKE_TRAINER_STALL_AFTER=str(lines))
    proc = start_cli(args, env)
    try:
        wait_for_lines(tmp_path / "epochs.log", lines)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return url, args, proc


def _rerun_finishes(args: list[str], tmp_path: Path, url: str, name: str) -> None:
    rerun = run_cli(args, fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0"))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_every_slot_once(url, name, N_SLOTS)
    assert max(epochs_per_slot(tmp_path / "epochs.log").values()) == 1


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_is_handled_like_ctrl_c(tmp_path: Path, study_name: str, workers: int) -> None:
    url, args, proc = _start_stalling(tmp_path, study_name, epochs=4, workers=workers, lines=3)
    try:
        os.kill(proc.pid, signal.SIGTERM)  # the scheduler stops the job: the run only
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # before: exit 143 with no message, the workers training on for 45 s
    assert proc.returncode == 143, err[-3000:]
    assert RESUME in out, out[-2000:]
    assert not _wait_gone(_worker_pids(tmp_path / "epochs.log"), timeout=5)
    _assert_stopped_trials_released(url, study_name)
    _rerun_finishes(args, tmp_path, url, study_name)


def test_workers_stop_when_the_run_is_killed(tmp_path: Path, study_name: str) -> None:
    url, args, proc = _start_stalling(tmp_path, study_name, epochs=6, workers=2, lines=4)
    try:
        os.kill(proc.pid, signal.SIGKILL)  # the run itself, not its workers
        # The pipes close when the workers have stopped too (as the other tests, 180 s:
        # on a busy machine 60 s once ran out).
        proc.communicate(timeout=180)
        workers = _worker_pids(tmp_path / "epochs.log")
        # each worker notices its parent is gone and stops (before: trained on unseen)
        assert not _wait_gone(workers)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in _worker_pids(tmp_path / "epochs.log"):
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
    # ... as if interrupted: trials recorded, slots released, nothing waits on a heartbeat
    _assert_stopped_trials_released(url, study_name)
    _rerun_finishes(args, tmp_path, url, study_name)


def test_repeated_ctrl_c_still_ends_on_the_resume_line(tmp_path: Path, study_name: str) -> None:
    _, _, proc = _start_stalling(tmp_path, study_name, epochs=4, workers=2, lines=3)
    try:
        for _ in range(4):  # an impatient user
            os.killpg(proc.pid, signal.SIGINT)
            time.sleep(0.3)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # 130; or killed by a Ctrl-C that lands while Python exits, after the last line (a
    # shell shows 130 for both)
    assert proc.returncode in (130, -signal.SIGINT), err[-3000:]
    # before: the last line was only "hpsearch run: interrupted"
    last_lines = [text.strip().splitlines()[-1] for text in (out, err) if text.strip()]
    assert any(RESUME in line for line in last_lines), (out[-1500:], err[-1500:])
