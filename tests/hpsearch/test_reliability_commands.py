"""Flags and command arguments that used to end in a traceback, or write before failing.

Each case is the defect's reproduction: one line and exit 2 (or the behaviour the
command promises), and nothing written first.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpsearch.cli import main
from hpsearch.commands.best import _force_line, check_export_folder
from hpsearch.run.claims import SlotBoard
from hpsearch.run.plan import Capacity, DevicePlan, fit_to_machine, usable_cores
from hpsearch.storage import Heartbeat, open_storage
from tests.hpsearch.conftest import ROOT, fake_env, run_cli
from tests.hpsearch.study_checks import (
    assert_one_line_error,
    random_study,
    run_args,
    study_names,
)
from tests.hpsearch.test_reliability_input import IMAGE_SIZE, model_dir  # noqa: F401
from tests.hpsearch.test_spec import VALID
from tests.trainer._imagefiles import write_image

# -- run flags, checked before anything is written --------------------------------------------


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--seed", "-1"], "--seed"),
        (["--seed", "4294967296"], "--seed"),
        (["--timeout", "nan"], "--timeout must be > 0 (a number of seconds)"),
        (["--timeout", "inf"], "--timeout must be > 0 (a number of seconds)"),
    ],
    ids=["seed -1", "seed 2**32", "timeout nan", "timeout inf"],
)
def test_bad_flag_writes_nothing(flags: list[str], expected: str, tmp_path: Path, capsys) -> None:
    study = tmp_path / "grid.toml"
    study.write_text(VALID)
    db = tmp_path / "study.db"
    argv = ["run", "--study", str(study), "--storage", f"sqlite:///{db}", *flags]
    code = main([*argv, "--workdir", str(tmp_path / "work"), "--wandb", "off"])
    # before: a traceback after the SQLite file (and for 2**32 the study) was created
    assert_one_line_error(code, capsys.readouterr().err, expected)
    assert not db.exists() and not (tmp_path / "work").exists()


def test_tiny_timeout_says_it_ran_nothing(tmp_path: Path, study_name: str) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    args = run_args(random_study(tmp_path, 4), study_name, url, tmp_path, "--timeout", "1e-9")
    result = run_cli(args, fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0"))
    # before: exit 0 having run nothing, without a word
    assert result.returncode == 0, result.stderr[-3000:]
    assert "time limit reached" in result.stderr and "4 trial(s) left" in result.stderr
    assert not (tmp_path / "epochs.log").exists()


# -- how many workers start ------------------------------------------------------------------


def test_workers_beyond_the_cores_are_not_started(tmp_path: Path, study_name: str) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    args = run_args(random_study(tmp_path, 6), study_name, url, tmp_path, "--workers", "64")
    env = fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0")
    del env["HPSEARCH_MAX_WORKERS"]  # the machine's own limit
    result = run_cli(args, env)
    assert result.returncode == 0, result.stderr[-3000:]
    cores = usable_cores()
    started = min(cores, 6)
    # one line says how many start and why (before: 67 processes, 18 GB, no trial)
    line = f"starting {started} worker(s), not 64"
    assert line in result.stderr and "core(s)" in result.stderr
    pids = {ln.split()[0] for ln in (tmp_path / "epochs.log").read_text().splitlines()}
    assert len(pids) <= started


def test_workers_beyond_the_trials_left_are_not_started(tmp_path: Path, study_name: str) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    args = run_args(random_study(tmp_path, 2), study_name, url, tmp_path, "--workers", "6")
    result = run_cli(args, fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "starting 2 worker(s), not 6: 2 trial(s) left to run" in result.stderr
    # no idle worker: none stopped without a trial to run
    assert result.stderr.count("stopped (study done)") <= 2


GIB = 2**30


@pytest.mark.parametrize(
    "asked, capacity, trials_left, expected",
    [
        (64, Capacity(cores=2, available_bytes=64 * GIB, per_worker_bytes=GIB // 4), 100, 2),
        (8, Capacity(cores=16, available_bytes=2 * GIB, per_worker_bytes=GIB // 2), 100, 3),
        (8, Capacity(cores=16, available_bytes=None, per_worker_bytes=GIB), 5, 5),
        (4, Capacity(cores=16, available_bytes=GIB // 8, per_worker_bytes=GIB), 100, 1),
        (4, Capacity(cores=16, available_bytes=64 * GIB, per_worker_bytes=GIB), 100, 4),
    ],
    ids=["cores", "memory", "trials left", "at least one", "fits"],
)
def test_fit_to_machine(asked: int, capacity: Capacity, trials_left: int, expected: int) -> None:
    plan, note = fit_to_machine(DevicePlan(workers=asked, threads=1), trials_left, capacity)
    assert plan.workers == expected
    # a line says so exactly when fewer start than asked
    assert (note is not None) == (expected < asked)


# -- best --export: the destination is checked first ------------------------------------------


@pytest.mark.parametrize("case", ["a file", "under a file", "under /proc"])
def test_bad_export_destination_is_one_line_before_any_work(
    case: str, tmp_path: Path, capsys
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    dest = {"a file": afile, "under a file": afile / "out", "under /proc": Path("/proc/hpx")}[case]
    storage = f"sqlite:///{tmp_path / 'none.db'}"
    code = main(["best", "--study", "s", "--storage", storage, "--export", str(dest)])
    # before: a traceback after 10 s of work; now the destination is named at once,
    # before the storage is even opened
    assert_one_line_error(code, capsys.readouterr().err, f"--export {dest}")
    assert not (tmp_path / "none.db").exists()


def test_export_folder_with_files_needs_force(tmp_path: Path, capsys) -> None:
    out = tmp_path / "final"
    out.mkdir()
    (out / "model.pt").write_bytes(b"old")
    storage = f"sqlite:///{tmp_path / 'none.db'}"
    code = main(["best", "--study", "s", "--storage", storage, "--export", str(out)])
    assert_one_line_error(code, capsys.readouterr().err, "already holds 1 file(s) (model.pt)")
    assert (out / "model.pt").read_bytes() == b"old"
    # with --force the names already there are returned, and the line printed says which
    # are replaced and which kept (before: "replacing" every one, also those kept)
    (out / "notes.txt").write_text("mine")
    assert check_export_folder(out, force=True) == ["model.pt", "notes.txt"]
    line = _force_line(str(out), ["model.pt", "notes.txt"])
    assert "replacing model.pt" in line and "keeping notes.txt" in line


# -- predict --------------------------------------------------------------------------------


def test_predict_out_that_is_a_folder_is_one_line(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    capsys,
) -> None:
    images = tmp_path / "test"
    write_image(images / "test_0.png", (IMAGE_SIZE, IMAGE_SIZE))
    out = tmp_path / "existing"
    out.mkdir()
    argv = ["predict", "--model", str(model_dir), "--images", str(images), "--out", str(out)]
    # before: IsADirectoryError traceback
    assert_one_line_error(main([*argv, "--device", "cpu"]), capsys.readouterr().err, "is a folder")


def test_predict_names_sub_folders_not_searched(
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    capsys,
) -> None:
    images = tmp_path / "test"
    write_image(images / "test_0.png", (IMAGE_SIZE, IMAGE_SIZE))
    write_image(images / "nested" / "test_1.png", (IMAGE_SIZE, IMAGE_SIZE))
    (images / "notes.txt").write_text("x")
    out = tmp_path / "submission.csv"
    argv = ["predict", "--model", str(model_dir), "--images", str(images), "--out", str(out)]
    assert main([*argv, "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    # before: "1 non-image file(s) ignored" for the sub-folder
    assert "1 sub-folder(s)" in err and "not searched (nested/)" in err
    assert "1 non-image file(s)" in err


# -- status ---------------------------------------------------------------------------------


def test_status_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="many", storage=url)
    for i in range(300):
        study.add_trial(optuna.trial.create_trial(value=float(i), params={}, distributions={}))
    err_file = tmp_path / "err.txt"
    command = f"{sys.executable} -m hpsearch.cli status --storage {url} 2>{err_file} | head -1"
    result = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {command}"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.startswith("study many")
    # before: BrokenPipeError traceback, exit 1; now quiet, with SIGPIPE's status (or 0)
    assert err_file.read_text() == ""
    assert result.returncode in (0, 141)


# -- a trial failed by takeover says why -----------------------------------------------------


def test_trial_failed_by_takeover_records_why_and_by_whom(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = open_storage(url, heartbeat=Heartbeat(interval_s=1, grace_s=2))
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)  # then its process goes silent
    time.sleep(3.5)
    board = SlotBoard(study, storage, 1, worker=5)
    assert board.fail_dead_trials() == [trial._trial_id]
    frozen = study.trials[0]
    assert frozen.state == TrialState.FAIL
    # before: a bare FAIL; now the reason, with the silence measured and who took it over
    error = frozen.user_attrs["error"]
    assert error.startswith("no heartbeat for ") and " s; taken over by worker 5 (pid " in error
    silent = int(error.split()[3])
    assert 3 <= silent < 60
    assert "on host " in error
    assert study_names(url) == ["s"]


# -- wandb without $HOME ---------------------------------------------------------------------


@pytest.mark.slow
def test_wandb_without_home_prints_no_error(tmp_path: Path, study_name: str) -> None:
    pytest.importorskip("wandb")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    args = run_args(random_study(tmp_path, 1), study_name, url, tmp_path)
    args[args.index("--wandb") + 1] = "offline"
    env = fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0")
    for name in ("HOME", "XDG_CACHE_HOME", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        env.pop(name, None)
    result = run_cli(args, env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    # before: "ERROR main: failed to get logger path" on a successful run
    assert "ERROR" not in result.stderr and "failed to get logger path" not in result.stderr
