"""A stop signal that lands inside the checkpoint write: a stop all the same.

torch's checkpoint writer turns a ``KeyboardInterrupt`` raised while it writes into
``RuntimeError: [enforce fail at inline_container.cc] unexpected pos ...``. The stand-in
trainer here saves each epoch through the real ``atomic_save`` and, at one epoch, makes
that write block (its temporary file is a FIFO nobody reads), as a write to a slow disk
blocks; the test sends SIGTERM to the run then. The trial must end interrupted (no
attempt spent, its slot released, the previous checkpoint whole), no worker may claim
another trial, and every process of the run must be gone within 10 s, with two
CPU-bound processes beside it.

``python -m tests.hpsearch.test_stop_signals [ROUNDS]`` repeats the scenario with one
and with two worker processes and prints how each round went; the slow tests run a few.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
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
)

N_SLOTS = 6
EPOCHS = 4
STALL_AT = 2
#: The bound the run's processes must all have exited within after SIGTERM.
GONE_WITHIN_S = 10.0


@dataclass
class Round:
    """How one stop went."""

    code: int | None
    gone_after_s: float | None
    """Seconds from SIGTERM until no process of the run was left (None: some stayed)."""
    err: str
    url: str
    name: str
    folder: Path
    signalled_at: float


def _group(pgid: int) -> list[int]:
    """Live processes of the process group ``pgid`` (zombies do not count)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def _blocked_slots(folder: Path) -> list[str]:
    """The slots (``slot-0000K``) whose save of epoch ``STALL_AT`` blocked."""
    return sorted(p.name.rsplit(".", 1)[1] for p in folder.glob("epochs.log.saving.*"))


def _wait_for_a_blocked_save(folder: Path, timeout: float) -> None:
    deadline = time.time() + timeout
    while not _blocked_slots(folder):
        if time.time() > deadline:
            raise AssertionError(f"no save blocked in {timeout:.0f} s")
        time.sleep(0.05)


def stop_inside_the_save(folder: Path, name: str, workers: int) -> Round:
    """Start a run whose trials block in the save of epoch ``STALL_AT``; SIGTERM the run
    once one does; time until none of its processes is left."""
    url = f"sqlite:///{folder / 'study.db'}"
    study = random_study(folder, N_SLOTS, epochs=EPOCHS)
    args = run_args(study, name, url, folder, "--workers", str(workers))
    env = fake_env(
        folder,
        FAKE_TRAINER_EPOCH_S="0.2",
        FAKE_TRAINER_TORCH_SAVE="1",
        FAKE_TRAINER_SAVE_STALL_AT=str(STALL_AT),
    )
    proc = start_cli(args, env)
    try:
        _wait_for_a_blocked_save(folder, timeout=240)
        time.sleep(0.5)  # the write is blocked now, not just starting
        signalled_at = time.time()
        os.kill(proc.pid, signal.SIGTERM)  # the scheduler stops the job
        deadline = time.monotonic() + 180
        started = time.monotonic()
        gone_after = None
        while time.monotonic() < deadline:
            if proc.poll() is not None and not _group(proc.pid):
                gone_after = time.monotonic() - started
                break
            time.sleep(0.05)
        _, err = proc.communicate(timeout=60)
    finally:
        for pid in _group(proc.pid):
            os.kill(pid, signal.SIGKILL)
    return Round(proc.returncode, gone_after, err, url, name, folder, signalled_at)


def check_round(done: Round) -> None:
    """Everything the stop must leave behind (assertions)."""
    assert done.code == 143, done.err[-3000:]
    assert "Traceback" not in done.err, done.err[-3000:]
    assert done.gone_after_s is not None and done.gone_after_s <= GONE_WITHIN_S, done
    study = optuna.load_study(study_name=done.name, storage=done.url)
    # no trial is left running, and none started after the signal (nothing claimed)
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    late = [t for t in study.trials if t.datetime_start.timestamp() > done.signalled_at + 1]
    assert not late, [t.number for t in late]
    # the trials stopped in the save are interrupted, not failed: no error recorded
    stopped = [t for t in study.trials if t.state == TrialState.FAIL]
    assert stopped
    for trial in stopped:
        record = TrialRecord.read(trial)
        assert record.interrupted and record.error is None, trial.user_attrs
    # their slots are released with no attempt spent
    rows = {r.slot: r for r in slot_rows(done.url, study)}
    for trial in stopped:
        row = rows[TrialRecord.read(trial).slot]
        assert (row.status, row.attempts) == ("released", 0), row
    # a stopped save leaves the previous checkpoint whole: the epoch before it
    import torch

    blocked = _blocked_slots(done.folder)
    assert blocked
    for slot in blocked:
        (folder,) = (done.folder / "work" / "studies" / done.name).glob(f"*/{slot}")
        last = folder / "last.pt"
        saved = torch.load(last, weights_only=True)
        assert [r["epoch"] for r in saved["history"]] == list(range(1, STALL_AT))


def rerun_finishes(done: Round) -> None:
    """The same command again resumes every stopped trial and trains no epoch twice."""
    study = done.folder / "random.toml"
    args = run_args(study, done.name, done.url, done.folder, "--workers", "2")
    rerun = run_cli(args, fake_env(done.folder, FAKE_TRAINER_EPOCH_S="0"))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_every_slot_once(done.url, done.name, N_SLOTS)
    assert max(epochs_per_slot(done.folder / "epochs.log").values()) == 1


@pytest.fixture
def busy_machine() -> Iterator[None]:
    """Two CPU-bound processes beside the test, as on a shared machine."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


@pytest.mark.slow
@pytest.mark.usefixtures("busy_machine")
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_inside_the_checkpoint_write_is_a_stop(
    tmp_path: Path, study_name: str, workers: int
) -> None:
    done = stop_inside_the_save(tmp_path, study_name, workers)
    # before: the trial was failed with the RuntimeError (an attempt spent), the workers
    # claimed and trained new trials, and trials were left RUNNING
    check_round(done)
    rerun_finishes(done)


def main(rounds: int) -> int:
    """Repeat the stop ``rounds`` times with one and two workers, two busy loops beside."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    failures = 0
    try:
        for workers in (1, 2):
            for i in range(rounds):
                with tempfile.TemporaryDirectory() as tmp:
                    done = stop_inside_the_save(Path(tmp), f"stop{i}", workers)
                    try:
                        check_round(done)
                        rerun_finishes(done)
                        verdict = "ok"
                    except AssertionError as err:
                        failures += 1
                        verdict = f"FAILED: {str(err)[:300]}"
                gone = "-" if done.gone_after_s is None else f"{done.gone_after_s:.1f} s"
                print(f"workers {workers} round {i + 1}: exit {done.code}, all gone {gone}: "
                      f"{verdict}", flush=True)  # fmt: skip
    finally:
        for loop in loops:
            loop.kill()
    print(f"{2 * rounds - failures}/{2 * rounds} rounds ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10))
