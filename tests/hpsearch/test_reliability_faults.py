"""Faults during a search: nothing finished is lost, nothing is trained twice.

The runs use the fast stand-in trainer (fake_trainer.py), so the real orchestration —
claims, heartbeats, retries, worker processes — meets each fault in seconds. Covered
elsewhere: SIGKILL of the whole run then a rerun, and SIGINT of a one-worker run then a
rerun (test_run_grid.py); an exception in the middle of a checkpoint write
(tests/trainer/test_fit.py::test_failed_checkpoint_write_leaves_the_previous_one).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from hpsearch.trials.record import TrialRecord
from tests.hpsearch.conftest import ROOT, fake_env, run_cli
from tests.hpsearch.study_checks import (
    assert_every_slot_once,
    epochs_per_slot,
    random_study,
    require_postgres,
    run_args,
    slot_rows,
    start_cli,
    wait_for_lines,
)
from tests.trainer.synthetic_tensors import synthetic_data
from trainer.config import TrainConfig
from trainer.training import fit

pytestmark = pytest.mark.slow  # every test runs workers in subprocesses or trains

GRID_SIZE = 16  # conftest.TINY_GRID: 4 lr x 2 optimizers x 2 batch sizes
N_SLOTS = 8  # the random-search study of the shorter tests
STALLED = "slot-00001"  # the slot whose worker the kill and freeze tests stop mid-trial


def _slot(trial: optuna.trial.FrozenTrial) -> int | None:
    return TrialRecord.read(trial).slot


def _trials_by_state(url: str, name: str) -> dict[TrialState, list[optuna.trial.FrozenTrial]]:
    study = optuna.load_study(study_name=name, storage=url)
    out: dict[TrialState, list] = collections.defaultdict(list)
    for trial in study.trials:
        out[trial.state].append(trial)
    return out


# -- a worker process killed ---------------------------------------------------------------


def test_killed_worker_trial_is_run_again_by_the_others(tmp_path: Path, study_name: str) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study_file = random_study(tmp_path, N_SLOTS, epochs=3)
    args = run_args(study_file, study_name, url, tmp_path, "--workers", "2")
    # Slot 1's first attempt stalls in its second epoch: its worker is mid-trial when the
    # test, however late on a busy machine, kills it.
    env = fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0.3", FAKE_TRAINER_STALL_SLOT=STALLED)
    proc = start_cli(args, env)
    try:
        victim = _worker_of(tmp_path / "epochs.log", STALLED)
        # one worker process dies hard in the middle of its trial (the OOM killer's way)
        os.kill(victim, signal.SIGKILL)
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # the other worker failed the dead trial by its heartbeat, resumed it and finished
    assert proc.returncode == 0, err[-3000:]
    assert "1 worker process(es) died" in err and "run again by the others" in err
    study = assert_every_slot_once(url, study_name, N_SLOTS)
    (dead,) = [t for t in study.trials if t.state == TrialState.FAIL]
    (redone,) = [
        t for t in study.trials if t.state == TrialState.COMPLETE and _slot(t) == _slot(dead)
    ]
    assert TrialRecord.read(redone).resumed is True
    # no epoch of any trial was trained twice: the dead one resumed from its checkpoint
    assert max(epochs_per_slot(tmp_path / "epochs.log").values()) == 1


def _worker_of(log: Path, slot: str, timeout: float = 600) -> int:
    """The pid of the worker that trained an epoch of ``slot`` (once it has)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if log.exists():
            for line in log.read_text().splitlines():
                fields = line.split()
                if len(fields) > 1 and fields[1] == slot:
                    return int(fields[0])
        time.sleep(0.1)
    raise AssertionError(f"no epoch of {slot} within {timeout} s")


def _wait_for_failed_trial(url: str, name: str, timeout: float = 600) -> None:
    """Wait for the event itself (a trial failed by takeover), however busy the machine."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if _trials_by_state(url, name)[TrialState.FAIL]:
            return
        time.sleep(0.3)
    raise AssertionError(f"no trial was failed within {timeout} s")


def test_frozen_worker_gives_its_trial_up_and_goes_on(tmp_path: Path, study_name: str) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study_file = random_study(tmp_path, 4, epochs=6)
    args = run_args(study_file, study_name, url, tmp_path, "--workers", "2")
    # Slot 1's first attempt stalls 30 s in its second epoch: its worker is mid-trial
    # when the test freezes it.
    env = fake_env(
        tmp_path,
        FAKE_TRAINER_EPOCH_S="0.3",
        FAKE_TRAINER_STALL_SLOT=STALLED,
        FAKE_TRAINER_STALL_S="30",
    )
    proc = start_cli(args, env)
    frozen = 0
    try:
        # a worker stops answering (paused VM, swapped out, cut off) for longer than the
        # heartbeat grace period: the other worker fails its trial as dead
        frozen = _worker_of(tmp_path / "epochs.log", STALLED)
        os.kill(frozen, signal.SIGSTOP)
        _wait_for_failed_trial(url, study_name)
        os.kill(frozen, signal.SIGCONT)
        _, err = proc.communicate(timeout=900)
    finally:
        if frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(frozen, signal.SIGCONT)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # back, it learns its trial is gone, frees the slot and carries on: no worker dies
    assert proc.returncode == 0, err[-3000:]
    assert "was failed by another worker" in err and "died" not in err
    study = assert_every_slot_once(url, study_name, 4)
    # the frozen worker's trial, and on a starved machine maybe another, was failed by
    # takeover; each says why and by whom (before: a bare FAIL) and was resumed once
    lost = [t for t in study.trials if t.state == TrialState.FAIL]
    assert lost
    for trial in lost:
        assert trial.user_attrs["error"].startswith("no heartbeat for ")
        assert "taken over by worker" in trial.user_attrs["error"]
        (redone,) = [
            t for t in study.trials if t.state == TrialState.COMPLETE and _slot(t) == _slot(trial)
        ]
        assert TrialRecord.read(redone).resumed is True


# -- SIGINT with worker processes ----------------------------------------------------------


def test_sigint_stops_worker_processes_and_rerun_resumes(tmp_path: Path, study_name: str) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study_file = random_study(tmp_path, N_SLOTS, epochs=3)
    args = run_args(study_file, study_name, url, tmp_path, "--workers", "2")
    env = fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0.3", FAKE_TRAINER_STALL_AFTER="5")
    proc = start_cli(args, env)
    try:
        wait_for_lines(tmp_path / "epochs.log", 5)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the run and its workers
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-3000:]
    assert "run the same command again to resume" in out
    by_state = _trials_by_state(url, study_name)
    # the trials cut short are recorded as interrupted, their slots free to claim again
    interrupted = by_state[TrialState.FAIL]
    assert interrupted and all(t.user_attrs.get("interrupted") for t in interrupted)
    assert not by_state[TrialState.RUNNING]
    study = optuna.load_study(study_name=study_name, storage=url)
    status = {r.slot: r.status for r in slot_rows(url, study)}
    rows = [tuple(r) for r in slot_rows(url, study)]
    assert {status[_slot(t)] for t in interrupted} == {"released"}, (rows, err)
    done_before = {_slot(t): t.value for t in by_state[TrialState.COMPLETE]}

    rerun = run_cli(args, fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0"))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    study = assert_every_slot_once(url, study_name, N_SLOTS)
    # completed trials kept as they were; interrupted ones resumed, no epoch trained twice
    after = {_slot(t): t.value for t in study.trials if t.state == TrialState.COMPLETE}
    assert all(after[slot] == value for slot, value in done_before.items())
    assert max(epochs_per_slot(tmp_path / "epochs.log").values()) == 1


# -- a kill in the middle of a checkpoint write ---------------------------------------------

# fp32: this test is about the checkpoint file, the same on every CPU (bf16 arithmetic
# differs between CPUs and can diverge on this tiny random data).
CONFIG = TrainConfig(epochs=3, batch_size=16, lr=0.01, device="cpu", threads=1, precision="fp32")
DIE_WHILE_SAVING = """
import os, signal, sys
import torch
from tests.trainer.synthetic_tensors import synthetic_data
from trainer.config import TrainConfig
from trainer.training import fit

torch.set_num_threads(1)
real_save = torch.save

def save_then_die(obj, handle, *args, **kwargs):
    # the process is killed halfway through writing last.pt of epoch 2
    if isinstance(obj, dict) and "fingerprint" in obj and obj["epoch"] == 2:
        handle.write(b"half of a checkpoint")
        handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    real_save(obj, handle, *args, **kwargs)

torch.save = save_then_die
config = TrainConfig(epochs=3, batch_size=16, lr=0.01, device="cpu", threads=1, precision="fp32")
fit(config, synthetic_data(n_train=32, n_val=16, size=16, seed=1), checkpoint_dir=sys.argv[1])
"""


def test_kill_during_checkpoint_write_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "slot"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", DIE_WHILE_SAVING, str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    # the half-written file is the temporary one; last.pt is still epoch 1's, whole
    partial = [p for p in out.iterdir() if p.name.startswith(".last.pt.")]
    assert [p.read_bytes() for p in partial] == [b"half of a checkpoint"]
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1
    assert torch.load(out / "best.pt", weights_only=True)["epoch"] == 1
    # and training resumes from it to the end
    torch.set_num_threads(1)
    messages: list[str] = []
    data = synthetic_data(n_train=32, n_val=16, size=16, seed=1)
    resumed = fit(CONFIG, data, checkpoint_dir=out, log=messages.append)
    assert any("after epoch 1" in m for m in messages if m.startswith("resumed from"))
    assert resumed.epochs_run == 3 and len(resumed.history) == 3


# -- a full disk ---------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_full_disk_stops_with_one_line_and_rerun_finishes(
    tmp_path: Path, study_name: str, workers: int
) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    flag = tmp_path / "disk-is-full"
    flag.touch()
    env = fake_env(
        tmp_path,
        STAND_IN_TRAINER="tests.hpsearch.full_disk_trainer",
        FULL_DISK_FLAG=str(flag),
        FULL_DISK_FROM_SLOT="3",
        FAKE_TRAINER_EPOCH_S="0",
    )
    study_file = random_study(tmp_path, N_SLOTS, epochs=2)
    args = run_args(study_file, study_name, url, tmp_path, "--workers", str(workers))
    result = run_cli(args, env)
    # the run stops on one clear line naming the file, the trial and what to do
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.splitlines()[-1]
    assert last.startswith("hpsearch run: error: disk full writing ")
    assert "last.json" in last and "free space" in last and "run the same command again" in last
    by_state = _trials_by_state(url, study_name)
    # trials finished before the disk filled are intact
    complete = by_state[TrialState.COMPLETE]
    assert sorted(_slot(t) for t in complete) == list(range(3))
    assert all(t.value is not None for t in complete)
    # the failed trials say why, and their slots are released (no attempt spent)
    failed = by_state[TrialState.FAIL]
    assert failed and all("No space left" in t.user_attrs["error"] for t in failed)
    study = optuna.load_study(study_name=study_name, storage=url)
    status = {r.slot: r.status for r in slot_rows(url, study)}
    assert {status[_slot(t)] for t in failed} == {"released"}

    flag.unlink()  # space freed
    rerun = run_cli(args, env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_every_slot_once(url, study_name, N_SLOTS)
    # nothing finished was trained again
    assert max(epochs_per_slot(tmp_path / "epochs.log").values()) == 1


# -- PostgreSQL restarted mid-study ---------------------------------------------------------


def _postgres_version() -> str | None:
    folder = Path("/etc/postgresql")
    if os.geteuid() != 0 or not shutil.which("pg_ctlcluster") or not folder.is_dir():
        return None
    versions = sorted(p.name for p in folder.iterdir() if (p / "main").is_dir())
    return versions[0] if versions else None


def _wait_until_up(version: str, timeout: float = 90) -> None:
    """Block until the server answers again; start it if a restart left it down."""
    deadline = time.time() + timeout
    started = False
    while time.time() < deadline:
        if subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"], check=False).returncode == 0:
            return
        if not started and time.time() > deadline - timeout + 15:
            cmd = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"]
            subprocess.run(cmd, check=False, capture_output=True, timeout=60)
            started = True
        time.sleep(0.5)
    raise AssertionError("PostgreSQL did not come back up")


def _postmaster_start(url: str) -> dt.datetime:
    import psycopg

    with psycopg.connect(url, connect_timeout=10) as conn:
        return conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_restart_mid_study_loses_nothing(
    tmp_path: Path, grid_file, study_name: str
) -> None:
    url = require_postgres()
    version = _postgres_version()
    if version is None or "127.0.0.1" not in url:
        pytest.skip("restarting PostgreSQL needs root and the local cluster (pg_ctlcluster)")
    args = run_args(grid_file(epochs=3), study_name, url, tmp_path, "--workers", "2")
    began = dt.datetime.now(dt.UTC)
    proc = start_cli(args, fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0.3"))
    try:
        wait_for_lines(tmp_path / "epochs.log", 6)
        restart = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"]
        subprocess.run(restart, check=True, capture_output=True, timeout=120)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        _wait_until_up(version)
    ended = dt.datetime.now(dt.UTC)
    # the server really restarted while the run was going
    assert began < _postmaster_start(url) < ended
    # the workers rode it out: no worker died, every grid point done exactly once
    assert proc.returncode == 0, err[-3000:]
    assert "died" not in err, err[-3000:]
    assert_every_slot_once(url, study_name, GRID_SIZE)
    # no epoch trained twice (a trial cut by the restart resumed from its checkpoint)
    assert max(epochs_per_slot(tmp_path / "epochs.log").values()) == 1
